//! The SDK's pure parts: error mapping, configuration, argument checks, backoff, node
//! rotation, and the call loop driven by a scripted `send` (no sockets, no real sleeps).

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Nodes, backoffMs, baseOf, runCall, type CallContext } from "../../src/call.js";
import { DEFAULT_TIMING, checkHolderLabel, holder, makeTiming, resolveApiKey, resolveTls, resolveUrls } from "../../src/config.js";
import * as E from "../../src/errors.js";
import { acquireSpec, buildAcquireArgs, parseGrant } from "../../src/protocol.js";
import { TransportFailure, type HttpRequest, type HttpResponse } from "../../src/transport.js";

const err = (status: number, code: string, retryAfterMs?: number): HttpResponse => ({
  status,
  location: undefined,
  retryAfter: undefined,
  body: JSON.stringify({ error: { code, message: code, ...(retryAfterMs !== undefined ? { retry_after_ms: retryAfterMs } : {}) } }),
});
const ok = (body: object): HttpResponse => ({ status: 200, location: undefined, retryAfter: undefined, body: JSON.stringify(body) });
const redirect = (location: string): HttpResponse => ({ status: 307, location, retryAfter: undefined, body: "" });

describe("errors", () => {
  const cases: [number, string, typeof E.RateQueueError][] = [
    [400, "invalid_request", E.InvalidRequest],
    [413, "payload_too_large", E.InvalidRequest],
    [401, "unauthorized", E.Unauthorized],
    [403, "forbidden", E.Forbidden],
    [404, "resource_not_found", E.ResourceNotFound],
    [404, "lease_not_found", E.LeaseLost],
    [410, "lease_expired", E.LeaseLost],
    [422, "load_exceeds_limit", E.LoadExceedsLimit],
    [429, "queue_full", E.QueueFull],
    [429, "wait_timeout", E.WaitTimeout],
    [429, "would_block", E.WouldBlock],
    [503, "no_leader", E.Unavailable],
    [503, "shutting_down", E.Unavailable],
    [504, "commit_timeout", E.Unavailable],
  ];
  for (const [status, code, cls] of cases) {
    test(`${status} ${code} is ${cls.name}`, () => {
      const e = E.errorFromResponse(status, err(status, code, 250).body, undefined);
      assert.ok(e instanceof cls && e instanceof E.RateQueueError && e instanceof Error);
      assert.equal(e.code, code);
      assert.equal(e.status, status);
      assert.equal(e.retryAfterMs, 250);
      assert.equal(e.name, cls.name);
    });
  }
  test("the rejections share Rejected", () => {
    for (const c of [E.QueueFull, E.WaitTimeout, E.WouldBlock]) assert.ok(new c("x") instanceof E.Rejected);
  });
  test("without a body: by status, Retry-After in seconds", () => {
    const e = E.errorFromResponse(429, "", "2");
    assert.ok(e instanceof E.Rejected);
    assert.equal(e.code, "rejected");
    assert.equal(e.retryAfterMs, 2000);
    const p = E.errorFromResponse(502, "<html>bad gateway</html>", undefined);
    assert.ok(p instanceof E.Unavailable && E.isRetryable(p));
    const u = E.errorFromResponse(418, "", undefined);
    assert.equal(u.constructor, E.RateQueueError);
    assert.equal(u.code, "http_418");
  });
  test("a code the SDK does not know is a plain error with its code and message", () => {
    // A newer server's code is not typed by its status (a 422 is not LoadExceedsLimit).
    for (const status of [400, 409, 422, 429, 500]) {
      const e = E.errorFromResponse(status, err(status, "from_a_newer_server", 250).body, undefined);
      assert.equal(e.constructor, E.RateQueueError, String(status));
      assert.equal(e.code, "from_a_newer_server");
      assert.equal(e.status, status);
      assert.equal(e.retryAfterMs, 250);
      assert.ok(!E.isRetryable(e));
    }
    // 502/503/504 are unavailable, and retried, whatever the code (as a proxy's answer).
    for (const status of [502, 503, 504]) {
      const e = E.errorFromResponse(status, err(status, "from_a_newer_server").body, undefined);
      assert.ok(e instanceof E.Unavailable && E.isRetryable(e));
      assert.equal(e.code, "from_a_newer_server");
    }
    const c = E.errorFromResponse(503, err(503, "too_many_connections").body, undefined);
    assert.ok(c instanceof E.Unavailable && E.isRetryable(c));
  });
  test("the body's retry_after_ms wins over the header", () => {
    assert.equal(E.errorFromResponse(429, err(429, "queue_full", 1234).body, "9").retryAfterMs, 1234);
    assert.equal(E.errorFromResponse(503, "", "Wed, 21 Oct 2015 07:28:00 GMT").retryAfterMs, undefined);
  });
  test("a rejection names the binding limit when the cluster does", () => {
    const body = JSON.stringify({ error: { code: "wait_timeout", message: "m", retry_after_ms: 5, limit: "load", bucket: 1 } });
    const e = E.errorFromResponse(429, body, undefined) as E.Rejected;
    assert.equal(e.limit, "load");
    assert.equal(e.bucket, 1);
    assert.match(String(e), /limit=load\[1\]$/);
    const c = E.errorFromResponse(429, JSON.stringify({ error: { code: "queue_full", message: "m", limit: "concurrency" } }), undefined) as E.Rejected;
    assert.equal(c.limit, "concurrency");
    assert.equal(c.bucket, undefined);
    assert.equal((E.errorFromResponse(403, JSON.stringify({ error: { code: "forbidden", message: "m", limit: "x" } }), undefined) as E.Rejected).limit, undefined);
  });
  test("retryable codes", () => {
    for (const code of ["no_leader", "shutting_down", "commit_timeout"]) assert.ok(E.isRetryable(new E.Unavailable("x", { code })));
    for (const code of ["queue_full", "forbidden", "unreachable"]) assert.ok(!E.isRetryable(new E.RateQueueError("x", { code })));
  });
  test("toString names code, status and retryAfterMs", () => {
    const s = String(new E.WouldBlock("no room", { status: 429, retryAfterMs: 5 }));
    assert.equal(s, "WouldBlock: would_block: no room status=429 retryAfterMs=5");
  });
});

