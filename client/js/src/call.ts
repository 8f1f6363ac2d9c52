//! One logical call: which node to ask, how to follow a redirect, when to retry and how
//! long to back off. The Python SDK's `_protocol.plan`, with the same rules:
//!
//! - a `307` from a follower is followed by hand, keeping the method, body and token,
//!   and its target becomes the cached leader;
//! - a refused connection moves on to the next node at once; `no_leader` /
//!   `shutting_down` / `commit_timeout`, a redirect loop and a timeout or reset after
//!   sending are retried with full-jitter exponential backoff, never sooner than the
//!   server's `retry_after_ms`, until the call's deadline or `attemptsMax`;
//! - every call is idempotent (acquire carries a request_id, release and renew are
//!   idempotent by lease id), so each retry resends the same request.
//!
//! Owns: `Nodes`, `baseOf`, `backoffMs`, `CallSpec`, `runCall`. Must never open a
//! connection itself: it is given `send`, `sleep` and a clock, so tests drive it exactly.

import type { Timing } from "./config.js";
import { RateQueueError, Unavailable, errorFromResponse, isObject, isRetryable } from "./errors.js";
import type { HttpRequest, HttpResponse } from "./transport.js";
import { TransportFailure } from "./transport.js";

export type Json = Record<string, unknown>;

/** The cluster's node URLs and the cached leader, shared by every call of one client. */
export class Nodes {
  readonly urls: readonly string[];
  leader: string | undefined;
  private cursor: number;

  constructor(urls: readonly string[], random: () => number) {
    if (urls.length === 0) throw new TypeError("no node URL");
    this.urls = [...urls];
    // Start at a random node so many clients do not all hit the first URL.
    this.cursor = Math.floor(random() * this.urls.length) % this.urls.length;
  }

  /** The leader if known and not excluded, else the next node not excluded. */
  pick(exclude: ReadonlySet<string>): string {
    if (this.leader !== undefined && !exclude.has(this.leader)) return this.leader;
    const n = this.urls.length;
    for (let i = 0; i < n; i++) {
      const u = this.urls[(this.cursor + i) % n]!;
      if (!exclude.has(u)) return u;
    }
    return this.urls[this.cursor % n]!;
  }

  hasUntried(exclude: ReadonlySet<string>): boolean {
    return this.urls.some((u) => !exclude.has(u)) || (this.leader !== undefined && !exclude.has(this.leader));
  }

  setLeader(base: string): void {
    this.leader = base;
  }

  /** `base` refused a connection: forget it as leader, move the rotation past it. */
  unreachable(base: string): void {
    if (this.leader === base) this.leader = undefined;
    this.advancePast(base);
  }

  /** `base` knows no leader: forget the cached one (whoever it is), ask another node next. */
  leaderless(base: string): void {
    this.leader = undefined;
    this.advancePast(base);
  }

  private advancePast(base: string): void {
    const n = this.urls.length;
    if (this.urls[this.cursor % n] === base) this.cursor = (this.cursor + 1) % n;
  }
}

/**
 * The node base URL of `url`, a request for `path`: what precedes `path` (so a base with
 * a path prefix, `http://lb/rq`, survives), else scheme://host:port.
 */
