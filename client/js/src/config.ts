//! Configuration shared by every call: timing knobs, node URLs, the API key, the holder
//! label and the TLS files from options or the environment, and client-side validation of
//! names and numbers.
//!
//! Owns: `Timing`, `TlsFiles`, `resolveUrls`, `resolveApiKey`, `resolveHolder`, `holder`,
//! `resolveTls`, the validators. Must never do I/O beyond reading environment variables (the TLS files are
//! read by `transport.ts`).

/** Where `ratequeue dev` listens: used when neither `url` nor RATEQUEUE_URL is given. */
export const DEFAULT_URL = "http://127.0.0.1:7700";

const NAME_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/** The server's bounds (ratequeue-core), checked here so a bad value fails before any I/O. */
export const LOAD_MAX = 1_000_000_000_000;
export const WAIT_MS_MAX = 3_600_000;
export const TTL_MS_MIN = 100;
export const TTL_MS_MAX = 24 * 3_600_000;
export const REQUEST_ID_BYTES_MAX = 128;
export const PRIORITY_MIN = -(2 ** 31);
export const PRIORITY_MAX = 2 ** 31 - 1;
/** The server's bound on an acquire's `holder`: 1-128 characters of printable ASCII. */
export const HOLDER_LEN_MAX = 128;
/** The host name's share of a holder, so that a label and the pid always fit. */
const HOLDER_HOST_LEN_MAX = 64;
const HOLDER_RE = /^[ -~]{1,128}$/;

/**
 * Every delay and bound the SDK uses, in milliseconds unless named otherwise. The
 * defaults suit production (they are the Python SDK's); tests pass smaller values.
 */
export interface Timing {
  /** How long an acquire waits in the cluster's queue when `waitMs` is not given. */
  readonly waitDefaultMs: number;
  /** TCP (and later TLS) connect timeout per attempt. */
  readonly connectTimeoutMs: number;
  /** Read timeout of release, renew and other short calls. */
  readonly requestTimeoutMs: number;
  /** An acquire's read timeout is its wait plus this margin, so the server's long poll
   *  is never cut short by the client. */
  readonly acquireReadMarginMs: number;
  /** How long transient failures (no leader, unreachable node, ambiguous timeouts) are
   *  retried, on top of an acquire's own wait. */
  readonly retryBudgetMs: number;
  /** How long a release is retried before it is given up (the lease then lapses at its TTL). */
  readonly releaseBudgetMs: number;
  /** At most this many attempts per call, whatever the budget. */
  readonly attemptsMax: number;
  /** At most this many redirects followed within one attempt. */
  readonly redirectsMax: number;
  /** Exponential backoff with full jitter: retry n sleeps uniform(0, min(max, initial * 2^n)). */
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  /** Renew when this fraction of the TTL has passed since the last confirmation. */
  readonly renewFraction: number;
  /** Never renew more often than this. */
  readonly renewIntervalMinMs: number;
  /** Sockets one client opens at most (each waiting acquire holds one). */
  readonly connectionsMax: number;
  /** Idle keep-alive sockets one client keeps. */
  readonly keepaliveMax: number;
  /** A response body larger than this is refused (`invalid_response`). */
  readonly responseBytesMax: number;
}

export const DEFAULT_TIMING: Timing = Object.freeze({
  waitDefaultMs: 30_000,
  connectTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  acquireReadMarginMs: 10_000,
  retryBudgetMs: 30_000,
  releaseBudgetMs: 10_000,
  attemptsMax: 50,
  redirectsMax: 5,
  backoffInitialMs: 50,
  backoffMaxMs: 2_000,
  renewFraction: 1 / 3,
  renewIntervalMinMs: 20,
  connectionsMax: 1_000,
  keepaliveMax: 100,
  responseBytesMax: 1 << 20,
});

const NON_NEGATIVE: readonly (keyof Timing)[] = [
  "waitDefaultMs",
  "connectTimeoutMs",
  "requestTimeoutMs",
  "acquireReadMarginMs",
  "retryBudgetMs",
  "releaseBudgetMs",
  "backoffInitialMs",
  "backoffMaxMs",
  "renewIntervalMinMs",
];

/** The defaults with `overrides` applied, validated. */
export function makeTiming(overrides: Partial<Timing> = {}): Timing {
  const t: Timing = { ...DEFAULT_TIMING, ...overrides };
  for (const name of Object.keys(t) as (keyof Timing)[]) {
    if (typeof t[name] !== "number" || !Number.isFinite(t[name])) {
      throw new TypeError(`Timing.${name} must be a finite number`);
    }
  }
  for (const name of NON_NEGATIVE) {
    if (t[name] < 0) throw new RangeError(`Timing.${name} must be >= 0`);
  }
  if (!(t.renewFraction > 0 && t.renewFraction < 1)) {
    throw new RangeError("Timing.renewFraction must be in (0, 1)");
  }
  if (t.attemptsMax < 1 || t.redirectsMax < 0) {
    throw new RangeError("Timing.attemptsMax must be >= 1 and redirectsMax >= 0");
  }
  if (t.connectionsMax < 1 || t.keepaliveMax < 0 || t.responseBytesMax < 1) {
    throw new RangeError("Timing.connectionsMax and responseBytesMax must be >= 1, keepaliveMax >= 0");
  }
  return Object.freeze(t);
}

/**
 * Node base URLs from the argument, else RATEQUEUE_URL (comma-separated), else the dev
 * default. Trailing slashes are dropped; duplicates removed, order kept.
 */
