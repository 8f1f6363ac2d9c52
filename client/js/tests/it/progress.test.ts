//! Waiter progress and provider reports against a real 3-node cluster: `onProgress`
//! while an acquire waits (position, lane, binding limit; the waiters behind move up;
//! no call after the acquire resolved, rejected or was aborted), `waiterProgress`, and
//! `lease.report` (a provider's remaining figure lowers the budget, a 429 pauses grants).

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import * as rq from "../../src/index.js";
import { Cluster, clusterWithClient, resourceName, until } from "./cluster.js";

let cluster: Cluster;
let client: rq.Client;
const warnings: string[] = [];

clusterWithClient(warnings, (c, k) => {
  cluster = c;
  client = k;
});

/** Resolves after `ms` (only to show that nothing more happens meanwhile). */
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("progress", () => {
  test("onProgress reports where a waiter stands and stops when the wait ends", async () => {
    const name = resourceName("progress");
    await cluster.putResource(name, { concurrency: 1 });
    const holder = await client.lease(name);
    const first: rq.Progress[] = [];
    const second: rq.Progress[] = [];
    const aborted: rq.Progress[] = [];
    const wait = (seen: rq.Progress[], requestId: string, signal?: AbortSignal): Promise<rq.Lease> =>
      client.lease(name, {
        lane: "batch",
        waitMs: 60_000,
        requestId,
        onProgress: (p) => void seen.push(p),
        progressIntervalMs: 100,
        ...(signal !== undefined ? { signal } : {}),
      });
    const w1 = wait(first, "js-progress-1");
    await until("the first waiter's progress", () => first.length > 0);
    const w2 = wait(second, "js-progress-2");
    await until("the second waiter's progress", () => second.length > 0);
    const ac = new AbortController();
    const w3 = wait(aborted, "js-progress-3", ac.signal);
    await until("the third waiter's progress", () => aborted.length > 0);

    const p = second.at(-1)!;
    assert.deepEqual(
      [p.lane, p.position, p.aheadInResource, p.queuedInResource, p.bindingLimit, p.positionExact],
      ["batch", 2, 1, 3, "concurrency", true],
    );
    assert.equal(p.requestId, "js-progress-2");
    assert.ok(p.estimatedWaitMs >= 1);
    assert.equal(first.at(-1)!.position, 1);
    assert.equal((await client.waiterProgress(name, "js-progress-2"))?.position, 2);
    assert.equal(await client.waiterProgress(name, "never-sent"), undefined);

    // Aborted: no more calls.
    ac.abort(new Error("gave up"));
    await assert.rejects(w3, /gave up/);
    const nAborted = aborted.length;

    // Granted: the first resolves and its callback stops; the second moves up.
    await holder.release();
    const lease1 = await w1;
    const nFirst = first.length;
    await until("the second waiter to move up", () => second.at(-1)!.position === 1);
    await pause(500); // five intervals: a watch still running would have called by now
    assert.equal(first.length, nFirst);
    assert.equal(aborted.length, nAborted);
    await lease1.release();
    await (await w2).release();
  });

  test("a wait that times out stops its progress; a bad interval is refused", async () => {
    const name = resourceName("progress-timeout");
    await cluster.putResource(name, { concurrency: 1 });
    const holder = await client.lease(name);
    const seen: rq.Progress[] = [];
    await assert.rejects(
      client.lease(name, { waitMs: 1_500, onProgress: (p) => void seen.push(p), progressIntervalMs: 100 }),
      rq.WaitTimeout,
    );
    assert.ok(seen.length > 0, "progress while it waited");
    assert.deepEqual([seen[0]!.position, seen[0]!.bindingLimit], [1, "concurrency"]);
    const n = seen.length;
    await pause(500);
    assert.equal(seen.length, n);
    await assert.rejects(client.lease(name, { onProgress: () => {}, progressIntervalMs: 5 }), RangeError);
    await holder.release();
  });

  test("lease.report lowers the budget to the provider's figure and a 429 pauses grants", async () => {
    const name = resourceName("report");
    await cluster.putResource(name, {
      rate: [{ per: "request", limit: 100, window_ms: 3_600_000 }],
      feedback: {},
    });
    const lease = await client.lease(name);
    const reported = await lease.report({ remainingRequests: 3 });
    assert.equal(reported.pausedMs, 0);
    assert.deepEqual(reported.limits, [{ kind: "request", limit: 100, remaining: 3 }]);
    const paused = await lease.report({ rateLimited: true, retryAfterMs: 30_000 });
    assert.ok(paused.pausedMs > 25_000, `paused ${paused.pausedMs} ms`);
    await lease.release();
    await assert.rejects(client.lease(name, { waitMs: 0 }), rq.WouldBlock);
    // A report on an ended lease: the lease is lost.
    await assert.rejects(lease.report({ remainingRequests: 1 }), rq.LeaseLost);
  });
});
