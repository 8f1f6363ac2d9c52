//! An in-process fake of a ratequeue cluster over real sockets, for the unit tests: one
//! leader serving acquire (a concurrency limit with a FIFO queue, `wait_ms`,
//! `request_id` idempotency, waiters dropped when their request closes), release and
//! renew (TTL in real time); followers answering 307 to the leader; and injected faults.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** How long the fake keeps an idle keep-alive connection open. */
export const KEEP_ALIVE_MS = 60_000;

export type Fault =
  | { status: number; code: string; retryAfterMs?: number; body?: string }
  | { reset: true }
  | { hang: true };

export interface Seen {
  node: number;
  method: string;
  path: string;
  body: Record<string, unknown> | undefined;
  headers: IncomingMessage["headers"];
}

interface FakeLease { id: string; token: number; load: number; ttlMs: number; expiresAt: number; released: boolean }
interface Waiter { requestId: string; load: number; ttlMs: number; answer: (lease: FakeLease) => void; timer: NodeJS.Timeout }

export class FakeCluster {
  readonly servers: Server[] = [];
  readonly urls: string[] = [];
  readonly seen: Seen[] = [];
  leader = 0;
  concurrency = 1;
  /** Waiters whose request closed before an answer. */
  cancelled = 0;
  readonly leases = new Map<string, FakeLease>();
  readonly #byRequest = new Map<string, FakeLease>();
  readonly #queue: Waiter[] = [];
  #faults: { match: (s: Seen) => boolean; fault: Fault; times: number }[] = [];
  #token = 0;
  readonly #hung = new Set<ServerResponse>();

  static async start(nodes = 1): Promise<FakeCluster> {
    const c = new FakeCluster();
    for (let i = 0; i < nodes; i++) {
      const s = createServer((req, res) => c.#handle(i, req, res));
      s.keepAliveTimeout = KEEP_ALIVE_MS;
      await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
      c.servers.push(s);
      c.urls.push(`http://127.0.0.1:${(s.address() as AddressInfo).port}`);
    }
    return c;
  }

  /** The next `times` requests matching `match` get `fault` instead of an answer. */
  inject(match: (s: Seen) => boolean, fault: Fault, times = 1): void {
    this.#faults.push({ match, fault, times });
  }

  clearFaults(): void {
    this.#faults = [];
  }

  held(): number {
    return [...this.leases.values()].filter((l) => !l.released && l.expiresAt > Date.now()).length;
  }

  queued(): number {
    return this.#queue.length;
  }

  seenPath(re: RegExp): Seen[] {
    return this.seen.filter((s) => re.test(s.path));
  }

  async close(): Promise<void> {
    for (const w of this.#queue) clearTimeout(w.timer);
    for (const r of this.#hung) r.destroy();
    for (const s of this.servers) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  }

  #handle(node: number, req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString();
      const seen: Seen = { node, method: req.method ?? "", path: req.url ?? "", body: text ? JSON.parse(text) : undefined, headers: req.headers };
      this.seen.push(seen);
      const f = this.#faults.find((x) => x.times > 0 && x.match(seen));
      if (f) {
        f.times -= 1;
        const fault = f.fault;
        if ("reset" in fault) return void req.socket.destroy();
        if ("hang" in fault) return void this.#hung.add(res);
        if (fault.body !== undefined) return send(res, fault.status, fault.body);
        return error(res, fault.status, fault.code, fault.retryAfterMs);
      }
      if (node !== this.leader) {
        res.writeHead(307, { location: this.urls[this.leader] + seen.path, "x-ratequeue-leader": String(this.leader + 1) });
        return void res.end();
      }
      this.#serve(seen, req, res);
    });
  }

