//! The client over real sockets against the fake cluster: acquire scopes, `await using`,
//! settle, renewals, the lost signal, abort while waiting, redirects, retries with the
//! same request_id, default-client reuse.

import assert from "node:assert/strict";
import { hostname } from "node:os";
import { after, before, beforeEach, describe, test } from "node:test";

import { Client, LeaseLost, ResourceNotFound, WouldBlock, acquire, defaultClient, lease } from "../../src/index.js";
import type { Logger } from "../../src/index.js";
import { FakeCluster } from "./fakecluster.js";

const until = async (what: string, check: () => boolean, deadlineMs = 20_000): Promise<void> => {
  const end = performance.now() + deadlineMs;
  while (!check()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

const quiet = (): Logger & { warnings: string[] } => {
  const warnings: string[] = [];
  return { warnings, warn: (m) => void warnings.push(m) };
};

describe("client against a fake cluster", () => {
  let fake: FakeCluster;
  let client: Client;
  let log: ReturnType<typeof quiet>;

  before(async () => {
    fake = await FakeCluster.start(3);
  });
  after(async () => {
    client?.close();
    await fake.close();
  });
  beforeEach(() => {
    fake.clearFaults();
    fake.concurrency = 1;
    fake.leader = 0;
    fake.seen.length = 0;
    for (const l of fake.leases.values()) l.released = true; // what an earlier test left
    client?.close();
    log = quiet();
    client = new Client({ urls: fake.urls, apiKey: "k1", logger: log, timing: { backoffInitialMs: 5, backoffMaxMs: 50 } });
  });

  test("acquire(fn) holds the slot while fn runs and returns fn's value", async () => {
    const out = await client.acquire("r", { load: 7, priority: 100, lane: "user-facing", ttlMs: 5000 }, async (l) => {
      assert.equal(fake.held(), 1);
      assert.equal(l.load, 7);
      return "done";
    });
    assert.equal(out, "done");
    assert.equal(fake.held(), 0);
    const body = fake.seenPath(/acquire$/).at(-1)!.body!;
    assert.deepEqual(
      { ...body, request_id: "x" },
      { load: 7, priority: 100, lane: "user-facing", ttl_ms: 5000, wait_ms: 30_000, request_id: "x", holder: `${hostname()}:${process.pid}` },
    );
    const h = fake.seen.at(-1)!.headers;
    assert.equal(h["authorization"], "Bearer k1");
    assert.match(String(h["user-agent"]), /^ratequeue-js\//);
  });

  test("every acquire sends its holder: the label (acquire's, client's, RATEQUEUE_HOLDER), host and pid", async () => {
    const place = `${hostname()}:${process.pid}`;
    const saved = process.env["RATEQUEUE_HOLDER"];
    try {
      process.env["RATEQUEUE_HOLDER"] = " celery ";
      const env = new Client({ urls: fake.urls, apiKey: "k1", logger: log });
      assert.equal(env.holder, "celery");
      await env.acquire("r", () => {});
      await env.acquire("r", { holder: "job 42" }, () => {});
      env.close();
      const given = new Client({ urls: fake.urls, apiKey: "k1", logger: log, holder: "nightly-export" });
      await given.acquire("r", () => {});
      given.close();
      delete process.env["RATEQUEUE_HOLDER"];
      const none = new Client({ urls: fake.urls, apiKey: "k1", logger: log });
      await none.acquire("r", () => {});
      none.close();
      // Each new client asks a follower first (redirected): count what the leader got.
      const sent = fake.seenPath(/acquire$/).filter((s) => s.node === fake.leader).slice(-4).map((s) => s.body!["holder"]);
      assert.deepEqual(sent, [`celery@${place}`, `job 42@${place}`, `nightly-export@${place}`, place]);
      // Labels the server would refuse fail before any request.
      const n = fake.seen.length;
      for (const bad of ["", "tab\t", "é", "a".repeat(129)]) {
        assert.throws(() => new Client({ urls: fake.urls, holder: bad }), RangeError);
        await assert.rejects(client.lease("r", { holder: bad }), RangeError);
      }
      process.env["RATEQUEUE_HOLDER"] = "é";
      assert.throws(() => new Client({ urls: fake.urls }), /RATEQUEUE_HOLDER/);
      assert.equal(fake.seen.length, n);
    } finally {
      if (saved === undefined) delete process.env["RATEQUEUE_HOLDER"];
      else process.env["RATEQUEUE_HOLDER"] = saved;
    }
  });

  test("released when fn throws; fn's error propagates", async () => {
    const boom = new Error("boom");
    await assert.rejects(client.acquire("r", {}, () => { throw boom; }), (e) => e === boom);
    await assert.rejects(client.acquire("r", async () => { await Promise.resolve(); throw boom; }), (e) => e === boom);
    assert.equal(fake.held(), 0);
    assert.equal(fake.seenPath(/release$/).length, 2);
  });

  test("await using releases at the end of the scope; release() is idempotent", async () => {
    {
      await using l = await client.lease("r");
      assert.equal(fake.held(), 1);
      assert.ok(!l.released);
    }
    assert.equal(fake.held(), 0);
    const l = await client.lease("r");
    assert.equal(await l.release(), "released");
    assert.equal(await l.release(), "already_released");
    assert.equal(fake.seenPath(/release$/).length, 2, "the second release asks nobody");
  });

  test("setActualLoad is sent with the release", async () => {
    await client.acquire("r", { load: 100 }, (l) => l.setActualLoad(40));
    assert.deepEqual(fake.seenPath(/release$/).at(-1)!.body, { actual_load: 40 });
    const l = await client.lease("r");
    assert.throws(() => l.setActualLoad(-1), RangeError);
    await l.release();
    assert.deepEqual(fake.seenPath(/release$/).at(-1)!.body, {});
  });

  test("a follower's 307 is followed and the leader cached", async () => {
    fake.leader = 2;
    const c = new Client({ urls: [fake.urls[0]!], apiKey: "k1" });
    await c.acquire("r", () => {});
    assert.equal(c.leader, fake.urls[2]);
    const seen = fake.seenPath(/acquire$/).slice(-2);
    assert.deepEqual(seen.map((s) => s.node), [0, 2]);
    assert.equal(seen[1]!.headers["authorization"], "Bearer k1", "the token is resent to the leader");
    c.close();
  });

  test("a reset after sending is retried with the same request_id: one lease", async () => {
    fake.inject((s) => s.path.endsWith("/acquire"), { reset: true });
    fake.inject((s) => s.path.endsWith("/acquire"), { status: 503, code: "no_leader", retryAfterMs: 10 });
    const l = await client.lease("r", { requestId: "same-id" });
    const ids = fake.seenPath(/acquire$/).slice(-3).map((s) => s.body!["request_id"]);
    assert.deepEqual(ids, ["same-id", "same-id", "same-id"]);
    assert.equal(fake.held(), 1);
    await l.release();
  });

  test("the lease renews itself in the background", async () => {
    const l = await client.lease("r", { ttlMs: 150 });
    await until("three renewals", () => l.renewals >= 3);
    assert.ok(l.renewing && !l.lost);
    assert.equal(await l.release(), "released");
    assert.ok(!l.renewing);
  });

  test("a renewal answered lease_expired marks the lease lost and aborts its signal", async () => {
    const l = await client.lease("r", { ttlMs: 150 });
    let reason: unknown;
    l.signal.addEventListener("abort", () => (reason = l.signal.reason));
    fake.expire(l.id);
    await until("the loss", () => l.lost);
    assert.ok(reason instanceof LeaseLost && reason.leaseId === l.id && reason.code === "lease_expired");
    assert.throws(() => l.check(), LeaseLost);
    assert.equal(log.warnings.length, 1);
    await assert.rejects(l.release(), LeaseLost);
  });

  test("leaving acquire(fn) after a loss throws LeaseLost, unless fn threw", async () => {
    await assert.rejects(
      client.acquire("r", { ttlMs: 150 }, async (l) => {
        fake.expire(l.id);
        await until("the loss", () => l.lost);
      }),
      (e) => e instanceof LeaseLost && e.code === "lease_expired",
    );
    const mine = new Error("mine");
    await assert.rejects(
      client.acquire("r", { ttlMs: 150 }, async (l) => {
        fake.expire(l.id);
        await until("the loss", () => l.lost);
        throw mine;
      }),
      (e) => e === mine,
    );
  });

  test("renewals failing for a whole TTL: presumed lost (renewal_failed)", async () => {
    const l = await client.lease("r", { ttlMs: 300 });
    fake.inject((s) => s.path.endsWith("/renew"), { status: 503, code: "no_leader", retryAfterMs: 1 }, 10_000);
    await until("the loss", () => l.lost);
    assert.equal(l.lostError!.code, "renewal_failed");
    fake.clearFaults();
    await assert.rejects(l.release(), LeaseLost);
  });

  test("a renewal refused with another 4xx marks the lease lost at once", async () => {
    const l2 = await client.lease("r", { ttlMs: 150 });
    fake.inject((s) => s.path.endsWith("/renew"), { status: 403, code: "forbidden" });
    await until("the loss", () => l2.lost);
    assert.equal(l2.lostError!.code, "renewal_failed");
    assert.equal((l2.lostError!.cause as { code: string }).code, "forbidden");
  });

  test("abort while waiting closes the request: the cluster drops the waiter", async () => {
    const holder = await client.lease("r");
    const ac = new AbortController();
    const waiting = client.lease("r", { signal: ac.signal, waitMs: 60_000 });
    await until("the waiter", () => fake.queued() === 1);
    const cancelled = fake.cancelled;
    ac.abort();
    await assert.rejects(waiting, (e: unknown) => e instanceof Error && e.name === "AbortError");
    await until("the server to drop the waiter", () => fake.queued() === 0 && fake.cancelled === cancelled + 1);
    await holder.release();
    assert.equal(fake.held(), 0, "no lease was granted to the aborted waiter");
    // Already aborted: no request at all.
    const before = fake.seen.length;
    await assert.rejects(client.lease("r", { signal: AbortSignal.abort() }), (e: unknown) => (e as Error).name === "AbortError");
    assert.equal(fake.seen.length, before);
  });

  test("errors are typed", async () => {
    await assert.rejects(client.lease("missing"), (e) => e instanceof ResourceNotFound && e.status === 404);
    const holder = await client.lease("r");
    await assert.rejects(client.lease("r", { waitMs: 0 }), (e) => e instanceof WouldBlock && e.retryAfterMs === 100);
    await holder.release();
    await assert.rejects(client.release("9-unknown"), (e) => e instanceof LeaseLost && e.code === "lease_not_found" && e.leaseId === "9-unknown");
  });

  test("the module-level functions share one default client per (urls, key)", async () => {
    const a = defaultClient({ url: fake.urls.join(","), apiKey: "k2" });
    const b = defaultClient({ url: fake.urls, apiKey: "k2" });
    assert.equal(a, b);
    assert.notEqual(a, defaultClient({ url: fake.urls, apiKey: "other" }));
    const out = await acquire("r", { url: fake.urls, apiKey: "k2", load: 3 }, (l) => l.load);
    assert.equal(out, 3);
    const l = await lease("r", { url: fake.urls, apiKey: "k2" });
    assert.equal(fake.seen.at(-1)!.headers["authorization"], "Bearer k2");
    await l.release();
  });
});
