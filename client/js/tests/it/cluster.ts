//! The integration tests' cluster: a real ratequeue cluster of separate `ratequeue serve`
//! processes, started by the test through `ratequeue dev --ephemeral --json` (docs/testkit.md:
//! one JSON line on stdout, line commands on stdin, everything removed on stdin EOF or the
//! test's death), and admin helpers over plain `fetch` (over `node:https` with the kit's CA
//! and client certificate for a TLS cluster, `Cluster.start(n, { tls: true })`).
//!
//! The binary is $RATEQUEUE_BIN, else <repo>/target/debug/ratequeue.

import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import * as https from "node:https";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { after, before } from "node:test";
import { fileURLToPath } from "node:url";

import * as rq from "../../src/index.js";

const HERE = dirname(fileURLToPath(import.meta.url)); // client/js/build/tests/it
export const REPO = resolve(HERE, "../../../../..");
export const BIN = process.env["RATEQUEUE_BIN"] ?? join(REPO, "target/debug/ratequeue");
export const DEADLINE_MS = 60_000;

/** The command that starts a cluster and speaks the contract (docs/testkit.md). */
function clusterCommand(nodes: number, tls: boolean): [string, string[]] {
  return [BIN, ["dev", "--ephemeral", "--json", "--nodes", String(nodes), ...(tls ? ["--tls", "--tls-client-auth"] : [])]];
}

/** The files of a TLS cluster (`ratequeue dev --tls`): its CA, and a client certificate
 *  the nodes accept (they require one: `--tls-client-auth`). */
export interface TlsInfo {
  ca_file: string;
  client_cert: string;
  client_key: string;
}

interface Answer {
  status: number;
  location: string | null;
  text: string;
}

interface RequestInit {
  method: string;
  headers: Record<string, string>;
  body?: string;
  timeoutMs: number;
}

/** One request: `fetch` for plain HTTP; for a TLS cluster `node:https` with its CA and
 *  client certificate (fetch cannot be given a CA without undici's own Agent). */
function requester(tls: TlsInfo | undefined): (url: string, init: RequestInit) => Promise<Answer> {
  if (tls === undefined) {
    return async (url, init) => {
      const r = await fetch(url, {
        method: init.method,
        redirect: "manual",
        headers: init.headers,
        ...(init.body === undefined ? {} : { body: init.body }),
        signal: AbortSignal.timeout(init.timeoutMs),
      });
      return { status: r.status, location: r.headers.get("location"), text: await r.text() };
    };
  }
  const agent = new https.Agent({
    ca: readFileSync(tls.ca_file),
    cert: readFileSync(tls.client_cert),
    key: readFileSync(tls.client_key),
  });
  return (url, init) =>
    new Promise((resolve, reject) => {
      const r = https.request(url, { method: init.method, headers: init.headers, agent, timeout: init.timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const location = res.headers["location"];
          resolve({ status: res.statusCode ?? 0, location: location ?? null, text: Buffer.concat(chunks).toString("utf8") });
        });
      });
      r.on("timeout", () => r.destroy(new Error(`no answer from ${url} in ${init.timeoutMs} ms`)));
      r.on("error", reject);
      r.end(init.body);
    });
}

export interface NodeInfo {
  id: number;
  api_url: string;
  peer_addr: string;
  pid: number;
  data_dir: string;
}

interface Started {
  nodes: NodeInfo[];
  admin_token: string;
  leader_id: number;
  dir: string;
  tls?: TlsInfo;
}

/** Polls `check` until it returns a value other than undefined/false, or throws after
 *  `deadlineMs` naming `what`. The poll interval is short; correctness never depends on it. */
