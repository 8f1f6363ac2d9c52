//! The three lease calls as `CallSpec`s, their arguments checked before any I/O, and the
//! API's JSON read into typed values. The Python SDK's `AcquireArgs` / `*_spec` /
//! `parse_*`, with the same rules (an acquire's retries ask only for the wait that is
//! left; a late `would_block` after the wait ran out is a `wait_timeout` to the caller).
//!
//! Owns: `AcquireArgs`, `acquireSpec`, `releaseSpec`, `renewSpec`, `parseGrant`,
//! `parseRenewal`, `parseRelease`. Must never do I/O.

import { randomUUID } from "node:crypto";

import type { Timing } from "./config.js";
import {
  PRIORITY_MAX,
  PRIORITY_MIN,
  REQUEST_ID_BYTES_MAX,
  TTL_MS_MAX,
  TTL_MS_MIN,
  WAIT_MS_MAX,
  checkHolderLabel,
  checkInt,
  checkLoad,
  checkName,
} from "./config.js";
import type { CallSpec, Json } from "./call.js";
import { LeaseLost, RateQueueError, WaitTimeout, WouldBlock, isObject } from "./errors.js";

/** What an acquire asks for. Every field has the server's default when left out. */
export interface AcquireRequest {
  /** The request's weight (tokens, bytes, credits), reserved up front. Default 1. */
  load?: number;
  /** Higher is served first within a lane; FIFO among equals. Default 10. */
  priority?: number;
  /** Queue segment (`user-facing`, `batch`); lanes share capacity by weight. Default `default`. */
  lane?: string;
  /** How long to wait in the queue, in ms (default 30 000; `0` = try once: `WouldBlock`
   *  if there is no room now; at most 3 600 000). */
  waitMs?: number;
  /** How long the lease lives without a renewal (default: the resource's `default_ttl_ms`). */
  ttlMs?: number;
  /** Idempotency key (default: 128 random bits). Retries always resend the same one. */
  requestId?: string;
  /** This lease's label in the dashboard's lease list, instead of the client's `holder`:
   *  sent as `<label>@<host>:<pid>`. 1-128 characters of printable ASCII. */
  holder?: string;
  /** Cancels a waiting acquire: its request is closed and the cluster drops the waiter. */
  signal?: AbortSignal;
  /** Called with where the acquire stands while it waits in the queue (its position, the
   *  binding limit, the estimated wait), every `progressIntervalMs`; never after the
   *  acquire has resolved or rejected. A callback that throws is logged and not called
   *  again. */
  onProgress?: (progress: Progress) => void;
  /** Between two progress polls, in ms: 100 to 60 000, default 1 000. */
  progressIntervalMs?: number;
}

/** Where a waiting acquire stands in the leader's queue (docs/api.md,
 *  `GET /v1/resources/{name}/waiters/{request_id}`). */
export interface Progress {
  readonly resource: string;
  readonly requestId: string;
  readonly lane: string;
  readonly priority: number;
  readonly load: number;
  /** 1 = served next in its lane (a lower bound when `positionExact` is false). */
  readonly position: number;
  readonly positionExact: boolean;
  /** Waiters of every lane granted before it (0: the head of line). */
  readonly aheadInResource: number;
  /** Waiters of the resource, itself included. */
  readonly queuedInResource: number;
  /** `concurrency`, `request`, `load` or `provider`; undefined when none binds. */
  readonly bindingLimit: string | undefined;
  /** For a binding rate limit: its index in the resource's `rate` list. */
  readonly bindingBucket: number | undefined;
  readonly estimatedWaitMs: number;
  readonly waitedMs: number;
}

export const PROGRESS_INTERVAL_MS_MIN = 100;
export const PROGRESS_INTERVAL_MS_MAX = 60_000;

export function progressSpec(
  resource: string,
  requestId: string,
  timing: Timing,
  deadlineMs: number,
  signal: AbortSignal | undefined,
): CallSpec {
  return {
    method: "GET",
    path: `/v1/resources/${encodeURIComponent(resource)}/waiters/${encodeURIComponent(requestId)}`,
    body: () => undefined,
    readTimeoutMs: () => timing.requestTimeoutMs,
    deadlineMs,
    signal,
    background: true,
  };
}

export function parseProgress(data: Json): Progress {
  const limit = data["binding_limit"];
  const bucket = data["binding_bucket"];
  return {
    resource: str(data, "resource"),
    requestId: str(data, "request_id"),
    lane: str(data, "lane"),
    priority: int(data, "priority"),
    load: int(data, "load"),
    position: int(data, "position"),
    positionExact: data["position_exact"] !== false,
    aheadInResource: int(data, "ahead_in_resource"),
    queuedInResource: int(data, "queued_in_resource"),
    bindingLimit: typeof limit === "string" ? limit : undefined,
    bindingBucket: typeof bucket === "number" && Number.isInteger(bucket) ? bucket : undefined,
    estimatedWaitMs: int(data, "estimated_wait_ms"),
    waitedMs: int(data, "waited_ms"),
  };
}