describe("config", () => {
  test("urls from options, RATEQUEUE_URL, or the dev default", () => {
    assert.deepEqual(resolveUrls("http://a:1/, http://b:2,http://a:1"), ["http://a:1", "http://b:2"]);
    assert.deepEqual(resolveUrls(["https://x"]), ["https://x"]);
    const saved = process.env["RATEQUEUE_URL"];
    try {
      process.env["RATEQUEUE_URL"] = "http://env:7700";
      assert.deepEqual(resolveUrls(undefined), ["http://env:7700"]);
      delete process.env["RATEQUEUE_URL"];
      assert.deepEqual(resolveUrls(undefined), ["http://127.0.0.1:7700"]);
    } finally {
      if (saved === undefined) delete process.env["RATEQUEUE_URL"];
      else process.env["RATEQUEUE_URL"] = saved;
    }
    assert.throws(() => resolveUrls("ftp://x"), TypeError);
    assert.throws(() => resolveUrls(" , "), TypeError);
  });
  test("TLS files from options, else the environment; the certificate and key go together", () => {
    const names = ["RATEQUEUE_CA_FILE", "RATEQUEUE_CLIENT_CERT", "RATEQUEUE_CLIENT_KEY"];
    const saved = names.map((n) => [n, process.env[n]] as const);
    try {
      for (const n of names) delete process.env[n];
      assert.deepEqual(resolveTls(), {});
      process.env["RATEQUEUE_CA_FILE"] = "/env/ca.crt";
      process.env["RATEQUEUE_CLIENT_CERT"] = "/env/c.crt";
      process.env["RATEQUEUE_CLIENT_KEY"] = "/env/c.key";
      assert.deepEqual(resolveTls(), { caFile: "/env/ca.crt", clientCert: "/env/c.crt", clientKey: "/env/c.key" });
      assert.deepEqual(resolveTls({ caFile: "/arg/ca.crt" }), { caFile: "/arg/ca.crt", clientCert: "/env/c.crt", clientKey: "/env/c.key" });
      assert.deepEqual(resolveTls({ clientCert: "/a.crt", clientKey: "/a.key" }), { caFile: "/env/ca.crt", clientCert: "/a.crt", clientKey: "/a.key" });
      assert.throws(() => resolveTls({ clientCert: "/a.crt" }), /clientCert and clientKey/);
      // Empty values count as unset.
      process.env["RATEQUEUE_CA_FILE"] = "";
      process.env["RATEQUEUE_CLIENT_CERT"] = "";
      assert.throws(() => resolveTls(), /RATEQUEUE_CLIENT_CERT and RATEQUEUE_CLIENT_KEY/);
      process.env["RATEQUEUE_CLIENT_KEY"] = "";
      assert.deepEqual(resolveTls({ caFile: "" }), {});
    } finally {
      for (const [n, v] of saved) {
        if (v === undefined) delete process.env[n];
        else process.env[n] = v;
      }
    }
  });
  test("api key from options or RATEQUEUE_API_KEY", () => {
    const saved = process.env["RATEQUEUE_API_KEY"];
    try {
      process.env["RATEQUEUE_API_KEY"] = "from-env";
      assert.equal(resolveApiKey(undefined), "from-env");
      assert.equal(resolveApiKey("given"), "given");
      delete process.env["RATEQUEUE_API_KEY"];
      assert.equal(resolveApiKey(undefined), undefined);
    } finally {
      if (saved === undefined) delete process.env["RATEQUEUE_API_KEY"];
      else process.env["RATEQUEUE_API_KEY"] = saved;
    }
  });
  test("timing is validated", () => {
    assert.equal(makeTiming({ retryBudgetMs: 5 }).retryBudgetMs, 5);
    assert.throws(() => makeTiming({ renewFraction: 1 }), RangeError);
    assert.throws(() => makeTiming({ attemptsMax: 0 }), RangeError);
    assert.throws(() => makeTiming({ backoffMaxMs: -1 }), RangeError);
    assert.throws(() => makeTiming({ connectTimeoutMs: Number.NaN }), TypeError);
  });
  test("holder: label, host and pid within the server's 128", () => {
    assert.equal(holder(undefined, "worker-3", 4121), "worker-3:4121");
    assert.equal(holder("celery", "worker-3", 4121), "celery@worker-3:4121");
    const h = holder("l".repeat(128), "h".repeat(100), 4294967295);
    assert.equal(h.length, 128);
    assert.ok(h.endsWith(`@${"h".repeat(64)}:4294967295`), h);
    assert.equal(holder(undefined, "hôte\n", 7), "h?te?:7");
    assert.equal(holder(undefined, "", 7), "unknown-host:7");
    assert.equal(checkHolderLabel("celery worker ~1"), "celery worker ~1");
    for (const bad of ["", "tab\t", "é", "a".repeat(129), 5]) assert.throws(() => checkHolderLabel(bad), RangeError);
  });
  test("bad acquire arguments fail before any request", () => {
    const t = DEFAULT_TIMING;
    assert.throws(() => buildAcquireArgs("a/b", {}, t), TypeError);
    assert.throws(() => buildAcquireArgs("x".repeat(129), {}, t), TypeError);
    assert.throws(() => buildAcquireArgs("r", { load: -1 }, t), RangeError);
    assert.throws(() => buildAcquireArgs("r", { load: 1.5 }, t), TypeError);
    assert.throws(() => buildAcquireArgs("r", { priority: 2 ** 31 }, t), RangeError);
    assert.throws(() => buildAcquireArgs("r", { lane: "bad lane" }, t), TypeError);
    assert.throws(() => buildAcquireArgs("r", { ttlMs: 99 }, t), RangeError);
    assert.throws(() => buildAcquireArgs("r", { waitMs: 3_600_001 }, t), RangeError);
    assert.throws(() => buildAcquireArgs("r", { requestId: "" }, t), RangeError);
    assert.throws(() => buildAcquireArgs("r", { requestId: "x".repeat(129) }, t), RangeError);
    const a = buildAcquireArgs("r", {}, t);
    assert.equal(a.load, 1);
    assert.equal(a.priority, 10);
    assert.equal(a.waitMs, 30_000);
    assert.match(a.requestId, /^[0-9a-f]{32}$/);
    assert.notEqual(buildAcquireArgs("r", {}, t).requestId, a.requestId);
  });
  test("a grant is read strictly", () => {
    const g = parseGrant({ lease_id: "1-a", resource: "r", lane: "default", load: 2, fencing_token: 1, ttl_ms: 100, limits: [{ kind: "load", limit: 10, remaining: -3 }] });
    assert.deepEqual(g.limits, [{ kind: "load", limit: 10, remaining: -3 }]);
    assert.equal(g.queuedMs, 0);
    assert.throws(() => parseGrant({ lease_id: 1 }), (e: unknown) => e instanceof E.RateQueueError && e.code === "invalid_response");
  });
});

