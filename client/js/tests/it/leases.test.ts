//! Leases against a real 3-node cluster: release on throw, `await using`, settle,
//! renewal past the TTL, the lost signal, priority and lane order under contention (read
//! from the fencing tokens, i.e. the cluster's grant order), abort while waiting (the
//! server drops the waiter), every documented error mapped to its class, and the holder
//! label in the dashboard's lease list.

import assert from "node:assert/strict";
import { hostname } from "node:os";
import { before, describe, test } from "node:test";

import { Nodes, runCall, sleep } from "../../src/call.js";
import { createConnector } from "../../src/transport.js";
import * as rq from "../../src/index.js";
import { Cluster, clusterWithClient, resourceName, until } from "./cluster.js";

let cluster: Cluster;
let client: rq.Client;
const warnings: string[] = [];

clusterWithClient(warnings, (c, k) => {
  cluster = c;
  client = k;
});

describe("leases", () => {
  test("release on throw; the error propagates", async () => {
    const name = resourceName("throw");
    await cluster.putResource(name, { concurrency: 1 });
    const boom = new Error("boom");
    await assert.rejects(
      client.acquire(name, async () => {
        assert.equal((await cluster.stats(name)).held, 1);
        throw boom;
      }),
      (e) => e === boom,
    );
    assert.equal((await cluster.stats(name)).held, 0);
    // The slot is free again at once.
    await client.acquire(name, { waitMs: 0 }, () => {});
  });

  test("await using and manual release; fencing tokens increase", async () => {
    const name = resourceName("using");
    await cluster.putResource(name, { concurrency: 2 });
    let first: number;
    {
      await using a = await client.lease(name, { load: 3, lane: "user-facing", ttlMs: 10_000 });
      assert.equal(a.resource, name);
      assert.equal(a.lane, "user-facing");
      assert.equal(a.load, 3);
      assert.equal(a.ttlMs, 10_000);
      assert.deepEqual(a.limits, [{ kind: "concurrency", limit: 2, remaining: 1 }]);
      first = a.fencingToken;
      assert.equal((await cluster.stats(name)).held, 1);
    }
    assert.equal((await cluster.stats(name)).held, 0);
    const b = await client.lease(name);
    assert.ok(b.fencingToken > first);
    assert.equal(await b.release(), "released");
    assert.equal(await b.release(), "already_released");
    assert.equal(await client.release(b.id), "already_released", "the cluster agrees");
  });

  test("dry-run: granted at once, with what enforce would have done", async () => {
    const name = resourceName("dry");
    await cluster.putResource(name, { concurrency: 1, mode: "dry_run" });
    const first = await client.lease(name);
    assert.deepEqual(first.shadow, { decision: "grant", waitMs: 0, limit: undefined });
    const second = await client.lease(name, { waitMs: 0 });
    assert.equal(second.shadow?.decision, "would_block");
    assert.equal(second.shadow?.limit, "concurrency");
    assert.ok(second.shadow.waitMs > 0);
    await second.release();
    await first.release();
    await cluster.putResource(name, { concurrency: 1 });
    const enforced = await client.lease(name);
    assert.equal(enforced.shadow, undefined);
    await assert.rejects(client.lease(name, { waitMs: 0 }), rq.WouldBlock);
    await enforced.release();
  });

  test("reserve, then settle", async () => {
    const name = resourceName("settle");
    await cluster.putResource(name, { rate: [{ per: "load", limit: 1000, window_ms: 3_600_000 }] });
    await client.acquire(name, { load: 800 }, (l) => l.setActualLoad(100));
    // 1000 - 800 + 700 credited back = 900 left: another 800 fits at once.
    await client.acquire(name, { load: 800, waitMs: 0 }, () => {});
    await assert.rejects(client.lease(name, { load: 800, waitMs: 0 }), (e) => e instanceof rq.WouldBlock && e.retryAfterMs! > 1000);
    // An excess is debited: the bucket goes negative.
    await client.acquire(name, { load: 100, waitMs: 0 }, (l) => l.setActualLoad(1000));
    await assert.rejects(client.lease(name, { load: 1, waitMs: 0 }), rq.WouldBlock);
  });

  test("the lease renews itself past its TTL", async () => {
    const name = resourceName("renew");
    await cluster.putResource(name, { concurrency: 1 });
    const l = await client.lease(name, { ttlMs: 300 });
    await until("five renewals", () => l.renewals >= 5);
    assert.ok(!l.lost && l.renewing);
    await assert.rejects(client.lease(name, { waitMs: 0 }), rq.WouldBlock, "still held, by the cluster's count");
    assert.equal(await l.release(), "released");
  });

  test("a lease the cluster ended is reported lost: signal, check(), acquire rejects", async () => {
    const name = resourceName("lost");
    await cluster.putResource(name, { concurrency: 1 });
    let reason: unknown;
    const before = warnings.length;
    await assert.rejects(
      client.acquire(name, { ttlMs: 300 }, async (l) => {
        l.signal.addEventListener("abort", () => (reason = l.signal.reason));
        await cluster.deleteResource(name); // its leases end
        await until("the loss", () => l.lost);
        assert.throws(() => l.check(), rq.LeaseLost);
      }),
      (e) => e instanceof rq.LeaseLost && e.code === "lease_expired" && e.status === 410,
    );
    assert.ok(reason instanceof rq.LeaseLost);
    assert.equal(warnings.length, before + 1, "the loss was logged");
  });

  test("priority is served first within a lane", async () => {
    const name = resourceName("prio");
    await cluster.putResource(name, { concurrency: 1 });
    const holder = await client.lease(name);
    const tokens: Record<string, number> = {};
    const wait = (tag: string, priority: number): Promise<void> =>
      client.acquire(name, { priority, waitMs: 60_000 }, (l) => void (tokens[tag] = l.fencingToken));
    const all: Promise<void>[] = [];
    for (const [i, [tag, p]] of ([["low", 1], ["mid", 10], ["high", 100], ["mid2", 10]] as const).entries()) {
      all.push(wait(tag, p));
      await cluster.waitQueued(name, i + 1);
    }
    await holder.release();
    await Promise.all(all);
    const order = Object.entries(tokens).sort((a, b) => a[1] - b[1]).map(([t]) => t);
    assert.deepEqual(order, ["high", "mid", "mid2", "low"]);
  });

  test("lanes share capacity by weight under contention", async () => {
    const name = resourceName("lanes");
    await cluster.putResource(name, { concurrency: 1, lanes: { "user-facing": { weight: 3 } } });
    const holder = await client.lease(name);
    const grants: [number, string][] = [];
    const one = (lane: string): Promise<void> => client.acquire(name, { lane, waitMs: 60_000 }, (l) => void grants.push([l.fencingToken, lane]));
    const all: Promise<void>[] = [];
    for (let i = 0; i < 4; i++) all.push(one("batch"));
    await cluster.waitQueued(name, 4);
    for (let i = 0; i < 8; i++) all.push(one("user-facing"));
    await cluster.waitQueued(name, 12);
    await holder.release();
    await Promise.all(all);
    const order = grants.sort((a, b) => a[0] - b[0]).map(([, lane]) => lane);
    // Both lanes backlogged: 3 user-facing to 1 batch (stride scheduling), although batch
    // queued first; batch is not starved.
    const firstEight = order.slice(0, 8);
    assert.equal(firstEight.filter((l) => l === "user-facing").length, 6, order.join(","));
    assert.equal(firstEight.filter((l) => l === "batch").length, 2, order.join(","));
  });

  test("abort while waiting: the cluster drops the waiter and grants nothing to it", async () => {
    const name = resourceName("abort");
    await cluster.putResource(name, { concurrency: 1 });
    const holder = await client.lease(name);
    const ac = new AbortController();
    const waiting = client.lease(name, { signal: ac.signal, waitMs: 60_000 });
    await cluster.waitQueued(name, 1);
    ac.abort();
    await assert.rejects(waiting, (e: unknown) => (e as Error).name === "AbortError");
    await cluster.waitQueued(name, 0);
    await holder.release();
    const stats = await cluster.stats(name);
    assert.equal(stats.held, 0);
    assert.equal(stats.grants_total, 1, "only the holder was ever granted");
    await client.acquire(name, { waitMs: 0 }, () => {});
  });
});

