//! Redirects and failover on a real 3-node cluster: a client given only a follower finds
//! the leader; leases held while the leader is killed keep renewing through the new
//! leader and release normally; acquires waiting on the dead leader retry with the same
//! request_id and each gets exactly one lease; a loop of acquires across a leader kill
//! never double-grants; with quorum lost, renewals fail and the lease is presumed lost,
//! and a new acquire reports `Unavailable`.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import * as rq from "../../src/index.js";
import { Cluster, DEADLINE_MS, resourceName, until } from "./cluster.js";

let cluster: Cluster;
const quiet = { warn: () => {} };
// The retry budget, not the attempt count, must bound a call across an election: with one
// node dead every second attempt is an instant move past it, so the default 50 attempts at
// a 500 ms backoff cap last only ~6-12 s, which a slow election on a busy machine outlasts.
// Releases likewise: the release budget is the deadline too.
const failoverTiming = { retryBudgetMs: DEADLINE_MS, releaseBudgetMs: DEADLINE_MS, backoffMaxMs: 500, attemptsMax: 10_000 };
// The held leases' TTL must outlast the election, however slow: a client that cannot
// confirm its lease for a whole TTL presumes it lost (6 s was less than the election CI saw).
const HELD_TTL_MS = 20_000;

before(async () => {
  cluster = await Cluster.start(3);
});

/** Kills the nodes, runs `fn`, and starts them again whatever happened. */
async function whileKilled<T>(ids: number[], fn: () => Promise<T>): Promise<T> {
  try {
    for (const id of ids) await cluster.command(`kill ${id}`);
    return await fn();
  } finally {
    for (const id of ids) await cluster.command(`start ${id}`);
    await cluster.leaderId();
  }
}
after(() => cluster.close());

test("a client given only a follower is redirected and caches the leader", async () => {
  const name = resourceName("redirect");
  await cluster.putResource(name, { concurrency: 5 });
  const leader = await cluster.leaderId();
  const follower = cluster.nodes.find((n) => n.id !== leader)!;
  const c = new rq.Client({ urls: follower.api_url, apiKey: cluster.adminToken });
  await c.acquire(name, { load: 2 }, (l) => assert.equal(l.load, 2));
  assert.equal(c.leader, cluster.url(leader));
  c.close();
});

test("the leader is killed while leases are held and acquires wait", async () => {
  const name = resourceName("kill");
  await cluster.putResource(name, { concurrency: 3 });
  const c = new rq.Client({ urls: cluster.urls, apiKey: cluster.adminToken, timing: failoverTiming, logger: quiet });
  const held = await Promise.all([0, 1, 2].map(() => c.lease(name, { ttlMs: HELD_TTL_MS })));
  const waiting = [0, 1].map((i) => c.lease(name, { requestId: `js-wait-${process.pid}-${i}`, waitMs: DEADLINE_MS }));
  await cluster.waitQueued(name, 2);

  const victim = await cluster.leaderId();
  const renewalsAtKill = held.map((l) => l.renewals);
  await whileKilled([victim], async () => {
    const next = await cluster.leaderId();
    assert.notEqual(next, victim);

    // The held leases keep renewing through the new leader (their TTL outlasts the election:
    // a client that cannot confirm its lease for a whole TTL must presume it lost).
    await until("renewals through the new leader", () => {
      assert.ok(held.every((l) => !l.lost), `a lease was lost: ${held.map((l) => l.lostError?.message).join("; ")}`);
      return held.every((l, i) => l.renewals >= renewalsAtKill[i]! + 2);
  });
  assert.ok(held.every((l) => !l.lost), "no lease was lost");
  assert.equal((await cluster.stats(name)).held, 3, "the new leader counts them");

  // Releasing two lets the two retried waiters in, each with one lease.
  assert.equal(await held[0]!.release(), "released");
  assert.equal(await held[1]!.release(), "released");
  const got = await Promise.all(waiting);
  assert.deepEqual(got.map((l) => l.requestId).sort(), [`js-wait-${process.pid}-0`, `js-wait-${process.pid}-1`]);
  const tokens = [...held, ...got].map((l) => l.fencingToken);
  assert.equal(new Set(tokens).size, 5, "fencing tokens are unique");
  for (const l of [held[2]!, ...got]) assert.equal(await l.release(), "released");
  const stats = await cluster.stats(name);
  assert.equal(stats.grants_total, 5, "each request_id was granted once");
  assert.equal(stats.held, 0);
  });
  c.close();
});

test("acquires across a leader kill: one lease per request_id", async () => {
  const name = resourceName("loop");
  await cluster.putResource(name, { concurrency: 4 });
  const c = new rq.Client({ urls: cluster.urls, apiKey: cluster.adminToken, timing: failoverTiming, logger: quiet });
  const granted = new Map<string, { id: string; token: number }>();
  let killed = false;
  const worker = async (w: number): Promise<void> => {
    let afterKill = 0;
    for (let i = 0; afterKill < 5; i++) {
      const requestId = `js-loop-${process.pid}-${w}-${i}`;
      const wasKilled = killed;
      try {
        await c.acquire(name, { requestId, waitMs: DEADLINE_MS }, (l) => {
          assert.ok(!granted.has(requestId));
          granted.set(requestId, { id: l.id, token: l.fencingToken });
        });
      } catch (e) {
        if (!(e instanceof rq.LeaseLost)) throw e; // a lease may lapse while no leader exists
      }
      if (wasKilled) afterKill += 1;
    }
  };
  const workers = [0, 1, 2, 3, 4, 5].map(worker);
  await until("traffic", () => granted.size >= 30);
  const victim = await cluster.leaderId();
  await whileKilled([victim], async () => {
    killed = true;
    await Promise.all(workers);
  });
  const ids = [...granted.values()].map((g) => g.id);
  assert.equal(new Set(ids).size, ids.length, "a lease was handed to two request_ids");
  assert.equal(new Set([...granted.values()].map((g) => g.token)).size, ids.length);
  assert.equal((await cluster.stats(name)).grants_total, granted.size, "retries never granted twice");
  c.close();
});

test("quorum lost: renewals fail, the lease is presumed lost, acquires are Unavailable", async () => {
  const name = resourceName("quorum");
  await cluster.putResource(name, { concurrency: 1 });
  const c = new rq.Client({ urls: cluster.urls, apiKey: cluster.adminToken, timing: { retryBudgetMs: 1000, backoffMaxMs: 200 }, logger: quiet });
  const l = await c.lease(name, { ttlMs: 1000 });
  const leader = await cluster.leaderId();
  const other = cluster.nodes.find((n) => n.id !== leader)!.id;
  await whileKilled([leader, other], async () => {
    await until("the presumed loss", () => l.lost);
    assert.equal(l.lostError!.code, "renewal_failed");
    assert.ok(l.signal.aborted);
    await assert.rejects(
      c.lease(name, { waitMs: 0 }),
      (e) => e instanceof rq.Unavailable && ["no_leader", "unreachable", "no_answer"].includes(e.code),
    );
  });
  // Cluster time stood still while there was no leader: the lease may still be live;
  // either way the release gives a definite answer.
  await assert.rejects(l.release(), rq.LeaseLost);
  c.close();
});
