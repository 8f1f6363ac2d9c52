//! `Client`: one cluster's node URLs, API key, connection pool and cached leader; the
//! lease calls over `runCall`; and the process-wide default clients.
//!
//! Owns: `Client`, `defaultClient`, `acquire`, `lease`. One client per process (per
//! URLs and key) is reused by the module-level functions; it holds no timer and no
//! referenced socket while idle, so it never keeps Node alive.

import { hostname } from "node:os";
import { performance } from "node:perf_hooks";

import type { Timing, TlsFiles } from "./config.js";
import {
  checkHolderLabel,
  checkInt,
  checkLoad,
  holder,
  makeTiming,
  resolveApiKey,
  resolveHolder,
  resolveTls,
  resolveUrls,
  TTL_MS_MAX,
  TTL_MS_MIN,
} from "./config.js";
import type { CallContext, CallSpec, Json } from "./call.js";
import { Nodes, runCall, sleep } from "./call.js";
import type { LeaseHost, Logger } from "./lease.js";
import { Lease } from "./lease.js";
import type { AcquireRequest, Progress, ProviderReport, ReleaseState, Reported } from "./protocol.js";
import {
  PROGRESS_INTERVAL_MS_MAX,
  PROGRESS_INTERVAL_MS_MIN,
  acquireSpec,
  buildAcquireArgs,
  parseGrant,
  parseProgress,
  parseRelease,
  parseRenewal,
  parseReported,
  progressSpec,
  releaseSpec,
  renewSpec,
  reportSpec,
} from "./protocol.js";
import { RateQueueError } from "./errors.js";
import type { Connector } from "./transport.js";
import { createConnector } from "./transport.js";
import { VERSION } from "./version.js";

export interface ClientOptions {
  /** Node base URLs (any node will do; followers redirect to the leader): an array or a
   *  comma-separated string. Default: RATEQUEUE_URL, else `http://127.0.0.1:7700`. */
  urls?: string | readonly string[];
  /** Default: RATEQUEUE_API_KEY. */
  apiKey?: string;
  /** For `https://` nodes: trust only the CAs in this PEM bundle (default:
   *  RATEQUEUE_CA_FILE, else Node's bundled CAs). */
  caFile?: string;
  /** A client certificate and its key (PEM files) for nodes that require one (default:
   *  RATEQUEUE_CLIENT_CERT and RATEQUEUE_CLIENT_KEY). Both or neither. */
  clientCert?: string;
  clientKey?: string;
  /** A label for this client's leases (`celery`, `nightly-export`; default:
   *  RATEQUEUE_HOLDER): each acquire sends `holder` = `<label>@<host>:<pid>` (without a
   *  label `<host>:<pid>`), which the dashboard's lease list shows. 1-128 characters of
   *  printable ASCII, cut if need be so that host and pid fit in the server's 128. */
  holder?: string;
  /** Overrides of the delays and bounds (`DEFAULT_TIMING`). */
  timing?: Partial<Timing>;
  /** Where lost leases and failed releases are reported. Default: `console`. */
  logger?: Logger;
}

/** How the module-level functions pick their client. */
export interface ConnectOptions {
  /** Node URLs; default RATEQUEUE_URL. */
  url?: string | readonly string[];
  /** Default RATEQUEUE_API_KEY. */
  apiKey?: string;
  /** Use this client instead of the process-wide default one. */
  client?: Client;
}

export type AcquireOptions = AcquireRequest & ConnectOptions;

export type LeaseScope<T> = (lease: Lease) => T | Promise<T>;

const defaultLogger: Logger = { warn: (m) => console.warn(m) };

/** A client of one ratequeue cluster. Share one per process: it pools connections and
 *  remembers the leader. */
export class Client {
  readonly urls: readonly string[];
  readonly timing: Timing;
  /** The TLS files in use (from the options or the environment). */
  readonly tls: TlsFiles;
  /** The label of this client's leases (the `holder` option, else RATEQUEUE_HOLDER). */
  readonly holder: string | undefined;
  readonly #nodes: Nodes;
  readonly #connector: Connector;
  readonly #ctx: CallContext;
  readonly #host: LeaseHost;
  #closed = false;

