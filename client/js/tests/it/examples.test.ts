//! The examples run against a real 3-node cluster: the plain script's fan-out and
//! `await using`, and the Fastify service (200 with a slot, 429 with the cluster's
//! Retry-After when none comes in time).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Client } from "@ratequeue/sdk";

import { Cluster, resourceName } from "./cluster.js";

let cluster: Cluster;
const name = resourceName("examples");

before(async () => {
  cluster = await Cluster.start(3);
  await cluster.putResource(name, { concurrency: 4, rate: [{ per: "load", limit: 200_000, window_ms: 60_000 }] });
  process.env["RATEQUEUE_URL"] = cluster.urls.join(",");
  process.env["RATEQUEUE_API_KEY"] = await cluster.createKey(`js-examples-${process.pid}`, ["js-examples-*"]);
  process.env["RESOURCE"] = name;
});
after(() => cluster.close());

test("the plain script: a fan-out sharing one budget, then await using", async () => {
  const { summarizeAll, summarizeOne } = await import("../../examples/plain-script.js");
  const out = await summarizeAll(["one", "two", "three", "four", "five", "six"]);
  assert.deepEqual(out, ["ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX"]);
  assert.equal(await summarizeOne("last"), "LAST");
  const stats = await cluster.stats(name);
  assert.equal(stats.grants_total, 7);
  assert.equal(stats.held, 0);
});

test("the Fastify service: 200 with a slot, 429 with Retry-After without one", async () => {
  const { buildApp } = await import("../../examples/fastify-app.js");
  const client = new Client();
  const app = buildApp({ client, resource: name, waitMs: 300 });
  const ok = await app.inject({ method: "POST", url: "/summarize", payload: { text: "a long document" } });
  assert.equal(ok.statusCode, 200, ok.body);
  assert.equal(ok.json().summary, "a long document");
  // Every slot taken by batch work: the interactive request gets no slot within 300 ms.
  const holders = await Promise.all([0, 1, 2, 3].map(() => client.lease(name, { lane: "batch" })));
  const busy = await app.inject({ method: "POST", url: "/summarize", payload: { text: "x" } });
  assert.equal(busy.statusCode, 429, busy.body);
  assert.equal(busy.json().error, "wait_timeout");
  assert.ok(Number(busy.headers["retry-after"]) >= 1);
  for (const h of holders) await h.release();
  await app.close();
  client.close();
});
