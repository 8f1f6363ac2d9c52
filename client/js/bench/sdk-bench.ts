//! Acquire+release from Node beside the Python SDK, against one fresh 3-node cluster
//! (release build, every entry fsynced): the latency of one uncontended pair (p50, p99,
//! sequential) and the pairs per second of C concurrent loops in one process. Run by
//! `bash bench/sdk.sh`; prints a Markdown table and a JSON line.

import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";

import { Client } from "../src/index.js";
import { Cluster, REPO } from "../tests/it/cluster.js";

const N = Number(process.env["PAIRS"] ?? 2000);
const C = Number(process.env["CONCURRENCY"] ?? 64);
const SECONDS = Number(process.env["SECONDS"] ?? 10);

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function jsRun(urls: string[], key: string, name: string): Promise<Record<string, number>> {
  const client = new Client({ urls, apiKey: key });
  for (let i = 0; i < 200; i++) await client.acquire(name, () => {}); // warm up
  const lat: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    const l = await client.lease(name);
    await l.release();
    lat.push(performance.now() - t0);
  }
  lat.sort((a, b) => a - b);
  let pairs = 0;
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (performance.now() < end) {
        const l = await client.lease(name);
        await l.release();
        pairs += 1;
      }
    }),
  );
  client.close();
  return { p50_ms: quantile(lat, 0.5), p99_ms: quantile(lat, 0.99), pairs_per_s: pairs / SECONDS };
}

async function pyRun(urls: string[], key: string, name: string): Promise<Record<string, number>> {
  const { stdout } = await promisify(execFile)(
    process.env["PYTHON"] ?? "python3",
    [join(REPO, "bench/sdk_python.py"), urls.join(","), key, name, String(N), String(C), String(SECONDS)],
    { env: { ...process.env, PYTHONPATH: join(REPO, "client/python/src") }, maxBuffer: 1 << 20 },
  );
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

const cluster = await Cluster.start(3);
try {
  const name = "bench-sdk";
  await cluster.putResource(name, { concurrency: 1_000_000 });
  const key = cluster.adminToken;
  const js = await jsRun(cluster.urls, key, name);
  const py = await pyRun(cluster.urls, key, name);
  const f = (x: number | undefined, d: number): string => (x === undefined ? "-" : x.toFixed(d));
  console.log(`| SDK | pair p50 (ms) | pair p99 (ms) | pairs/s, ${C} concurrent, one process |`);
  console.log("|---|---|---|---|");
  console.log(`| Node ${process.version} (@ratequeue/sdk) | ${f(js["p50_ms"], 2)} | ${f(js["p99_ms"], 2)} | ${f(js["pairs_per_s"], 0)} |`);
  console.log(`| Python (ratequeue.aio) | ${f(py["p50_ms"], 2)} | ${f(py["p99_ms"], 2)} | ${f(py["pairs_per_s"], 0)} |`);
  console.log(JSON.stringify({ pairs: N, concurrency: C, seconds: SECONDS, js, python: py }));
} finally {
  await cluster.close();
}