export interface AcquireArgs {
  readonly resource: string;
  readonly load: number;
  readonly priority: number;
  readonly lane: string | undefined;
  readonly ttlMs: number | undefined;
  readonly waitMs: number;
  readonly requestId: string;
  /** Sent as is (`config.holder`: label, host and pid). */
  readonly holder: string | undefined;
}

/** `holder` is what to send (the client composes it: `config.holder`); `o.holder` is
 *  only the label it was made from. */
export function buildAcquireArgs(
  resource: string,
  o: AcquireRequest,
  timing: Timing,
  holder: string | undefined = undefined,
): AcquireArgs {
  checkName("resource", resource);
  const load = o.load === undefined ? 1 : checkLoad("load", o.load);
  const priority = o.priority === undefined ? 10 : checkInt("priority", o.priority, PRIORITY_MIN, PRIORITY_MAX);
  const lane = o.lane === undefined ? undefined : checkName("lane", o.lane);
  const ttlMs = o.ttlMs === undefined ? undefined : checkInt("ttlMs", o.ttlMs, TTL_MS_MIN, TTL_MS_MAX);
  const waitMs = checkInt("waitMs", o.waitMs ?? Math.round(timing.waitDefaultMs), 0, WAIT_MS_MAX);
  const requestId = o.requestId ?? randomUUID().replaceAll("-", "");
  if (typeof requestId !== "string") throw new TypeError("requestId must be a string");
  const bytes = Buffer.byteLength(requestId);
  if (bytes < 1 || bytes > REQUEST_ID_BYTES_MAX) {
    throw new RangeError(`requestId must be 1..=${REQUEST_ID_BYTES_MAX} bytes`);
  }
  if (holder !== undefined) checkHolderLabel(holder);
  return Object.freeze({ resource, load, priority, lane, ttlMs, waitMs, requestId, holder });
}

/**
 * Retries resend the same request_id, so the server returns the lease it may already
 * have granted, or attaches to the waiter still queued. Each retry asks only for the wait
 * that remains of the caller's `waitMs`.
 */
export function acquireSpec(
  args: AcquireArgs,
  timing: Timing,
  startMs: number,
  signal: AbortSignal | undefined,
): CallSpec {
  const waitUntil = startMs + args.waitMs;
  let attempts = 0;
  let lastWaitMs = args.waitMs;
  return {
    method: "POST",
    path: `/v1/resources/${encodeURIComponent(args.resource)}/acquire`,
    body(nowMs) {
      let waitMs = args.waitMs;
      if (waitMs > 0 && attempts > 0) waitMs = Math.max(0, Math.min(waitMs, Math.floor(waitUntil - nowMs)));
      attempts += 1;
      lastWaitMs = waitMs;
      const b: Json = { load: args.load, priority: args.priority, wait_ms: waitMs, request_id: args.requestId };
      if (args.lane !== undefined) b["lane"] = args.lane;
      if (args.ttlMs !== undefined) b["ttl_ms"] = args.ttlMs;
      if (args.holder !== undefined) b["holder"] = args.holder;
      return b;
    },
    readTimeoutMs(b) {
      const waitMs = typeof b?.["wait_ms"] === "number" ? b["wait_ms"] : args.waitMs;
      return waitMs + timing.acquireReadMarginMs;
    },
    deadlineMs: waitUntil + timing.retryBudgetMs,
    convert(e) {
      // The caller asked to wait; retries used the wait up and the last try (sent with no
      // wait left) found no room: to the caller that is a wait timeout.
      if (e instanceof WouldBlock && args.waitMs > 0 && lastWaitMs === 0) {
        return new WaitTimeout(e.message, {
          ...(e.status !== undefined ? { status: e.status } : {}),
          ...(e.retryAfterMs !== undefined ? { retryAfterMs: e.retryAfterMs } : {}),
          cause: e,
        });
      }
      return e;
    },
    signal,
  };
}

function leaseError(leaseId: string): (e: RateQueueError) => RateQueueError {
  return (e) => {
    if (e instanceof LeaseLost && e.leaseId === undefined) e.leaseId = leaseId;
    return e;
  };
}

/** What the provider answered a lease's holder (docs/semantics.md, "Provider feedback"):
 *  remaining requests and tokens, resets and retry-after (ms from now), a 429. */
export interface ProviderReport {
  remainingRequests?: number;
  remainingTokens?: number;
  resetRequestsMs?: number;
  resetTokensMs?: number;
  retryAfterMs?: number;
  rateLimited?: boolean;
}

/** The answer to a report: how long grants now pause (0: not paused), and the limits. */
export interface Reported {
  readonly pausedMs: number;
  readonly limits: readonly Limit[];
}

const REPORT_FIELDS: ReadonlyArray<[keyof ProviderReport, string]> = [
  ["remainingRequests", "remaining_requests"],
  ["remainingTokens", "remaining_tokens"],
  ["resetRequestsMs", "reset_requests_ms"],
  ["resetTokensMs", "reset_tokens_ms"],
  ["retryAfterMs", "retry_after_ms"],
];

