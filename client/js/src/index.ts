//! `@ratequeue/sdk`: ask a ratequeue cluster for a slot before calling a rate-limited
//! resource, hold it while you work, give it back when done.
//!
//!     import { ratequeue } from "@ratequeue/sdk";
//!     await ratequeue.acquire("export-api", { load: bytes }, async (lease) => { ... });
//!
//! Owns: the public surface only; everything is defined in the modules it re-exports.

import { Client, acquire, defaultClient, lease } from "./client.js";
import { DEFAULT_TIMING } from "./config.js";
import * as errors from "./errors.js";

export { Client, acquire, defaultClient, lease, DEFAULT_CLIENTS_MAX } from "./client.js";
export type { AcquireOptions, ClientOptions, ConnectOptions, LeaseScope } from "./client.js";
export { DEFAULT_TIMING, DEFAULT_URL } from "./config.js";
export type { Timing, TlsFiles } from "./config.js";
export {
  Forbidden,
  InvalidRequest,
  LeaseLost,
  LoadExceedsLimit,
  QueueFull,
  RateQueueError,
  Rejected,
  ResourceNotFound,
  Unauthorized,
  Unavailable,
  WaitTimeout,
  WouldBlock,
} from "./errors.js";
export type { LeaseLostOptions, RateQueueErrorOptions, RejectedOptions } from "./errors.js";
export { Lease } from "./lease.js";
export type { Logger } from "./lease.js";
export type { AcquireRequest, Limit, Progress, ProviderReport, ReleaseState, Reported, Shadow } from "./protocol.js";
export { VERSION } from "./version.js";

/** Everything in one object: `ratequeue.acquire(...)`, `ratequeue.lease(...)`, the
 *  errors (`ratequeue.WouldBlock`), `new ratequeue.Client(...)`. */
export const ratequeue = Object.freeze({
  acquire,
  lease,
  defaultClient,
  Client,
  DEFAULT_TIMING,
  ...errors.PUBLIC_ERRORS,
});

export default ratequeue;
