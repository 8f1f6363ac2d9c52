//! Typed errors mirroring the API's error codes (docs/api.md), and the mapping from an
//! HTTP error response to them. The same classes and codes as the Python SDK.
//!
//! Owns: the error hierarchy, `errorFromResponse`, `isRetryable`. Must never do I/O.

export interface RateQueueErrorOptions {
  /** The API's snake_case error code, or an SDK code such as `unreachable`. */
  code?: string;
  /** The HTTP status, when there was a response. */
  status?: number;
  /** How long the server suggested waiting before trying again, when it said. */
  retryAfterMs?: number;
  cause?: unknown;
}

/**
 * Base of every error the SDK raises about the cluster's answer. `code` is the API's
 * error code (or an SDK code: `unreachable`, `no_answer`, `redirect_loop`,
 * `renewal_failed`, `invalid_response`, `bad_redirect`, `transport_error`), `status` the
 * HTTP status when there was a response, `retryAfterMs` the server's suggested wait.
 */
export class RateQueueError extends Error {
  static readonly defaultCode: string = "error";
  readonly code: string;
  readonly status: number | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(message: string, options: RateQueueErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code ?? (new.target as typeof RateQueueError).defaultCode;
    this.status = options.status;
    this.retryAfterMs = options.retryAfterMs;
  }

  override toString(): string {
    let s = `${this.name}: ${this.code}: ${this.message}`;
    if (this.status !== undefined) s += ` status=${this.status}`;
    if (this.retryAfterMs !== undefined) s += ` retryAfterMs=${this.retryAfterMs}`;
    return s;
  }
}

export interface RejectedOptions extends RateQueueErrorOptions {
  limit?: string;
  bucket?: number;
}

/**
 * No slot was granted (HTTP 429): the base of `QueueFull`, `WaitTimeout` and
 * `WouldBlock`. `retryAfterMs` is computed by the cluster from the binding limit; when
 * the cluster names it, `limit` is that limit (`concurrency`, `request` or `load`) and
 * `bucket` its index in the resource's `rate` list (undefined for concurrency), as in the
 * Python SDK.
 */
export class Rejected extends RateQueueError {
  static override readonly defaultCode: string = "rejected";
  readonly limit: string | undefined;
  readonly bucket: number | undefined;

  constructor(message: string, options: RejectedOptions = {}) {
    super(message, options);
    this.limit = options.limit;
    this.bucket = options.bucket;
  }

  override toString(): string {
    const s = super.toString();
    if (this.limit === undefined) return s;
    return `${s} limit=${this.limit}${this.bucket !== undefined ? `[${this.bucket}]` : ""}`;
  }
}

/** The resource's queue holds `max_queue` waiters already. */
export class QueueFull extends Rejected {
  static override readonly defaultCode: string = "queue_full";
}

/** The acquire waited `waitMs` in the queue without a grant. */
export class WaitTimeout extends Rejected {
  static override readonly defaultCode: string = "wait_timeout";
}

/** `waitMs: 0` (try once) and there was no room now. */
export class WouldBlock extends Rejected {
  static override readonly defaultCode: string = "would_block";
}

/** The load can never fit the resource's smallest `per: load` bucket. */
export class LoadExceedsLimit extends RateQueueError {
  static override readonly defaultCode: string = "load_exceeds_limit";
}

/** The server rejected the request as malformed or out of range (HTTP 400/413). */
export class InvalidRequest extends RateQueueError {
  static override readonly defaultCode: string = "invalid_request";
}

/** No API key, or an unknown one (HTTP 401). */
export class Unauthorized extends RateQueueError {
  static override readonly defaultCode: string = "unauthorized";
}

/** The API key may not use this resource or action (HTTP 403). */
export class Forbidden extends RateQueueError {
  static override readonly defaultCode: string = "forbidden";
}

/** No resource of that name exists (or it was deleted while waiting). */
export class ResourceNotFound extends RateQueueError {
  static override readonly defaultCode: string = "resource_not_found";
}

export interface LeaseLostOptions extends RateQueueErrorOptions {
  leaseId?: string;
}

/** The lease is gone: it expired, was never known, or could not be renewed for longer
 *  than its TTL (`renewal_failed`). The holder must stop using the resource. */
export class LeaseLost extends RateQueueError {
  static override readonly defaultCode: string = "lease_expired";
  leaseId: string | undefined;

  constructor(message: string, options: LeaseLostOptions = {}) {
    super(message, options);
    this.leaseId = options.leaseId;
  }
}

/** The cluster could not be reached or had no leader for longer than the retry budget
 *  (`no_leader`, `shutting_down`, `too_many_connections`, `commit_timeout`, or a
 *  transport failure). */
export class Unavailable extends RateQueueError {
  static override readonly defaultCode: string = "unavailable";
}

