//! The HTTP shell: one place that opens connections and sends one request.
//!
//! Owns: `Connector` (the keep-alive agents of one client) and `send`, which performs
//! exactly one HTTP exchange and classifies a failure as `unreachable` (the request
//! certainly never reached a server), `no_answer` (it may have), or `aborted`. Must never
//! retry, follow redirects or decide what an answer means: that is `call.ts`.
//!
//! Why `node:http` rather than the global `fetch`: Node's fetch (undici) cuts any
//! response that takes longer than 300 s to start (`headersTimeout`), and an acquire may
//! wait in the queue for up to an hour; its connect timeout and TLS options can be set
//! only through undici's own `Agent`, which Node does not expose without the `undici`
//! package. `node:http` is part of Node, lets a long poll run as long as the caller asked,
//! and its keep-alive agent `unref`s idle sockets, so an idle client never keeps the
//! process alive. Connection setup (agents, TLS: CA bundle, client certificate) lives in
//! `createAgent` only.

import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as tls from "node:tls";

import type { TlsFiles } from "./config.js";

export interface HttpRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | undefined;
  readonly connectTimeoutMs: number;
  /** From the moment the connection is up until the whole answer is read. */
  readonly readTimeoutMs: number;
  readonly signal: AbortSignal | undefined;
}

export interface HttpResponse {
  readonly status: number;
  readonly location: string | undefined;
  readonly retryAfter: string | undefined;
  readonly body: string;
}

export type FailureKind = "unreachable" | "no_answer" | "aborted";

/** One exchange failed without an answer. */
export class TransportFailure extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "TransportFailure";
  }
}

export interface ConnectorOptions {
  readonly connectionsMax: number;
  readonly keepaliveMax: number;
  readonly responseBytesMax: number;
  /** For `https://`: the CAs to trust and the certificate to present (default: Node's
   *  CAs, none). */
  readonly tls?: TlsFiles;
}

/** Sends single HTTP exchanges over a client's own keep-alive agents. */
export interface Connector {
  send(req: HttpRequest): Promise<HttpResponse>;
  /** Closes idle sockets and refuses further sends. */
  close(): void;
}

/** The one place where connections are configured. `secure` is the TLS context of
 *  `https://` connections when the client has TLS files (else Node's default: its bundled
 *  CAs, no client certificate); certificates and host names (or IPs) are verified either
 *  way, TLS 1.2 at least. */
function createAgent(
  protocol: "http:" | "https:",
  options: ConnectorOptions,
  secure: tls.SecureContext | undefined,
): http.Agent {
  const common = {
    keepAlive: true,
    maxSockets: options.connectionsMax,
    maxTotalSockets: options.connectionsMax,
    maxFreeSockets: options.keepaliveMax,
    scheduling: "lifo" as const,
  };
  if (protocol === "http:") return new http.Agent(common);
  return new https.Agent({ ...common, minVersion: "TLSv1.2", ...(secure !== undefined ? { secureContext: secure } : {}) });
}

/** Reads the TLS files into a context, now, so that a missing or wrong file fails when the
 *  client is made (a TypeError naming the file), not at the first request. `undefined`
 *  when there are none. A `caFile` replaces Node's bundled CAs. */
function secureContext(files: TlsFiles | undefined): tls.SecureContext | undefined {
  if (files === undefined || (files.caFile === undefined && files.clientCert === undefined)) return undefined;
  const read = (what: string, path: string): string => {
    try {
      return readFileSync(path, "utf8");
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      throw new TypeError(`${what} ${path}: ${code === "ENOENT" ? "no such file" : String((e as Error).message)}`, { cause: e });
    }
  };
  const options: tls.SecureContextOptions = { minVersion: "TLSv1.2" };
  if (files.caFile !== undefined) {
    const ca = read("CA bundle", files.caFile);
    if (!ca.includes("-----BEGIN CERTIFICATE-----")) throw new TypeError(`CA bundle ${files.caFile}: no PEM certificate in it`);
    options.ca = ca;
  }
  if (files.clientCert !== undefined && files.clientKey !== undefined) {
    options.cert = read("client certificate", files.clientCert);
    options.key = read("client key", files.clientKey);
  }
  try {
    return tls.createSecureContext(options);
  } catch (e) {
    const what = String((e as Error).message);
    const hint = /key values mismatch/i.test(what) ? "the key does not belong to the certificate" : what;
    throw new TypeError(`TLS files ${[files.caFile, files.clientCert, files.clientKey].filter((f) => f).join(", ")}: ${hint}`, { cause: e });
  }
}