export function baseOf(url: string, path: string): string {
  const noQuery = url.split(/[?#]/, 1)[0]!;
  const pathOnly = path.split("?", 1)[0]!;
  if (pathOnly && noQuery.endsWith(pathOnly)) return noQuery.slice(0, -pathOnly.length).replace(/\/+$/, "");
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}

/** Full-jitter exponential backoff; never less than the server's `retryAfterMs`. */
export function backoffMs(timing: Timing, attempt: number, retryAfterMs: number | undefined, random: () => number): number {
  const cap = Math.min(timing.backoffMaxMs, timing.backoffInitialMs * 2 ** Math.min(attempt, 30));
  let delay = random() * cap;
  if (retryAfterMs !== undefined) delay = Math.max(delay, retryAfterMs + random() * timing.backoffInitialMs);
  return delay;
}

export interface CallSpec {
  readonly method: string;
  readonly path: string;
  /** The body for an attempt started at clock time `nowMs` (an acquire shortens its wait). */
  body(nowMs: number): Json | undefined;
  /** The read timeout for that body. */
  readTimeoutMs(body: Json | undefined): number;
  /** Give up retrying transient failures at this clock time. */
  readonly deadlineMs: number;
  /** Turns the final error before it is thrown (acquire maps a late would_block). */
  convert?(e: RateQueueError): RateQueueError;
  /** Aborts the call: it then rejects with the signal's reason. */
  readonly signal?: AbortSignal | undefined;
  /** A background call (renewal): its backoff sleeps do not keep the process alive. */
  readonly background?: boolean;
}

export interface CallContext {
  readonly nodes: Nodes;
  readonly timing: Timing;
  readonly headers: Readonly<Record<string, string>>;
  now(): number;
  random(): number;
  send(req: HttpRequest): Promise<HttpResponse>;
  sleep(ms: number, signal: AbortSignal | undefined, ref: boolean): Promise<void>;
}

const REDIRECTS: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);

/**
 * Drives one call: pick a node, follow redirects keeping method and body, retry
 * transient failures with backoff until `spec.deadlineMs` or `timing.attemptsMax`.
 * Resolves to the 2xx JSON body; rejects with a `RateQueueError` (or the abort reason).
 */
export async function runCall(spec: CallSpec, ctx: CallContext): Promise<Json> {
  const { nodes, timing } = ctx;
  const convert = (e: RateQueueError): RateQueueError => (spec.convert ? spec.convert(e) : e);
  const unreachable = new Set<string>();
  let attempt = 0;
  for (;;) {
    let base = nodes.pick(unreachable);
    const body = spec.body(ctx.now());
    const text = body === undefined ? undefined : JSON.stringify(body);
    let url = base + spec.path;
    let redirects = 0;
    let answer: HttpResponse | TransportFailure | "redirect_loop";
    for (;;) {
      try {
        answer = await ctx.send({
          method: spec.method,
          url,
          headers: ctx.headers,
          body: text,
          connectTimeoutMs: timing.connectTimeoutMs,
          readTimeoutMs: spec.readTimeoutMs(body),
          signal: spec.signal,
        });
      } catch (e) {
        if (!(e instanceof TransportFailure)) throw e;
        answer = e;
      }
      if (answer instanceof TransportFailure || !REDIRECTS.has(answer.status)) break;
      const location = answer.location;
      if (!location || redirects >= timing.redirectsMax) {
        answer = "redirect_loop";
        break;
      }
      let next: string;
      try {
        next = new URL(location, url).toString();
      } catch {
        throw new RateQueueError(`redirect to an invalid URL ${JSON.stringify(location)}`, { code: "bad_redirect" });
      }
      if (!next.startsWith("http://") && !next.startsWith("https://")) {
        throw new RateQueueError(`redirect to unsupported URL ${JSON.stringify(next)}`, { code: "bad_redirect" });
      }
      url = next;
      base = baseOf(url, spec.path);
      nodes.setLeader(base);
      redirects += 1;
    }

    let error: RateQueueError;
    let retryAfterMs: number | undefined;
    if (answer === "redirect_loop") {
      nodes.leaderless(base);
      error = new Unavailable(`more than ${timing.redirectsMax} redirects (or one without Location)`, {
        code: "redirect_loop",
      });
    } else if (answer instanceof TransportFailure) {
      if (answer.kind === "aborted") throw abortReason(spec.signal, answer);
      if (answer.kind === "unreachable") {
        unreachable.add(base);
        nodes.unreachable(base);
        error = new Unavailable(`cannot reach ${base}: ${answer.message}`, { code: "unreachable", cause: answer });
      } else {
        error = new Unavailable(`no answer from ${base}: ${answer.message}`, { code: "no_answer", cause: answer });
      }
    } else if (answer.status >= 200 && answer.status < 300) {
      // Only the leader serves lease calls: whoever answered is the leader.
      nodes.setLeader(base);
      return jsonBody(answer);
    } else {
      error = errorFromResponse(answer.status, answer.body, answer.retryAfter);
      if (!isRetryable(error)) throw convert(error);
      if (error.code === "no_leader" || error.code === "shutting_down") nodes.leaderless(base);
      retryAfterMs = error.retryAfterMs;
    }

    attempt += 1;
    if (attempt >= timing.attemptsMax) throw convert(error);
    let delay: number;
    if (error.code === "unreachable" && redirects === 0 && nodes.hasUntried(unreachable)) {
      delay = 0; // another node may answer at once (not one that just sent us here)
    } else {
      delay = backoffMs(timing, attempt, retryAfterMs, () => ctx.random());
      unreachable.clear();
    }
    if (ctx.now() + delay > spec.deadlineMs) throw convert(error);
    if (delay > 0) await ctx.sleep(delay, spec.signal, !spec.background);
  }
}

function abortReason(signal: AbortSignal | undefined, failure: TransportFailure): unknown {
  if (signal?.aborted) return signal.reason;
  return failure.cause ?? failure;
}

function jsonBody(r: HttpResponse): Json {
  let data: unknown;
  try {
    data = r.body ? JSON.parse(r.body) : {};
  } catch (e) {
    throw new RateQueueError(`invalid JSON in a ${r.status} response`, { code: "invalid_response", cause: e });
  }
  if (!isObject(data)) throw new RateQueueError("expected a JSON object", { code: "invalid_response" });
  return data;
}

/** A promise that resolves after `ms`, or rejects with the signal's reason. `ref: false`
 *  lets the process exit meanwhile (background renewals). */
export function sleep(ms: number, signal: AbortSignal | undefined, ref: boolean): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    if (!ref) t.unref();
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
