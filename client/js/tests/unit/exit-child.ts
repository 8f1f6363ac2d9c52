//! A child process for the exit tests: uses the SDK in one way given by argv[2], then
//! falls off the end of the script. It must then exit on its own: nothing the SDK leaves
//! behind (idle sockets, renewal timers) may keep Node alive.

import { Client, acquire, lease } from "../../src/index.js";

const mode = process.argv[2];
if (mode === "acquire") {
  // The seed call through the default client (RATEQUEUE_URL from the parent).
  await acquire("r", { load: 2 }, async () => {});
} else if (mode === "using") {
  await using l = await lease("r", { ttlMs: 150 });
  // Hold across a few renewals.
  while (l.renewals < 2) await new Promise((r) => setTimeout(r, 20));
} else if (mode === "many") {
  const c = new Client();
  for (let i = 0; i < 20; i++) await c.acquire("r", () => {});
} else if (mode === "aborted") {
  const holder = await lease("r");
  const ac = new AbortController();
  const waiting = lease("r", { signal: ac.signal });
  setTimeout(() => ac.abort(), 50);
  await waiting.catch(() => {});
  await holder.release();
} else {
  throw new Error(`unknown mode ${mode}`);
}
process.stdout.write("done\n");