  #serve(s: Seen, req: IncomingMessage, res: ServerResponse): void {
    const b = s.body ?? {};
    let m = /^\/v1\/resources\/([^/]+)\/acquire$/.exec(s.path);
    if (m) {
      if (m[1] === "missing") return error(res, 404, "resource_not_found");
      const rid = String(b["request_id"]);
      const load = Number(b["load"] ?? 1);
      const ttlMs = Number(b["ttl_ms"] ?? 30_000);
      const done = this.#byRequest.get(rid);
      if (done) return grant(res, done, 0);
      if (this.held() < this.concurrency && this.#queue.length === 0) return grant(res, this.#grant(rid, load, ttlMs), 0);
      const waitMs = Number(b["wait_ms"] ?? 30_000);
      if (waitMs === 0) return error(res, 429, "would_block", 100);
      const started = Date.now();
      const w: Waiter = {
        requestId: rid,
        load,
        ttlMs,
        answer: (lease) => grant(res, lease, Date.now() - started),
        timer: setTimeout(() => {
          this.#drop(w);
          error(res, 429, "wait_timeout", 100);
        }, waitMs),
      };
      this.#queue.push(w);
      res.on("close", () => {
        if (!res.writableEnded && this.#drop(w)) this.cancelled += 1;
      });
      return;
    }
    m = /^\/v1\/leases\/([^/]+)\/(release|renew)$/.exec(s.path);
    if (m) {
      const lease = this.leases.get(decodeURIComponent(m[1]!));
      if (!lease) return error(res, 404, "lease_not_found");
      const expired = lease.expiresAt <= Date.now();
      if (m[2] === "release") {
        if (lease.released) return send(res, 200, JSON.stringify({ state: "already_released" }));
        if (expired) return error(res, 410, "lease_expired");
        lease.released = true;
        this.#pump();
        return send(res, 200, JSON.stringify({ state: "released" }));
      }
      if (lease.released || expired) return error(res, 410, "lease_expired");
      lease.expiresAt = Date.now() + Number(b["ttl_ms"] ?? lease.ttlMs);
      return send(res, 200, JSON.stringify({ lease_id: lease.id, fencing_token: lease.token, ttl_ms: lease.ttlMs }));
    }
    void req;
    error(res, 404, "not_found");
  }

  /** Ends a lease server-side (as a resource deletion does). */
  expire(leaseId: string): void {
    const l = this.leases.get(leaseId);
    if (l) l.expiresAt = 0;
    this.#pump();
  }

  #grant(rid: string, load: number, ttlMs: number): FakeLease {
    this.#token += 1;
    const lease: FakeLease = { id: `${this.#token}-fake`, token: this.#token, load, ttlMs, expiresAt: Date.now() + ttlMs, released: false };
    this.leases.set(lease.id, lease);
    this.#byRequest.set(rid, lease);
    return lease;
  }

  #drop(w: Waiter): boolean {
    const i = this.#queue.indexOf(w);
    if (i < 0) return false;
    this.#queue.splice(i, 1);
    clearTimeout(w.timer);
    return true;
  }

  #pump(): void {
    while (this.#queue.length > 0 && this.held() < this.concurrency) {
      const w = this.#queue.shift()!;
      clearTimeout(w.timer);
      w.answer(this.#grant(w.requestId, w.load, w.ttlMs));
    }
  }
}

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(body);
}

function error(res: ServerResponse, status: number, code: string, retryAfterMs?: number): void {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (retryAfterMs !== undefined) headers["retry-after"] = String(Math.ceil(retryAfterMs / 1000));
  res.writeHead(status, headers);
  res.end(JSON.stringify({ error: { code, message: `fake ${code}`, ...(retryAfterMs !== undefined ? { retry_after_ms: retryAfterMs } : {}) } }));
}

function grant(res: ServerResponse, l: FakeLease, queuedMs: number): void {
  send(res, 200, JSON.stringify({
    lease_id: l.id, resource: "r", lane: "default", load: l.load, fencing_token: l.token, ttl_ms: l.ttlMs, queued_ms: queuedMs,
    limits: [{ kind: "concurrency", limit: 1, remaining: 0 }],
  }));
}