export function reportSpec(leaseId: string, report: ProviderReport, timing: Timing, deadlineMs: number): CallSpec {
  const body: Json = {};
  for (const [key, wire] of REPORT_FIELDS) {
    const v = report[key];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      throw new TypeError(`report ${key} must be a non-negative integer`);
    }
    body[wire] = v;
  }
  if (report.rateLimited === true) body["rate_limited"] = true;
  return {
    method: "POST",
    path: `/v1/leases/${encodeURIComponent(leaseId)}/report`,
    body: () => body,
    readTimeoutMs: () => timing.requestTimeoutMs,
    deadlineMs,
    convert: leaseError(leaseId),
  };
}

export function parseReported(data: Json): Reported {
  return { pausedMs: int(data, "paused_ms"), limits: parseLimits(data) };
}

export function releaseSpec(
  leaseId: string,
  actualLoad: number | undefined,
  timing: Timing,
  deadlineMs: number,
): CallSpec {
  const body: Json = actualLoad === undefined ? {} : { actual_load: actualLoad };
  return {
    method: "POST",
    path: `/v1/leases/${encodeURIComponent(leaseId)}/release`,
    body: () => body,
    readTimeoutMs: () => timing.requestTimeoutMs,
    deadlineMs,
    convert: leaseError(leaseId),
  };
}

export function renewSpec(
  leaseId: string,
  ttlMs: number | undefined,
  timing: Timing,
  deadlineMs: number,
  signal: AbortSignal | undefined,
  background: boolean,
): CallSpec {
  const body: Json = ttlMs === undefined ? {} : { ttl_ms: ttlMs };
  return {
    method: "POST",
    path: `/v1/leases/${encodeURIComponent(leaseId)}/renew`,
    body: () => body,
    readTimeoutMs: () => timing.requestTimeoutMs,
    deadlineMs,
    convert: leaseError(leaseId),
    signal,
    background,
  };
}

/** One limit of the resource as seen at grant time. `remaining` may be negative after a
 *  settle that overdrew a load bucket. */
export interface Limit {
  readonly kind: "concurrency" | "request" | "load" | (string & {});
  readonly limit: number;
  readonly remaining: number;
}

/** On a dry-run resource: what enforce would have done with an acquire that was granted
 *  at once. `decision`: `grant`, `wait` (queued `waitMs`, then granted), or a refusal
 *  (`would_block`, `wait_timeout`, `load_exceeds_limit`); `limit`: the binding limit. */
export interface Shadow {
  readonly decision: "grant" | "wait" | "would_block" | "wait_timeout" | "load_exceeds_limit" | (string & {});
  readonly waitMs: number;
  readonly limit: "concurrency" | "request" | "load" | (string & {}) | undefined;
}

/** The parsed 200 body of an acquire. */
export interface Grant {
  readonly leaseId: string;
  readonly resource: string;
  readonly lane: string;
  readonly load: number;
  readonly fencingToken: number;
  readonly ttlMs: number;
  readonly queuedMs: number;
  readonly limits: readonly Limit[];
  /** Only on a dry-run resource. */
  readonly shadow: Shadow | undefined;
}

function int(data: Json, key: string): number {
  const v = data[key];
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new RateQueueError(`response field ${JSON.stringify(key)} is not an integer`, { code: "invalid_response" });
  }
  return v;
}

function str(data: Json, key: string): string {
  const v = data[key];
  if (typeof v !== "string") {
    throw new RateQueueError(`response field ${JSON.stringify(key)} is not a string`, { code: "invalid_response" });
  }
  return v;
}

function parseLimits(data: Json): readonly Limit[] {
  const limits: Limit[] = [];
  const raw = data["limits"];
  if (Array.isArray(raw)) {
    for (const item of raw) {
      if (isObject(item)) limits.push(Object.freeze({ kind: str(item, "kind"), limit: int(item, "limit"), remaining: int(item, "remaining") }));
    }
  }
  return Object.freeze(limits);
}

export function parseGrant(data: Json): Grant {
  const limits = parseLimits(data);
  return {
    leaseId: str(data, "lease_id"),
    resource: str(data, "resource"),
    lane: str(data, "lane"),
    load: int(data, "load"),
    fencingToken: int(data, "fencing_token"),
    ttlMs: int(data, "ttl_ms"),
    queuedMs: "queued_ms" in data ? int(data, "queued_ms") : 0,
    limits,
    shadow: parseShadow(data["shadow"]),
  };
}

function parseShadow(raw: unknown): Shadow | undefined {
  if (!isObject(raw)) return undefined;
  const limit = raw["limit"];
  return Object.freeze({
    decision: str(raw, "decision"),
    waitMs: int(raw, "wait_ms"),
    limit: typeof limit === "string" ? limit : undefined,
  });
}

/** `{ttlMs, fencingToken}` of a renew response. */
export function parseRenewal(data: Json): { ttlMs: number; fencingToken: number } {
  return { ttlMs: int(data, "ttl_ms"), fencingToken: int(data, "fencing_token") };
}

export type ReleaseState = "released" | "already_released";

export function parseRelease(data: Json): ReleaseState {
  const s = str(data, "state");
  if (s !== "released" && s !== "already_released") {
    throw new RateQueueError(`unknown release state ${JSON.stringify(s)}`, { code: "invalid_response" });
  }
  return s;
}