export async function until<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, deadlineMs = DEADLINE_MS): Promise<T> {
  const end = performance.now() + deadlineMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (performance.now() > end) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A test file's shared set-up: before its tests, starts an `nodes`-node cluster and an
 *  admin client whose warnings are appended to `warnings`, and hands both to `use`;
 *  after them, closes the client and the cluster. */
export function clusterWithClient(warnings: string[], use: (cluster: Cluster, client: rq.Client) => void, nodes = 3): void {
  let cluster: Cluster | undefined;
  let client: rq.Client | undefined;
  before(async () => {
    cluster = await Cluster.start(nodes);
    client = new rq.Client({ urls: cluster.urls, apiKey: cluster.adminToken, logger: { warn: (m) => void warnings.push(m) } });
    use(cluster, client);
  });
  after(async () => {
    client?.close();
    await cluster?.close();
  });
}

export class Cluster {
  readonly nodes: NodeInfo[];
  readonly adminToken: string;
  /** The CA and client certificate files of a TLS cluster. */
  readonly tls: TlsInfo | undefined;
  readonly #request: (url: string, init: RequestInit) => Promise<Answer>;
  #proc: ChildProcessWithoutNullStreams;
  #lines: AsyncIterator<string>;
  #exited: Promise<void>;

  private constructor(proc: ChildProcessWithoutNullStreams, lines: AsyncIterator<string>, info: Started) {
    this.#proc = proc;
    this.#lines = lines;
    this.nodes = info.nodes;
    this.adminToken = info.admin_token;
    this.tls = info.tls;
    this.#request = requester(info.tls);
    this.#exited = new Promise((r) => proc.once("exit", () => r()));
  }

  /** `tls`: the nodes speak only TLS and require client certificates (the kit makes
   *  them; `tls` names the files). */
  static async start(nodes = 3, options: { tls?: boolean } = {}): Promise<Cluster> {
    if (!existsSync(BIN)) throw new Error(`ratequeue binary not found at ${BIN}: cargo build -p ratequeue-node, or set RATEQUEUE_BIN`);
    const [cmd, args] = clusterCommand(nodes, options.tls === true);
    const proc = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], cwd: REPO });
    let stderr = "";
    proc.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
    const first = await lines.next();
    if (first.done) throw new Error(`the test cluster did not start:\n${stderr}`);
    const info = JSON.parse(first.value) as Started & { ok?: boolean; error?: string };
    if (info.ok === false) throw new Error(`the test cluster did not start: ${info.error}\n${stderr}`);
    return new Cluster(proc, lines, info);
  }

  get urls(): string[] {
    return this.nodes.map((n) => n.api_url);
  }

  url(id: number): string {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id}`);
    return n.api_url;
  }

  /** Sends one contract command (`kill 2`, `wait-leader`, ...) and returns its answer. */
  async command(line: string): Promise<Record<string, unknown>> {
    this.#proc.stdin.write(line + "\n");
    const next = await this.#lines.next();
    if (next.done) throw new Error(`the test cluster exited during ${JSON.stringify(line)}`);
    const reply = JSON.parse(next.value) as Record<string, unknown>;
    if (reply["ok"] !== true) throw new Error(`${line}: ${String(reply["error"])}`);
    return reply;
  }

  async leaderId(): Promise<number> {
    return (await this.command("wait-leader"))["leader_id"] as number;
  }

  async close(): Promise<void> {
    this.#proc.stdin.end();
    await this.#exited;
  }

  /** An admin request answered by the leader: follows 307s, waits out 503s and dead nodes. */
  async admin(method: string, path: string, body?: unknown, token = this.adminToken): Promise<{ status: number; json: any }> {
    return until(`${method} ${path}`, async () => {
      for (const base of this.urls) {
        let url = base + path;
        try {
          for (let hop = 0; hop < 5; hop++) {
            const r = await this.#request(url, {
              method,
              headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
              ...(body === undefined ? {} : { body: JSON.stringify(body) }),
              timeoutMs: 10_000,
            });
            if (r.status === 307 || r.status === 308) {
              url = new URL(r.location!, url).toString();
              continue;
            }
            if (r.status === 503) break;
            return { status: r.status, json: r.text ? JSON.parse(r.text) : undefined };
          }
        } catch {
          // a dead or paused node: ask the next
        }
      }
      return undefined;
    });
  }

  async putResource(name: string, spec: Record<string, unknown>): Promise<void> {
    const r = await this.admin("PUT", `/v1/resources/${name}`, spec);
    if (r.status !== 200 && r.status !== 201) throw new Error(`PUT ${name}: ${r.status} ${JSON.stringify(r.json)}`);
  }

  async deleteResource(name: string): Promise<void> {
    const r = await this.admin("DELETE", `/v1/resources/${name}`);
    if (r.status !== 204) throw new Error(`DELETE ${name}: ${r.status}`);
  }

  /** `stats` of a resource, from the leader. */
  async stats(name: string): Promise<{ held: number; queued: Record<string, number>; grants_total: number }> {
    const r = await this.admin("GET", `/v1/resources/${name}`);
    if (r.status !== 200) throw new Error(`GET ${name}: ${r.status}`);
    return r.json.stats;
  }

  async queued(name: string): Promise<number> {
    const q = (await this.stats(name)).queued;
    return Object.values(q).reduce((a, b) => a + b, 0);
  }

  async waitQueued(name: string, n: number): Promise<void> {
    await until(`${n} waiters on ${name}`, async () => (await this.queued(name)) === n);
  }

  async createKey(name: string, resources: string[], role = "client"): Promise<string> {
    const r = await this.admin("POST", "/v1/keys", { name, role, resources });
    if (r.status !== 201 && r.status !== 200) throw new Error(`POST /v1/keys: ${r.status}`);
    const key = r.json.key as string;
    // A follower authenticates a request before redirecting it, against its own applied
    // state, which may lag the leader's answer for a moment: wait until every node knows
    // the key, so a test's first request cannot see a spurious 401.
    for (const base of this.urls) {
      await until(`the key on ${base}`, async () => {
        try {
          // Any answer but 401 means this node knows the key (a client key may not read
          // the status: 403).
          const s = await this.#request(`${base}/v1/cluster/status`, { method: "GET", headers: { authorization: `Bearer ${key}` }, timeoutMs: 5000 });
          return s.status !== 401;
        } catch {
          return false;
        }
      });
    }
    return key;
  }
}

let counter = 0;
/** A fresh resource name per test. */
export function resourceName(tag: string): string {
  counter += 1;
  return `js-${tag}-${process.pid}-${counter}`;
}