export function resolveUrls(urls: string | readonly string[] | undefined): string[] {
  const given = urls ?? (process.env["RATEQUEUE_URL"] || DEFAULT_URL);
  const parts = typeof given === "string" ? given.split(",") : [...given];
  const out: string[] = [];
  for (const part of parts) {
    if (typeof part !== "string") throw new TypeError("ratequeue node URLs must be strings");
    const u = part.trim().replace(/\/+$/, "");
    if (!u) continue;
    if (!u.startsWith("http://") && !u.startsWith("https://")) {
      throw new TypeError(`ratequeue node URL ${JSON.stringify(u)} must start with http:// or https://`);
    }
    if (!out.includes(u)) out.push(u);
  }
  if (out.length === 0) throw new TypeError("no ratequeue node URL given");
  return out;
}

/**
 * The API key from the argument, else RATEQUEUE_API_KEY, else undefined (requests are then
 * sent without credentials and the server answers `unauthorized`).
 */
export function resolveApiKey(apiKey: string | undefined): string | undefined {
  if (apiKey !== undefined) {
    if (typeof apiKey !== "string") throw new TypeError("apiKey must be a string");
    return apiKey || undefined;
  }
  return process.env["RATEQUEUE_API_KEY"] || undefined;
}

/** A holder label: 1-128 characters of printable ASCII (space to `~`), as the server
 *  requires of `holder`. */
export function checkHolderLabel(label: unknown): string {
  if (typeof label !== "string" || !HOLDER_RE.test(label)) {
    throw new RangeError(`holder label must be 1-${HOLDER_LEN_MAX} characters of printable ASCII, got ${JSON.stringify(label)}`);
  }
  return label;
}

/** The label of a client's leases: the argument, else RATEQUEUE_HOLDER (trimmed; empty
 *  counts as unset), else undefined. Checked. */
export function resolveHolder(label: string | undefined): string | undefined {
  if (label !== undefined) return checkHolderLabel(label);
  const env = (process.env["RATEQUEUE_HOLDER"] ?? "").trim();
  if (!env) return undefined;
  try {
    return checkHolderLabel(env);
  } catch (e) {
    throw new RangeError(`RATEQUEUE_HOLDER: ${(e as Error).message}`);
  }
}

/**
 * What an acquire sends as `holder`: `<label>@<host>:<pid>`, or `<host>:<pid>` without a
 * label. The host name is cut to 64 characters (anything but printable ASCII becomes `?`)
 * and the label to what then fits in the server's 128, so host and pid always show.
 * `label` must have passed `checkHolderLabel`.
 */
export function holder(label: string | undefined, host: string, pid: number): string {
  const h = [...host].slice(0, HOLDER_HOST_LEN_MAX).map((c) => (c >= " " && c <= "~" ? c : "?")).join("") || "unknown-host";
  const place = `${h}:${pid}`;
  return label === undefined ? place : `${label.slice(0, HOLDER_LEN_MAX - place.length - 1)}@${place}`;
}

/** Which CAs a client trusts and which certificate it presents to `https://` nodes (PEM
 *  file paths; read when the client is made). All undefined: Node's bundled CAs (or
 *  NODE_EXTRA_CA_CERTS) and no client certificate. */
export interface TlsFiles {
  /** Trust only the CAs in this bundle (RATEQUEUE_CA_FILE). */
  readonly caFile?: string;
  /** Present this certificate (leaf first) and key to nodes that require one
   *  (RATEQUEUE_CLIENT_CERT, RATEQUEUE_CLIENT_KEY; nodes started with --api-client-ca). */
  readonly clientCert?: string;
  readonly clientKey?: string;
}

/**
 * The TLS files from the options, else the environment: `caFile` else RATEQUEUE_CA_FILE;
 * the client certificate and key as a pair, from the options if either is given, else
 * RATEQUEUE_CLIENT_CERT and RATEQUEUE_CLIENT_KEY. Empty values count as unset. A
 * certificate without its key (or the reverse) is a TypeError.
 */
export function resolveTls(options: TlsFiles = {}): TlsFiles {
  const given = (what: string, v: unknown): string | undefined => {
    if (v !== undefined && typeof v !== "string") throw new TypeError(`${what} must be a file path string`);
    return v || undefined;
  };
  const env = (name: string): string | undefined => process.env[name] || undefined;
  const caFile = given("caFile", options.caFile) ?? env("RATEQUEUE_CA_FILE");
  let clientCert = given("clientCert", options.clientCert);
  let clientKey = given("clientKey", options.clientKey);
  let source = "clientCert and clientKey";
  if (clientCert === undefined && clientKey === undefined) {
    clientCert = env("RATEQUEUE_CLIENT_CERT");
    clientKey = env("RATEQUEUE_CLIENT_KEY");
    source = "RATEQUEUE_CLIENT_CERT and RATEQUEUE_CLIENT_KEY";
  }
  if ((clientCert === undefined) !== (clientKey === undefined)) {
    throw new TypeError(`a client certificate needs both its certificate and its key file (${source})`);
  }
  return Object.freeze({
    ...(caFile !== undefined ? { caFile } : {}),
    ...(clientCert !== undefined ? { clientCert } : {}),
    ...(clientKey !== undefined ? { clientKey } : {}),
  });
}

export function checkName(what: string, name: unknown): string {
  if (typeof name !== "string" || !NAME_RE.test(name)) {
    throw new TypeError(`${what} name must be 1-128 characters of [A-Za-z0-9._:-], got ${JSON.stringify(name)}`);
  }
  return name;
}

/** An integer in `lo..=hi`: TypeError for a non-integer, RangeError outside the bounds. */
export function checkInt(what: string, value: unknown, lo: number, hi: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new TypeError(`${what} must be an integer, got ${String(value)}`);
  }
  if (value < lo || value > hi) throw new RangeError(`${what} must be in ${lo}..=${hi}, got ${value}`);
  return value;
}

export function checkLoad(what: string, load: unknown): number {
  return checkInt(what, load, 0, LOAD_MAX);
}