type ErrorClass = new (message: string, options?: RejectedOptions) => RateQueueError;

const BY_CODE: ReadonlyMap<string, ErrorClass> = new Map<string, ErrorClass>([
  ["queue_full", QueueFull],
  ["wait_timeout", WaitTimeout],
  ["would_block", WouldBlock],
  ["load_exceeds_limit", LoadExceedsLimit],
  ["invalid_request", InvalidRequest],
  ["payload_too_large", InvalidRequest],
  ["unauthorized", Unauthorized],
  ["forbidden", Forbidden],
  ["resource_not_found", ResourceNotFound],
  ["lease_expired", LeaseLost],
  ["lease_not_found", LeaseLost],
  ["no_leader", Unavailable],
  ["shutting_down", Unavailable],
  ["commit_timeout", Unavailable],
  ["too_many_connections", Unavailable],
]);

/** Classes for an error answer without the API's error body (a proxy or load balancer in
 *  front of the cluster answered). A code the SDK does not know (a newer server's) is not
 *  typed by its status: it is a plain `RateQueueError` with its code and message, or
 *  `Unavailable` for 502/503/504 (retried as a proxy's answer would be), as in the Rust
 *  and Python clients. */
const BY_STATUS: ReadonlyMap<number, ErrorClass> = new Map<number, ErrorClass>([
  [400, InvalidRequest],
  [401, Unauthorized],
  [403, Forbidden],
  [410, LeaseLost],
  [413, InvalidRequest],
  [422, LoadExceedsLimit],
  [429, Rejected],
  [502, Unavailable],
  [503, Unavailable],
  [504, Unavailable],
]);

/** Codes whose request may be sent again as is. `commit_timeout` is ambiguous, but every
 *  call the SDK makes is idempotent (acquire carries a request_id). */
const RETRYABLE_CODES: ReadonlySet<string> = new Set(["no_leader", "shutting_down", "too_many_connections", "commit_timeout"]);

function retryAfterHeader(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (!/^\d+(\.\d+)?$/.test(text)) return undefined; // an HTTP-date: the body's field is preferred anyway
  return Math.round(Number(text) * 1000);
}

/** The typed error for an error response (status >= 400). */
export function errorFromResponse(status: number, body: string, retryAfter: string | undefined): RateQueueError {
  let code: string | undefined;
  let message = `HTTP ${status}`;
  let retryAfterMs: number | undefined;
  const named: { limit?: string; bucket?: number } = {};
  let parsed: unknown;
  try {
    parsed = body ? JSON.parse(body) : undefined;
  } catch {
    parsed = undefined;
  }
  const detail = isObject(parsed) ? parsed["error"] : undefined;
  if (isObject(detail)) {
    if (typeof detail["code"] === "string") code = detail["code"];
    if (typeof detail["message"] === "string") message = detail["message"];
    const ms = detail["retry_after_ms"];
    if (typeof ms === "number" && Number.isFinite(ms) && ms >= 0) retryAfterMs = ms;
    if (typeof detail["limit"] === "string") named.limit = detail["limit"];
    if (typeof detail["bucket"] === "number" && Number.isInteger(detail["bucket"])) named.bucket = detail["bucket"];
  }
  retryAfterMs ??= retryAfterHeader(retryAfter);
  let cls: ErrorClass | undefined;
  if (code === undefined) cls = BY_STATUS.get(status);
  else cls = BY_CODE.get(code) ?? ([502, 503, 504].includes(status) ? Unavailable : undefined);
  if (cls === undefined) {
    return new RateQueueError(message, { code: code ?? `http_${status}`, status, ...opt(retryAfterMs) });
  }
  const extra = cls === Rejected || cls.prototype instanceof Rejected ? named : {};
  return new cls(message, { ...(code !== undefined ? { code } : {}), status, ...opt(retryAfterMs), ...extra });
}

function opt(retryAfterMs: number | undefined): { retryAfterMs?: number } {
  return retryAfterMs === undefined ? {} : { retryAfterMs };
}

/** Whether the SDK may send the same request again (with the same request_id). */
export function isRetryable(error: RateQueueError): boolean {
  if (RETRYABLE_CODES.has(error.code)) return true;
  // A proxy or load balancer in front of the cluster answering without our error body.
  return error instanceof Unavailable && error.status !== undefined && [502, 503, 504].includes(error.status);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The error classes, for the `ratequeue` namespace object. */
export const PUBLIC_ERRORS = Object.freeze({
  RateQueueError,
  Rejected,
  QueueFull,
  WaitTimeout,
  WouldBlock,
  LoadExceedsLimit,
  InvalidRequest,
  Unauthorized,
  Forbidden,
  ResourceNotFound,
  LeaseLost,
  Unavailable,
});