export function createConnector(options: ConnectorOptions): Connector {
  const secure = secureContext(options.tls);
  const agents = new Map<string, http.Agent>();
  let closed = false;
  const agentFor = (protocol: "http:" | "https:"): http.Agent => {
    let a = agents.get(protocol);
    if (a === undefined) {
      a = createAgent(protocol, options, secure);
      agents.set(protocol, a);
    }
    return a;
  };
  return {
    send(req) {
      if (closed) return Promise.reject(new TypeError("the ratequeue client is closed"));
      return send(req, agentFor, options.responseBytesMax);
    },
    close() {
      closed = true;
      for (const a of agents.values()) a.destroy();
      agents.clear();
    },
  };
}

function send(
  req: HttpRequest,
  agentFor: (protocol: "http:" | "https:") => http.Agent,
  responseBytesMax: number,
): Promise<HttpResponse> {
  return new Promise<HttpResponse>((resolve, reject) => {
    const signal = req.signal;
    if (signal?.aborted) {
      reject(new TransportFailure("aborted", "aborted before sending", { cause: signal.reason }));
      return;
    }
    let url: URL;
    try {
      url = new URL(req.url);
    } catch (e) {
      reject(new TypeError(`invalid URL ${JSON.stringify(req.url)}`, { cause: e }));
      return;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      reject(new TypeError(`unsupported URL scheme in ${req.url}`));
      return;
    }
    const mod = url.protocol === "https:" ? https : http;
    const headers: Record<string, string | number> = { ...req.headers };
    if (req.body !== undefined) {
      headers["content-type"] = "application/json";
      headers["content-length"] = Buffer.byteLength(req.body);
    }

    // Whether a connection to the server was established: a failure before that point
    // means the request certainly never arrived.
    let connected = false;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    // The in-flight socket keeps the process alive while needed; the timers never do.
    const arm = (ms: number, why: () => TransportFailure): void => {
      if (timer !== undefined) clearTimeout(timer);
      timer = setTimeout(() => r.destroy(why()), ms);
      timer.unref();
    };
    const finish = (): void => {
      done = true;
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    const onAbort = (): void => {
      r.destroy(new TransportFailure("aborted", "aborted", { cause: signal?.reason }));
    };
    const fail = (e: unknown): void => {
      if (done) return;
      finish();
      if (e instanceof TransportFailure) {
        reject(e);
        return;
      }
      const code = (e as { code?: unknown } | null)?.code;
      const text = `${String((e as Error)?.message ?? e)}${typeof code === "string" ? ` (${code})` : ""}`;
      reject(new TransportFailure(connected ? "no_answer" : "unreachable", text, { cause: e }));
    };
    const onConnected = (): void => {
      connected = true;
      arm(req.readTimeoutMs, () => new TransportFailure("no_answer", `no answer within ${req.readTimeoutMs} ms`));
    };

    const r = mod.request(url, { method: req.method, headers, agent: agentFor(url.protocol) }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > responseBytesMax) {
          r.destroy(new TransportFailure("no_answer", `response body over ${responseBytesMax} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on("error", fail);
      res.on("aborted", () => fail(new Error("answer cut short")));
      res.on("end", () => {
        if (done) return;
        if (!res.complete) {
          fail(new Error("answer cut short"));
          return;
        }
        finish();
        resolve({
          status: res.statusCode ?? 0,
          location: header(res.headers["location"]),
          retryAfter: header(res.headers["retry-after"]),
          body: Buffer.concat(chunks).toString("utf8"),
        });
      });
    });
    r.on("error", fail);
    r.on("socket", (socket) => {
      const s = socket as import("node:net").Socket;
      if (s.connecting) {
        arm(req.connectTimeoutMs, () => new TransportFailure("unreachable", `connect timeout (${req.connectTimeoutMs} ms)`));
        s.once(url.protocol === "https:" ? "secureConnect" : "connect", onConnected);
      } else {
        onConnected(); // a kept-alive socket, already connected
      }
    });
    signal?.addEventListener("abort", onAbort, { once: true });
    r.end(req.body);
  });
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