  constructor(options: ClientOptions = {}) {
    this.urls = Object.freeze(resolveUrls(options.urls));
    this.timing = makeTiming(options.timing);
    const apiKey = resolveApiKey(options.apiKey);
    this.holder = resolveHolder(options.holder);
    const headers: Record<string, string> = { "user-agent": `ratequeue-js/${VERSION}`, accept: "application/json" };
    if (apiKey !== undefined) headers["authorization"] = `Bearer ${apiKey}`;
    this.#nodes = new Nodes(this.urls, Math.random);
    this.tls = resolveTls({
      ...(options.caFile !== undefined ? { caFile: options.caFile } : {}),
      ...(options.clientCert !== undefined ? { clientCert: options.clientCert } : {}),
      ...(options.clientKey !== undefined ? { clientKey: options.clientKey } : {}),
    });
    this.#connector = createConnector({ ...this.timing, tls: this.tls });
    const now = (): number => performance.now();
    this.#ctx = {
      nodes: this.#nodes,
      timing: this.timing,
      headers: Object.freeze(headers),
      now,
      random: Math.random,
      send: (req) => this.#connector.send(req),
      sleep,
    };
    const logger = options.logger ?? defaultLogger;
    this.#host = {
      timing: this.timing,
      logger,
      now,
      renewUntil: async (leaseId, deadlineMs, signal) =>
        parseRenewal(await this.#call(renewSpec(leaseId, undefined, this.timing, deadlineMs, signal, true))),
      release: (leaseId, actualLoad) => this.release(leaseId, actualLoad),
      report: (leaseId, report) => this.report(leaseId, report),
    };
  }

  /** The cached leader's base URL, if one is known. */
  get leader(): string | undefined {
    return this.#nodes.leader;
  }

  /**
   * Waits for a slot, runs `fn` while holding it (renewed in the background), and
   * releases it when `fn` returns or throws. Resolves to what `fn` returns. If the lease
   * was lost meanwhile and `fn` returned normally, rejects with `LeaseLost`; if `fn`
   * threw, its error propagates unchanged.
   */
  acquire<T>(resource: string, fn: LeaseScope<T>): Promise<T>;
  acquire<T>(resource: string, options: AcquireRequest, fn: LeaseScope<T>): Promise<T>;
  async acquire<T>(resource: string, a: AcquireRequest | LeaseScope<T>, b?: LeaseScope<T>): Promise<T> {
    const [options, fn] = typeof a === "function" ? [{}, a] : [a, b];
    if (typeof fn !== "function") throw new TypeError("acquire(resource, options, fn): fn must be a function");
    return withLease(await this.lease(resource, options), fn);
  }

  /**
   * Waits for a slot and returns the held lease, renewed in the background until
   * `lease.release()` or the end of an `await using` scope.
   */
  async lease(resource: string, options: AcquireRequest = {}): Promise<Lease> {
    const label = options.holder === undefined ? this.holder : checkHolderLabel(options.holder);
    // The pid of the caller, read at each acquire: a forked worker names itself.
    const args = buildAcquireArgs(resource, options, this.timing, holder(label, hostname(), process.pid));
    const signal = options.signal;
    const onProgress = options.onProgress;
    const intervalMs = options.progressIntervalMs ?? 1000;
    if (onProgress !== undefined && typeof onProgress !== "function") {
      throw new TypeError("onProgress must be a function");
    }
    checkInt("progressIntervalMs", intervalMs, PROGRESS_INTERVAL_MS_MIN, PROGRESS_INTERVAL_MS_MAX);
    signal?.throwIfAborted();
    const sentAt = this.#ctx.now();
    const watch = onProgress === undefined ? undefined : new AbortController();
    if (watch !== undefined && onProgress !== undefined) {
      void this.#watchProgress(args.resource, args.requestId, intervalMs, onProgress, watch.signal);
    }
    let data: Json;
    try {
      data = await this.#call(acquireSpec(args, this.timing, sentAt, signal));
    } finally {
      watch?.abort();
    }
    const lease = new Lease(this.#host, parseGrant(data), args.requestId, sentAt);
    if (signal?.aborted) {
      // Granted as the caller gave up: give it back rather than strand the slot.
      lease.release().catch(() => {});
      throw signal.reason;
    }
    lease._startRenewal();
    return lease;
  }

  /**
   * Tells the cluster what the provider answered the holder of `leaseId` (remaining
   * budget, resets, a 429): the resource's feedback policy lowers its budget to the
   * provider's figures and pauses grants after a 429. Rejects with `LeaseLost` once the
   * lease has ended.
   */
  async report(leaseId: string, report: ProviderReport): Promise<Reported> {
    const deadline = this.#ctx.now() + this.timing.requestTimeoutMs;
    return parseReported(await this.#call(reportSpec(leaseId, report, this.timing, deadline)));
  }

  /**
   * Where this client's acquire with `requestId` stands in the leader's queue; undefined
   * once it no longer waits (granted, refused, gone) or if it never queued.
   */
  async waiterProgress(resource: string, requestId: string): Promise<Progress | undefined> {
    return this.#progress(resource, requestId, this.timing.requestTimeoutMs, undefined);
  }

  async #progress(
    resource: string,
    requestId: string,
    budgetMs: number,
    signal: AbortSignal | undefined,
  ): Promise<Progress | undefined> {
    const deadline = this.#ctx.now() + Math.min(budgetMs, this.timing.requestTimeoutMs);
    try {
      return parseProgress(await this.#call(progressSpec(resource, requestId, this.timing, deadline, signal)));
    } catch (e) {
      if (e instanceof RateQueueError && e.code === "waiter_not_found") return undefined;
      throw e;
    }
  }

  /** Polls a waiting acquire's progress until `stop` aborts (the acquire ended). */
  async #watchProgress(
    resource: string,
    requestId: string,
    intervalMs: number,
    onProgress: (p: Progress) => void,
    stop: AbortSignal,
  ): Promise<void> {
    while (!stop.aborted) {
      try {
        await sleep(intervalMs, stop, false);
      } catch {
        return; // stopped
      }
      let progress: Progress | undefined;
      try {
        progress = await this.#progress(resource, requestId, intervalMs, stop);
      } catch {
        continue; // a failed poll (an election, a slow node): the next one may answer
      }
      if (progress === undefined || stop.aborted) continue;
      try {
        onProgress(progress);
      } catch (e) {
        this.#host.logger.warn(`ratequeue: the onProgress callback threw; it is not called again: ${String(e)}`);
        return;
      }
    }
  }

  /** Releases a lease by id (what `lease.release()` does), reporting `actualLoad`. */
  async release(leaseId: string, actualLoad?: number): Promise<ReleaseState> {
    if (actualLoad !== undefined) checkLoad("actualLoad", actualLoad);
    const deadline = this.#ctx.now() + this.timing.releaseBudgetMs;
    return parseRelease(await this.#call(releaseSpec(leaseId, actualLoad, this.timing, deadline)));
  }

  /** Renews a lease by id (what the background renewal does), optionally with a new TTL. */
  async renew(leaseId: string, ttlMs?: number): Promise<{ ttlMs: number; fencingToken: number }> {
    if (ttlMs !== undefined) checkInt("ttlMs", ttlMs, TTL_MS_MIN, TTL_MS_MAX);
    const deadline = this.#ctx.now() + this.timing.requestTimeoutMs;
    return parseRenewal(await this.#call(renewSpec(leaseId, ttlMs, this.timing, deadline, undefined, false)));
  }

  /** Closes the client's connections and refuses further use. Held leases are not
   *  released (they lapse at their TTL). Idle clients need no close to let Node exit. */
  close(): void {
    this.#closed = true;
    this.#connector.close();
  }

  #call(spec: CallSpec): Promise<Json> {
    if (this.#closed) return Promise.reject(new TypeError("this ratequeue Client is closed"));
    return runCall(spec, this.#ctx);
  }
}

async function withLease<T>(lease: Lease, fn: LeaseScope<T>): Promise<T> {
  let result: T;
  try {
    result = await fn(lease);
  } catch (e) {
    await lease._exit(true);
    throw e;
  }
  await lease._exit(false);
  return result;
}

// --- the process-wide default clients ------------------------------------------------

/** Distinct (urls, apiKey) pairs kept; beyond that the oldest default client is dropped. */
export const DEFAULT_CLIENTS_MAX = 32;
const defaults = new Map<string, Client>();

/** The process-wide client for these URLs and key (from the environment when left out)
 *  and the TLS files and holder label of the environment (RATEQUEUE_CA_FILE,
 *  RATEQUEUE_CLIENT_CERT, RATEQUEUE_CLIENT_KEY, RATEQUEUE_HOLDER). Every module-level
 *  call with the same URLs, key, files and label shares it. */
export function defaultClient(options: { url?: string | readonly string[]; apiKey?: string } = {}): Client {
  const urls = resolveUrls(options.url);
  const apiKey = resolveApiKey(options.apiKey);
  const key = JSON.stringify([urls, apiKey ?? null, resolveTls(), resolveHolder(undefined) ?? null]);
  let c = defaults.get(key);
  if (c === undefined) {
    if (defaults.size >= DEFAULT_CLIENTS_MAX) {
      const oldest = defaults.keys().next().value as string;
      defaults.delete(oldest); // not closed: its leases may still be held
    }
    c = new Client({ urls, ...(apiKey !== undefined ? { apiKey } : {}) });
    defaults.set(key, c);
  }
  return c;
}

function clientFor(options: ConnectOptions): Client {
  if (options.client !== undefined) return options.client;
  return defaultClient({
    ...(options.url !== undefined ? { url: options.url } : {}),
    ...(options.apiKey !== undefined ? { apiKey: options.apiKey } : {}),
  });
}

function requestOf(options: AcquireOptions): AcquireRequest {
  const { url: _url, apiKey: _apiKey, client: _client, ...request } = options;
  return request;
}

/**
 * `await acquire("export-api", { load: n }, async (lease) => { ... })`: holds a slot of
 * the resource while `fn` runs, through the default client for `url` / `apiKey`
 * (default RATEQUEUE_URL / RATEQUEUE_API_KEY). See `Client.acquire`.
 */
export function acquire<T>(resource: string, fn: LeaseScope<T>): Promise<T>;
export function acquire<T>(resource: string, options: AcquireOptions, fn: LeaseScope<T>): Promise<T>;
export async function acquire<T>(resource: string, a: AcquireOptions | LeaseScope<T>, b?: LeaseScope<T>): Promise<T> {
  const [options, fn] = typeof a === "function" ? [{}, a] : [a, b];
  if (typeof fn !== "function") throw new TypeError("acquire(resource, options, fn): fn must be a function");
  return clientFor(options).acquire(resource, requestOf(options), fn);
}

/** `await using lease = await lease("export-api", { load: n })`: a held lease from the
 *  default client. See `Client.lease`. */
export function lease(resource: string, options: AcquireOptions = {}): Promise<Lease> {
  return clientFor(options).lease(resource, requestOf(options));
}
