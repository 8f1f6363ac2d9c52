//! A worker process of the cross-process test (started with `fork`): acquires `count`
//! times through the module-level `acquire` (RATEQUEUE_URL / RATEQUEUE_API_KEY from the
//! parent), and reports each lease to the parent over IPC.
//!
//! Times are `process.hrtime`, which
//! is CLOCK_MONOTONIC on Linux, one clock for every process on the machine.

import { acquire } from "../../src/index.js";

const [resource, countText, seedText] = process.argv.slice(2);
const count = Number(countText);
const seed = Number(seedText);
const ms = (): number => Number(process.hrtime.bigint()) / 1e6;

/** Resolves when the parent says every slot was held at once (the first holders wait). */
let full = false;
const fullWaiters: (() => void)[] = [];
process.on("message", (m: unknown) => {
  if (m === "full") {
    full = true;
    for (const w of fullWaiters.splice(0)) w();
  }
});

for (let k = 0; k < count; k++) {
  const load = 1 + ((seed * 7 + k * 3) % 12);
  const sent = ms();
  const record = await acquire(resource!, { load, waitMs: 120_000 }, async (lease) => {
    const start = ms();
    if (!full) {
      process.send!({ held: true });
      await new Promise<void>((r) => (full ? r() : fullWaiters.push(r)));
    }
    await new Promise((r) => setTimeout(r, 3)); // the work done under the lease
    return { pid: process.pid, sent, start, end: ms(), token: lease.fencingToken, load: lease.load, limits: lease.limits };
  });
  process.send!({ record });
}
process.disconnect();
