//! Eight Node processes, each with its own default client, share one concurrency limit
//! and one load-per-minute limit on a real 3-node cluster, and neither is exceeded.
//!
//! Checked from what the cluster granted, not from timing: the intervals in which the
//! workers held their leases (a sub-interval of the cluster's hold) never overlap more
//! than the limit; every grant's own `limits` shows nothing overdrawn; the fencing tokens
//! are unique; the cluster's grant counter matches; and the load granted in any span
//! never exceeds the bucket's capacity plus its refill over that span.

import assert from "node:assert/strict";
import { fork } from "node:child_process";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { Cluster, resourceName } from "./cluster.js";

const WORKER = join(dirname(fileURLToPath(import.meta.url)), "worker.js");
const PROCESSES = 8;
const EACH = 6;
const CONCURRENCY = 3;
const WINDOW_MS = 60_000;

interface Rec { pid: number; sent: number; start: number; end: number; token: number; load: number; limits: { kind: string; limit: number; remaining: number }[] }

let cluster: Cluster;
before(async () => {
  cluster = await Cluster.start(3);
});
after(() => cluster.close());

test("8 processes never exceed one concurrency and one load-per-minute limit", async () => {
  const name = resourceName("procs");
  // Every load the workers will ask for (they derive it from their seed, see worker.ts).
  let total = 0;
  for (let seed = 0; seed < PROCESSES; seed++) for (let k = 0; k < EACH; k++) total += 1 + ((seed * 7 + k * 3) % 12);
  // The bucket holds all but 40 of it: the last grants must wait for 40 units of refill.
  const capacity = total - 40;
  await cluster.putResource(name, { concurrency: CONCURRENCY, rate: [{ per: "load", limit: capacity, window_ms: WINDOW_MS }] });
  const key = await cluster.createKey(`js-procs-${process.pid}`, ["js-procs-*"]);

  const records: Rec[] = [];
  let holders = 0;
  const children = Array.from({ length: PROCESSES }, (_, seed) =>
    fork(WORKER, [name, String(EACH), String(seed)], {
      env: { ...process.env, RATEQUEUE_URL: cluster.urls.join(","), RATEQUEUE_API_KEY: key },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    }),
  );
  const exits = children.map((c) => new Promise<number | null>((r) => c.once("exit", (code) => r(code))));
  for (const c of children) {
    c.on("message", (m: { held?: boolean; record?: Rec }) => {
      if (m.record) records.push(m.record);
      if (m.held && ++holders === CONCURRENCY) for (const x of children) if (x.connected) x.send("full");
    });
  }
  assert.deepEqual(await Promise.all(exits), Array(PROCESSES).fill(0));

  assert.equal(records.length, PROCESSES * EACH);
  assert.equal(new Set(records.map((r) => r.pid)).size, PROCESSES);
  // Concurrency: the hold intervals never overlap more than the limit, and the gate made
  // the first holders fill every slot at once.
  const events = records.flatMap((r) => [[r.start, 1], [r.end, -1]] as [number, number][]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let most = 0;
  for (const [, d] of events) most = Math.max(most, (now += d));
  assert.ok(most <= CONCURRENCY, `${most} leases held at once`);
  assert.equal(most, CONCURRENCY);
  // The cluster's own view at each grant: nothing overdrawn.
  for (const r of records) {
    for (const l of r.limits) assert.ok(l.remaining >= 0, `grant ${r.token}: ${JSON.stringify(l)}`);
    assert.equal(r.limits.find((l) => l.kind === "concurrency")?.limit, CONCURRENCY);
  }
  assert.equal(new Set(records.map((r) => r.token)).size, records.length, "fencing tokens are unique");
  const stats = await cluster.stats(name);
  assert.equal(stats.grants_total, PROCESSES * EACH);
  assert.equal(stats.held, 0);
  // Load per window: a grant happened somewhere in [sent, start]. Every grant whose whole
  // [sent, start] lies in [sent_i, start_j] was charged in that span, so together they
  // are at most capacity + refill over the span (+1 unit of rounding).
  const perMs = capacity / WINDOW_MS;
  for (const i of records) {
    for (const j of records) {
      const lo = i.sent;
      const hi = j.start;
      if (hi <= lo) continue;
      const inside = records.filter((g) => g.sent >= lo && g.start <= hi).reduce((a, g) => a + g.load, 0);
      assert.ok(inside <= capacity + perMs * (hi - lo) + 1, `${inside} load granted within ${hi - lo} ms`);
    }
  }
  // And the limit did bind: the cluster made the last grants wait for refill.
  const first = Math.min(...records.map((r) => r.sent));
  const last = Math.max(...records.map((r) => r.start));
  assert.ok(last - first >= (total - capacity - 1) / perMs, `all ${total} load granted within ${last - first} ms`);
});
