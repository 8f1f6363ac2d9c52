//! `Lease`: a granted slot that renews itself in the background until released.
//!
//! Owns: the renewal loop, the lost signal, `setActualLoad`, release and
//! `Symbol.asyncDispose`. The rules are the Rust client's `Permit` (and the Python SDK's):
//!
//! - renew every `renewFraction` of the TTL after the last confirmation, where a
//!   confirmation is the instant the successful request was *sent* (the lease surely lives
//!   until then plus its TTL, since cluster time never runs ahead of the client's clock);
//! - a renewal answered `lease_expired` / `lease_not_found`, or refused with another 4xx
//!   (a revoked key), marks the lease lost at once; transient failures are retried until
//!   the lease may have expired without our knowing, and then it is presumed lost
//!   (`renewal_failed`);
//! - a lost lease is never silent: `lost` turns true, `signal` aborts with the
//!   `LeaseLost` error, a warning is logged, `check()` throws, and leaving an
//!   `acquire(..., fn)` whose `fn` returned normally throws it.
//!
//! The renewal timer is `unref`ed: a held lease never keeps the process alive by itself.

import type { Timing } from "./config.js";
import { checkLoad } from "./config.js";
import { LeaseLost, RateQueueError } from "./errors.js";
import type { Grant, Limit, ProviderReport, ReleaseState, Reported, Shadow } from "./protocol.js";
import { sleep } from "./call.js";

/** Where the SDK reports what it cannot throw (a lost lease, a failed release at exit). */
export interface Logger {
  warn(message: string): void;
  info?(message: string): void;
}

/** What a lease needs from its client. */
export interface LeaseHost {
  readonly timing: Timing;
  readonly logger: Logger;
  now(): number;
  renewUntil(leaseId: string, deadlineMs: number, signal: AbortSignal): Promise<{ ttlMs: number; fencingToken: number }>;
  release(leaseId: string, actualLoad: number | undefined): Promise<ReleaseState>;
  report(leaseId: string, report: ProviderReport): Promise<Reported>;
}

export class Lease implements AsyncDisposable {
  /** The lease id. */
  readonly id: string;
  readonly resource: string;
  readonly lane: string;
  /** The load reserved by the grant. */
  readonly load: number;
  /** How long the acquire waited in the cluster's queue. */
  readonly queuedMs: number;
  /** The resource's limits with what remained of each at grant time. */
  readonly limits: readonly Limit[];
  /** On a dry-run resource: what enforce would have done with this acquire. */
  readonly shadow: Shadow | undefined;
  /** The acquire's idempotency key. */
  readonly requestId: string;

  readonly #host: LeaseHost;
  #fencingToken: number;
  #ttlMs: number;
  /** Clock time (ms) of the last confirmation: the lease lives at least until this + ttl. */
  #confirmedAt: number;
  #actualLoad: number | undefined;
  #lost: LeaseLost | undefined;
  #released = false;
  #renewals = 0;
  #renewal: Promise<void> | undefined;
  /** Aborted when the lease is released: stops the renewal loop and its request. */
  readonly #stop = new AbortController();
  /** Aborted (with the `LeaseLost` error) when the lease is lost. */
  readonly #lostController = new AbortController();

  /** Built by `Client.lease`; not meant to be called directly. */
  constructor(host: LeaseHost, grant: Grant, requestId: string, sentAt: number) {
    this.#host = host;
    this.id = grant.leaseId;
    this.resource = grant.resource;
    this.lane = grant.lane;
    this.load = grant.load;
    this.queuedMs = grant.queuedMs;
    this.limits = grant.limits;
    this.shadow = grant.shadow;
    this.requestId = requestId;
    this.#fencingToken = grant.fencingToken;
    this.#ttlMs = grant.ttlMs;
    this.#confirmedAt = sentAt;
  }

  /** Unique and strictly increasing across the cluster: pass it to downstream systems so
   *  they can reject a stale holder. */
  get fencingToken(): number {
    return this.#fencingToken;
  }

  /** The TTL as last granted or renewed. */
  get ttlMs(): number {
    return this.#ttlMs;
  }

  /** What `setActualLoad` recorded, sent with the release. */
  get actualLoad(): number | undefined {
    return this.#actualLoad;
  }

  /** Report the load really used (e.g. the LLM's token count), settled at release: the
   *  unused reservation is credited back, an excess is debited. */
  setActualLoad(load: number): void {
    this.#actualLoad = checkLoad("actualLoad", load);
  }

  /** True once the lease is known or presumed gone. Stop using the resource. */
  get lost(): boolean {
    return this.#lost !== undefined;
  }

  get lostError(): LeaseLost | undefined {
    return this.#lost;
  }

  /** Aborts, with the `LeaseLost` error as its reason, when the lease is lost: pass it to
   *  the work the lease guards (`fetch(url, { signal: lease.signal })`). It does not abort
   *  on a normal release. */
  get signal(): AbortSignal {
    return this.#lostController.signal;
  }

  get released(): boolean {
    return this.#released;
  }

  /** Whether the background renewal is running. */
  get renewing(): boolean {
    return this.#renewal !== undefined && !this.#released && this.#lost === undefined;
  }

  /** Successful renewals so far. */
  get renewals(): number {
    return this.#renewals;
  }