describe("backoff and nodes", () => {
  test("full jitter under the cap, never below retry_after", () => {
    const t = makeTiming({ backoffInitialMs: 50, backoffMaxMs: 2000 });
    assert.equal(backoffMs(t, 1, undefined, () => 0.999999) < 100, true);
    assert.equal(backoffMs(t, 40, undefined, () => 1), 2000);
    assert.equal(backoffMs(t, 1, undefined, () => 0), 0);
    assert.ok(backoffMs(t, 1, 500, () => 0) >= 500);
    assert.ok(backoffMs(t, 1, 500, () => 1) <= 550);
  });
  test("base URL of a redirect", () => {
    const p = "/v1/resources/x/acquire";
    assert.equal(baseOf("http://10.0.0.2:7700/v1/resources/x/acquire", p), "http://10.0.0.2:7700");
    assert.equal(baseOf("http://lb/rq/v1/resources/x/acquire", p), "http://lb/rq");
    assert.equal(baseOf("http://h:1/elsewhere", p), "http://h:1");
  });
  test("nodes prefer the leader and rotate past failures", () => {
    const n = new Nodes(["http://a", "http://b", "http://c"], () => 0);
    const none = new Set<string>();
    assert.equal(n.pick(none), "http://a");
    n.unreachable("http://a");
    assert.equal(n.pick(none), "http://b");
    n.setLeader("http://leader");
    assert.equal(n.pick(none), "http://leader");
    assert.equal(n.pick(new Set(["http://leader"])), "http://b");
    n.leaderless("http://c");
    assert.equal(n.leader, undefined);
    assert.ok(!n.hasUntried(new Set(["http://a", "http://b", "http://c"])));
  });
});

