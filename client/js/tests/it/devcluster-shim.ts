//! A stand-in for `ratequeue dev --ephemeral --json [--nodes N]` until that command
//! lands: the same stdout line and stdin commands, built from `ratequeue serve` processes.
//! `cluster.ts` names which one it runs in one line.

import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const bin = process.env["RATEQUEUE_BIN"] ?? "target/debug/ratequeue";
const count = Number(process.argv[process.argv.indexOf("--nodes") + 1] ?? 3) || 3;
const dir = mkdtempSync(join(tmpdir(), "rq-js-dev-"));
const adminToken = randomBytes(16).toString("hex");
const secret = randomBytes(16).toString("hex");

interface Node { id: number; host: string; proc: ChildProcess | undefined; paused: boolean }

function canBind(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

async function pickBlock(): Promise<string> {
  for (let i = 0; i < 64; i++) {
    const x = 200 + ((process.pid >> 8) + i) % 50;
    const y = (process.pid + i) % 256;
    const prefix = `127.${x}.${y}`;
    let free = true;
    for (let n = 1; n <= count && free; n++) free = (await canBind(`${prefix}.${n}`, 7700)) && (await canBind(`${prefix}.${n}`, 7701));
    if (free) return prefix;
  }
  throw new Error("no free loopback block");
}

const prefix = await pickBlock();
const nodes: Node[] = Array.from({ length: count }, (_, i) => ({ id: i + 1, host: `${prefix}.${i + 1}`, proc: undefined, paused: false }));
const peers = nodes.map((n) => `${n.id}=${n.host}:7701`).join(",");
const apiUrl = (n: Node): string => `http://${n.host}:7700`;

function start(n: Node): void {
  const log = createWriteStream(join(dir, `node-${n.id}.log`), { flags: "a" });
  const p = spawn(
    bin,
    ["serve", "--id", String(n.id), "--api-addr", `${n.host}:7700`, "--peer-addr", `${n.host}:7701`,
      "--advertise-api-url", apiUrl(n), "--peers", peers, "--data-dir", join(dir, `node-${n.id}`)],
    { env: { ...process.env, RATEQUEUE_ADMIN_TOKEN: adminToken, RATEQUEUE_CLUSTER_SECRET: secret, RATEQUEUE_LOG: process.env["RATEQUEUE_LOG"] ?? "warn" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  p.stdout?.pipe(log);
  p.stderr?.pipe(log);
  n.proc = p;
  n.paused = false;
  p.once("exit", () => { if (n.proc === p) n.proc = undefined; });
}

async function status(n: Node): Promise<Record<string, unknown> | undefined> {
  if (n.proc === undefined || n.paused) return undefined;
  try {
    const r = await fetch(`${apiUrl(n)}/v1/cluster/status`, { headers: { authorization: `Bearer ${adminToken}` }, signal: AbortSignal.timeout(1000) });
    return r.ok ? ((await r.json()) as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

async function waitLeader(deadlineMs = 60_000): Promise<number> {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    for (const n of nodes) {
      const s = await status(n);
      if (s?.["role"] === "leader") return n.id;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("no leader");
}

function cleanup(): void {
  for (const n of nodes) n.proc?.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}

for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
  process.once(sig, () => {
    cleanup();
    process.exit(1);
  });
}
for (const n of nodes) start(n);
const leader = await waitLeader();
const describe = (): unknown => nodes.map((n) => ({ id: n.id, api_url: apiUrl(n), peer_addr: `${n.host}:7701`, pid: n.proc?.pid ?? null, data_dir: join(dir, `node-${n.id}`) }));
process.stdout.write(JSON.stringify({ nodes: describe(), admin_token: adminToken, leader_id: leader, dir }) + "\n");

const rl = createInterface({ input: process.stdin });
const reply = (v: unknown): void => void process.stdout.write(JSON.stringify(v) + "\n");
for await (const line of rl) {
  const [cmd, arg] = line.trim().split(/\s+/);
  const n = nodes.find((x) => x.id === Number(arg));
  try {
    if (cmd === "quit") break;
    if (cmd === "status") { reply({ ok: true, nodes: nodes.map((x) => ({ id: x.id, running: x.proc !== undefined, paused: x.paused, pid: x.proc?.pid ?? null })) }); continue; }
    if (cmd === "wait-leader") { reply({ ok: true, leader_id: await waitLeader() }); continue; }
    if (n === undefined) { reply({ ok: false, error: `unknown node ${arg}` }); continue; }
    if (cmd === "kill" || cmd === "stop") {
      const p = n.proc;
      if (p) { const gone = new Promise((r) => p.once("exit", r)); p.kill(cmd === "kill" ? "SIGKILL" : "SIGTERM"); if (n.paused) p.kill("SIGCONT"); await gone; }
      reply({ ok: true });
    } else if (cmd === "start") { if (!n.proc) start(n); reply({ ok: true, pid: n.proc?.pid }); }
    else if (cmd === "pause") { n.proc?.kill("SIGSTOP"); n.paused = true; reply({ ok: true }); }
    else if (cmd === "resume") { n.proc?.kill("SIGCONT"); n.paused = false; reply({ ok: true }); }
    else reply({ ok: false, error: `unknown command ${cmd}` });
  } catch (e) {
    reply({ ok: false, error: String(e) });
  }
}
cleanup();
process.exit(0);
