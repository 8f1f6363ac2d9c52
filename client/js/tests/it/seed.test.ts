//! The product's promised call, verbatim, against a real 3-node cluster: it holds a slot
//! of `export-api` with the load reserved while `exportData` runs, then gives it back.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ratequeue } from "@ratequeue/sdk";

import { Cluster } from "./cluster.js";

let cluster: Cluster;
const seen: { held: number }[] = [];

before(async () => {
  cluster = await Cluster.start(3);
  await cluster.putResource("export-api", { concurrency: 2, rate: [{ per: "load", limit: 10_000_000, window_ms: 60_000 }] });
  process.env["RATEQUEUE_URL"] = cluster.urls.join(",");
  process.env["RATEQUEUE_API_KEY"] = await cluster.createKey("exporter", ["export-*"]);
});
after(() => cluster.close());

test("the seed snippet", async () => {
  const estimatedBytes = 250_000;
  const query = { table: "orders" };
  const exportData = async (q: typeof query): Promise<void> => {
    assert.equal(q.table, "orders");
    const stats = await cluster.stats("export-api");
    seen.push({ held: stats.held });
  };

  await ratequeue.acquire("export-api", { load: estimatedBytes, apiKey: process.env.RATEQUEUE_API_KEY! },
    async (lease) => { await exportData(query); });

  assert.deepEqual(seen.map((s) => s.held), [1], "the slot was held while exportData ran");
  const stats = await cluster.stats("export-api");
  assert.equal(stats.held, 0, "and released after");
  assert.equal(stats.grants_total, 1);
});