  /** Throws the `LeaseLost` error if the lease is lost; call it between units of work. */
  check(): void {
    if (this.#lost !== undefined) throw this.#lost;
  }

  /**
   * Stops renewing and releases the lease, reporting `actualLoad` if set. Idempotent: a
   * second call resolves `already_released` without asking the cluster. Rejects with
   * `LeaseLost` if the lease was lost, with `Unavailable` if the cluster could not be
   * reached within `Timing.releaseBudgetMs` (the lease then lapses at its TTL).
   */
  /** Reports what the provider answered this lease's call (see `Client.report`). */
  async report(report: ProviderReport): Promise<Reported> {
    return this.#host.report(this.id, report);
  }

  async release(): Promise<ReleaseState> {
    if (this.#released) return "already_released";
    this.#released = true;
    this.#stop.abort();
    let state: ReleaseState;
    try {
      state = await this.#host.release(this.id, this.#actualLoad);
    } catch (e) {
      if (e instanceof LeaseLost && this.#lost === undefined) {
        e.leaseId ??= this.id;
        this.#setLost(e, false);
      }
      throw e;
    }
    if (this.#lost !== undefined) throw this.#lost;
    return state;
  }

  /** `await using lease = await client.lease(...)`: releases at the end of the scope, and
   *  throws `LeaseLost` there if the lease was lost meanwhile. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this._exit(false);
  }

  /**
   * @internal Leaving an `acquire` scope: release, then throw the loss unless the scope
   * threw its own error (which then propagates; the loss was logged). A release that
   * fails for another reason is logged, not thrown: the lease lapses at its TTL.
   */
  async _exit(scopeThrew: boolean): Promise<void> {
    const logger = this.#host.logger;
    try {
      await this.release();
    } catch (e) {
      if (!(e instanceof LeaseLost)) {
        if (!(e instanceof RateQueueError)) throw e;
        logger.warn(`ratequeue could not release lease ${this.id} (it lapses at its TTL): ${e.message}`);
      }
    }
    const lost = this.#lost;
    if (lost === undefined) return;
    if (scopeThrew) {
      logger.warn(`ratequeue lease ${this.id} was lost while the scope threw; the scope's error propagates`);
      return;
    }
    throw lost;
  }

  toString(): string {
    const state = this.lost ? "lost" : this.#released ? "released" : "held";
    return `Lease(${this.id} on ${this.resource}, load ${this.load}, token ${this.#fencingToken}, ${state})`;
  }

  /** @internal */
  _startRenewal(): void {
    this.#renewal = this.#renewLoop().catch((e: unknown) => {
      // A bug in the loop must not pass silently nor leave an unhandled rejection.
      this.#markLost(presumedLost(this, e));
    });
  }

  #renewIntervalMs(): number {
    const t = this.#host.timing;
    return Math.max(t.renewIntervalMinMs, this.#ttlMs * t.renewFraction);
  }

  /** Clock time after which the lease may have expired without our knowing. */
  #expiry(): number {
    return this.#confirmedAt + this.#ttlMs;
  }

  async #renewLoop(): Promise<void> {
    const host = this.#host;
    const stop = this.#stop.signal;
    let waitMs = this.#renewIntervalMs();
    for (;;) {
      try {
        await sleep(waitMs, stop, false);
      } catch {
        return; // released
      }
      const sentAt = host.now();
      try {
        const r = await host.renewUntil(this.id, this.#expiry(), stop);
        this.#confirmedAt = Math.max(this.#confirmedAt, sentAt);
        this.#ttlMs = r.ttlMs;
        this.#fencingToken = r.fencingToken;
        this.#renewals += 1;
        waitMs = this.#renewIntervalMs();
        continue;
      } catch (e) {
        if (stop.aborted) return;
        if (e instanceof LeaseLost) {
          this.#markLost(e);
          return;
        }
        if (e instanceof RateQueueError && e.status !== undefined && e.status < 500) {
          // The cluster says no (a revoked key, say): the lease will lapse.
          this.#markLost(
            new LeaseLost(`renewal refused: ${e.message}`, { code: "renewal_failed", status: e.status, leaseId: this.id, cause: e }),
          );
          return;
        }
        if (!(e instanceof RateQueueError)) throw e;
        const left = this.#expiry() - host.now();
        if (left <= host.timing.backoffInitialMs) {
          this.#markLost(presumedLost(this, e));
          return;
        }
        host.logger.info?.(`ratequeue renewal of ${this.id} failed, retrying: ${e.message}`);
        waitMs = Math.min(this.#renewIntervalMs(), Math.max(host.timing.backoffInitialMs, left / 2));
      }
    }
  }

  /** Records the loss unless the lease was released meanwhile (a renewal racing the
   *  release sees `lease_expired` for a lease we gave back: not a loss). */
  #markLost(error: LeaseLost): void {
    if (this.#released || this.#lost !== undefined) return;
    this.#setLost(error, true);
  }

  #setLost(error: LeaseLost, log: boolean): void {
    error.leaseId ??= this.id;
    this.#lost = error;
    this.#stop.abort();
    if (log) this.#host.logger.warn(`ratequeue lease ${this.id} on ${this.resource} lost: ${error.message}`);
    this.#lostController.abort(error);
  }
}

function presumedLost(lease: Lease, cause: unknown): LeaseLost {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new LeaseLost(`could not renew lease for longer than its TTL (${lease.ttlMs} ms): ${why}`, {
    code: "renewal_failed",
    leaseId: lease.id,
    cause,
  });
}