/** A call context whose `send` answers from a script and whose clock moves only by sleeps. */
function scripted(urls: string[], answers: ((r: HttpRequest) => HttpResponse | TransportFailure)[], timing = makeTiming({ backoffInitialMs: 10, backoffMaxMs: 100 })) {
  let now = 0;
  const sent: HttpRequest[] = [];
  const slept: number[] = [];
  const ctx: CallContext = {
    nodes: new Nodes(urls, () => 0),
    timing,
    headers: { authorization: "Bearer k" },
    now: () => now,
    random: () => 0.5,
    async send(r) {
      sent.push(r);
      const next = answers.shift();
      if (!next) throw new Error(`unexpected request ${r.url}`);
      const a = next(r);
      if (a instanceof TransportFailure) throw a;
      return a;
    },
    async sleep(ms) {
      slept.push(ms);
      now += ms;
    },
  };
  return { ctx, sent, slept };
}

const grantBody = { lease_id: "1-a", resource: "r", lane: "default", load: 1, fencing_token: 1, ttl_ms: 1000, limits: [] };

describe("the call loop", () => {
  const args = buildAcquireArgs("r", { waitMs: 1000, requestId: "rid-1" }, DEFAULT_TIMING);

  test("follows a 307 with the same method, body and token, and caches the leader", async () => {
    const s = scripted(["http://f"], [() => redirect("http://l:1/v1/resources/r/acquire"), () => ok(grantBody)]);
    const out = await runCall(acquireSpec(args, s.ctx.timing, 0, undefined), s.ctx);
    assert.equal(out["lease_id"], "1-a");
    assert.equal(s.sent[1]!.url, "http://l:1/v1/resources/r/acquire");
    assert.equal(s.sent[1]!.method, "POST");
    assert.equal(s.sent[1]!.body, s.sent[0]!.body);
    assert.equal(s.ctx.nodes.leader, "http://l:1");
    assert.deepEqual(s.slept, []);
  });

  test("a refused connection moves to the next node at once; retries keep the request_id", async () => {
    const refused = () => new TransportFailure("unreachable", "ECONNREFUSED");
    const s = scripted(["http://a", "http://b"], [refused, () => err(503, "no_leader", 300), () => ok(grantBody)]);
    await runCall(acquireSpec(args, s.ctx.timing, 0, undefined), s.ctx);
    assert.deepEqual(s.sent.map((r) => new URL(r.url).host), ["a", "b", "a"]);
    assert.equal(s.slept.length, 1);
    assert.ok(s.slept[0]! >= 300, "never sooner than retry_after_ms");
    const ids = s.sent.map((r) => JSON.parse(r.body!).request_id);
    assert.deepEqual(ids, ["rid-1", "rid-1", "rid-1"]);
    // The retry asks only for the wait that is left.
    const waits = s.sent.map((r) => JSON.parse(r.body!).wait_ms);
    assert.equal(waits[0], 1000);
    assert.ok(waits[2] < 1000 && waits[2] >= 0);
  });

  test("an answer cut short is retried (idempotent), then gives up at the deadline", async () => {
    const cut = () => new TransportFailure("no_answer", "ECONNRESET");
    const t = makeTiming({ backoffInitialMs: 400, backoffMaxMs: 400, retryBudgetMs: 1000 });
    const s = scripted(["http://a"], Array(50).fill(cut), t);
    await assert.rejects(runCall(acquireSpec(buildAcquireArgs("r", { waitMs: 0 }, t), t, 0, undefined), s.ctx), (e: unknown) => e instanceof E.Unavailable && e.code === "no_answer");
    assert.ok(s.sent.length >= 3 && s.sent.length < 10, `${s.sent.length} attempts`);
  });

  test("attempts are bounded", async () => {
    const t = makeTiming({ attemptsMax: 3, backoffInitialMs: 1 });
    const s = scripted(["http://a"], Array(5).fill(() => err(503, "no_leader")), t);
    await assert.rejects(runCall(acquireSpec(args, t, 0, undefined), s.ctx), E.Unavailable);
    assert.equal(s.sent.length, 3);
  });

  test("a redirect loop is retried, then reported", async () => {
    const t = makeTiming({ attemptsMax: 2, backoffInitialMs: 1, redirectsMax: 2 });
    const s = scripted(["http://a"], Array(10).fill(() => redirect("http://a/v1/resources/r/acquire")), t);
    await assert.rejects(runCall(acquireSpec(args, t, 0, undefined), s.ctx), (e: unknown) => e instanceof E.Unavailable && e.code === "redirect_loop");
    assert.equal(s.sent.length, 6);
  });

  test("answers that are not transient are thrown at once", async () => {
    for (const [status, code, cls] of [[429, "queue_full", E.QueueFull], [403, "forbidden", E.Forbidden], [404, "resource_not_found", E.ResourceNotFound]] as const) {
      const s = scripted(["http://a"], [() => err(status, code, 10)]);
      await assert.rejects(runCall(acquireSpec(args, s.ctx.timing, 0, undefined), s.ctx), cls);
      assert.equal(s.sent.length, 1);
    }
  });

  test("a would_block after the wait ran out is a wait_timeout to the caller", async () => {
    // The retry (after a 2 s retry_after) starts when the 1 s wait is used up: it is sent
    // with wait_ms 0, and its would_block becomes a wait_timeout.
    const s2 = scripted(["http://a"], [() => err(503, "no_leader", 2000), () => err(429, "would_block", 50)], makeTiming({ retryBudgetMs: 10_000 }));
    await assert.rejects(runCall(acquireSpec(args, s2.ctx.timing, 0, undefined), s2.ctx), (e: unknown) => e instanceof E.WaitTimeout && e.cause instanceof E.WouldBlock);
    assert.equal(JSON.parse(s2.sent[1]!.body!).wait_ms, 0);
    // A caller who asked for wait 0 gets the would_block itself.
    const s3 = scripted(["http://a"], [() => err(429, "would_block", 50)]);
    await assert.rejects(runCall(acquireSpec(buildAcquireArgs("r", { waitMs: 0 }, DEFAULT_TIMING), s3.ctx.timing, 0, undefined), s3.ctx), E.WouldBlock);
  });

  test("an aborted call rejects with the signal's reason", async () => {
    const ac = new AbortController();
    const reason = new Error("stop");
    const s = scripted(["http://a"], [() => { ac.abort(reason); return new TransportFailure("aborted", "aborted"); }]);
    await assert.rejects(runCall(acquireSpec(args, s.ctx.timing, 0, ac.signal), s.ctx), (e: unknown) => e === reason);
  });

  test("a bad answer body is invalid_response", async () => {
    const s = scripted(["http://a"], [() => ({ status: 200, location: undefined, retryAfter: undefined, body: "[1]" })]);
    await assert.rejects(runCall(acquireSpec(args, s.ctx.timing, 0, undefined), s.ctx), (e: unknown) => e instanceof E.RateQueueError && e.code === "invalid_response");
  });
});