describe("errors", () => {
  let name: string;
  let key: string;
  before(async () => {
    name = resourceName("err");
    await cluster.putResource(name, { concurrency: 1, max_queue: 1, rate: [{ per: "load", limit: 1000, window_ms: 1000 }] });
    await cluster.putResource(`${name}-other`, { concurrency: 1 });
    key = await cluster.createKey(`js-err-${process.pid}`, [name]);
  });

  const is = (cls: new (...a: never[]) => rq.RateQueueError, code: string, status: number) => (e: unknown) => {
    assert.ok(e instanceof cls, `${String(e)} is not a ${cls.name}`);
    assert.equal(e.code, code);
    assert.equal(e.status, status);
    return true;
  };

  test("load_exceeds_limit, resource_not_found, forbidden, unauthorized", async () => {
    const c = new rq.Client({ urls: cluster.urls, apiKey: key });
    await assert.rejects(c.lease(name, { load: 2000 }), is(rq.LoadExceedsLimit, "load_exceeds_limit", 422));
    await assert.rejects(client.lease("js-does-not-exist"), is(rq.ResourceNotFound, "resource_not_found", 404));
    await assert.rejects(c.lease(`${name}-other`), is(rq.Forbidden, "forbidden", 403));
    const bad = new rq.Client({ urls: cluster.urls, apiKey: "not-a-key" });
    await assert.rejects(bad.lease(name), is(rq.Unauthorized, "unauthorized", 401));
    c.close();
    bad.close();
  });

  test("would_block, wait_timeout, queue_full carry retryAfterMs", async () => {
    const holder = await client.lease(name);
    const wb = await client.lease(name, { waitMs: 0 }).catch((e: unknown) => e);
    const wt = await client.lease(name, { waitMs: 300 }).catch((e: unknown) => e);
    const queued = client.lease(name, { waitMs: 60_000 });
    await cluster.waitQueued(name, 1);
    const qf = await client.lease(name, { waitMs: 5000 }).catch((e: unknown) => e);
    await holder.release();
    await (await queued).release();
    is(rq.WouldBlock, "would_block", 429)(wb);
    is(rq.WaitTimeout, "wait_timeout", 429)(wt);
    is(rq.QueueFull, "queue_full", 429)(qf);
    for (const e of [wb, wt, qf] as rq.Rejected[]) {
      assert.ok(e instanceof rq.Rejected);
      assert.ok(e.retryAfterMs !== undefined && e.retryAfterMs > 0, String(e));
    }
    assert.equal((wb as rq.Rejected).limit, "concurrency", "the cluster names the binding limit");
    assert.equal((wb as rq.Rejected).bucket, undefined);
  });

  test("a rejection by a load bucket names it", async () => {
    await client.acquire(name, { load: 1000, waitMs: 0 }, () => {}); // empties the bucket
    const e = await client.lease(name, { load: 900, waitMs: 0 }).catch((x: unknown) => x);
    assert.ok(e instanceof rq.WouldBlock, String(e));
    assert.equal(e.limit, "load");
    assert.equal(e.bucket, 0);
    assert.ok(e.retryAfterMs! > 0);
  });

  test("lease_not_found, lease_expired", async () => {
    await assert.rejects(client.release("1-0000000000000000"), (e) => is(rq.LeaseLost, "lease_not_found", 404)(e) && (e as rq.LeaseLost).leaseId === "1-0000000000000000");
    const tmp = resourceName("gone");
    await cluster.putResource(tmp, { concurrency: 1 });
    const l = await client.lease(tmp);
    await cluster.deleteResource(tmp);
    await assert.rejects(client.renew(l.id), is(rq.LeaseLost, "lease_expired", 410));
    await assert.rejects(l.release(), is(rq.LeaseLost, "lease_expired", 410));
    assert.ok(l.lost);
  });

  test("the holder label reaches the dashboard's lease list", async () => {
    const name = resourceName("holder");
    await cluster.putResource(name, { concurrency: 2 });
    const labelled = new rq.Client({ urls: cluster.urls, apiKey: cluster.adminToken, holder: "js-it" });
    try {
      await using _a = await labelled.lease(name);
      await using _b = await labelled.lease(name, { holder: "job 7" });
      const r = await cluster.admin("GET", `/v1/dashboard/resources/${name}`);
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const holders = r.json.leases.shown.map((l: { holder: string }) => l.holder).sort();
      const place = `${hostname()}:${process.pid}`;
      assert.deepEqual(holders, [`job 7@${place}`, `js-it@${place}`]);
    } finally {
      labelled.close();
    }
  });

  test("invalid_request and payload_too_large from the server (bodies the SDK never builds)", async () => {
    await assert.rejects(raw({ priority: 1.5 }), is(rq.InvalidRequest, "invalid_request", 400));
    await assert.rejects(raw({ load: 1, nonsense: true }), is(rq.InvalidRequest, "invalid_request", 400));
    await assert.rejects(raw({ request_id: "x".repeat(70_000) }), is(rq.InvalidRequest, "payload_too_large", 413));
  });
});

/** An acquire with a body the public API refuses to build, sent through the SDK's own
 *  call loop and connector, so the server's answer is mapped as any other. */
async function raw(body: Record<string, unknown>): Promise<unknown> {
  const connector = createConnector(rq.DEFAULT_TIMING);
  try {
    return await runCall(
      { method: "POST", path: `/v1/resources/${resourceName("raw")}/acquire`, body: () => body, readTimeoutMs: () => 10_000, deadlineMs: performance.now() + 10_000 },
      {
        nodes: new Nodes(cluster.urls, Math.random),
        timing: rq.DEFAULT_TIMING,
        headers: { authorization: `Bearer ${cluster.adminToken}` },
        now: () => performance.now(),
        random: Math.random,
        send: (r) => connector.send(r),
        sleep,
      },
    );
  } finally {
    connector.close();
  }
}
