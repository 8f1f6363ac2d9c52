// The dashboard's server load without the browser, for bench/dashboard.sh: creates
// RESOURCES resources (once), then runs TABS simulated tabs against a follower, each
// making exactly the calls an open page makes (node/server/ui/app.js): the view's one
// aggregated call, then 1 s after its answer the next one (`REFRESH_MS`), and
// `/v1/dashboard/session` every 30 s (`SESSION_MS`); same headers (`x-ratequeue-forward:
// 1`, the bearer token). Even tabs show the resources list sorted by grants/s (the
// first page of 50), odd tabs the benched resource's view: bench/open.mjs's split
// (POLL_VIEW=list or resource: all tabs on one). No
// rendering, no charts. Prints "open" once every tab has had an answer, `calls N` on
// SIGUSR1, and on SIGTERM one JSON line: calls made, failed, and their latency.
//
//   node dashboard/bench/poll.mjs <page base URL> <leader URL> <token> <resource> [tabs] [resources]
import { api } from "../support/cluster.mjs";

const REFRESH_MS = 1000;
const SESSION_MS = 30_000;
const LIST = "/v1/dashboard/resources?" +
  new URLSearchParams({ filter: "", sort: "rate", desc: "true", offset: "0", limit: "50" });

const [base, leader, token, resource, tabsArg = "2", resourcesArg = "10000"] = process.argv.slice(2);
const tabs = Number(tabsArg);
// POLL_VIEW=list or resource: every tab on that view (to price each call on its own).
const VIEW = process.env.POLL_VIEW || "mixed";
const N = Number(resourcesArg);

let i = 0;
await Promise.all(Array.from({ length: 32 }, async () => {
  while (i < N) {
    const name = `dash-${String(i++).padStart(5, "0")}`;
    const r = await api(leader, "PUT", `/v1/resources/${name}`, { token, body: { concurrency: 1 + (i % 7) } });
    if (r.status !== 200 && r.status !== 201) throw new Error(`${name}: ${r.status}`);
  }
}));

const headers = { "x-ratequeue-forward": "1", authorization: `Bearer ${token}` };
const stats = { calls: 0, failed: 0, latency_ms: [] };
let stopping = false;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function get(path) {
  const t0 = performance.now();
  try {
    const r = await fetch(base + path, { headers, cache: "no-store", redirect: "error" });
    await r.text();
    if (!r.ok) stats.failed += 1;
    return r.ok;
  } catch {
    stats.failed += 1;
    return false;
  } finally {
    stats.calls += 1;
    // Bounded: at 1 call/s per tab a run of hours stays small; past the bound, no samples.
    if (stats.latency_ms.length < 1_000_000) stats.latency_ms.push(performance.now() - t0);
  }
}

let answered = 0;
async function tab(t) {
  const one = `/v1/dashboard/resources/${encodeURIComponent(resource)}`;
  const view = VIEW === "list" ? LIST : VIEW === "resource" ? one : t % 2 === 0 ? LIST : one;
  await get("/v1/dashboard/session");
  let sessionAt = Date.now();
  let first = true;
  while (!stopping) {
    if (Date.now() - sessionAt > SESSION_MS) {
      await get("/v1/dashboard/session");
      sessionAt = Date.now();
    }
    const ok = await get(view);
    if (first && ok) {
      first = false;
      answered += 1;
      if (answered === tabs) console.log("open");
    }
    await sleep(REFRESH_MS);
  }
}

// SIGUSR1: print the calls made so far (bench/dashboard.sh reads it at both ends of a
// measured window).
process.on("SIGUSR1", () => console.log(`calls ${stats.calls}`));
const running = Array.from({ length: tabs }, (_, t) => tab(t));
if (tabs === 0) console.log("open");
await new Promise((r) => process.once("SIGTERM", r));
stopping = true;
await Promise.all(running);
const l = stats.latency_ms.sort((a, b) => a - b);
const q = (p) => (l.length ? Number(l[Math.min(l.length - 1, Math.floor(p * l.length))].toFixed(2)) : null);
console.log(JSON.stringify({ calls: stats.calls, failed: stats.failed, p50_ms: q(0.5), p99_ms: q(0.99) }));
