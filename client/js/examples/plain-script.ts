//! A plain script: a fan-out of concurrent "LLM completions" sharing one token budget
//! with every other process that uses the same resource. Each call reserves its worst
//! case (prompt + the most the model may generate), then settles with the real usage.
//!
//!     RATEQUEUE_URL=http://127.0.0.1:7700 RATEQUEUE_API_KEY=... node build/examples/plain-script.js
//!
//! The resource, created once by an admin (rqctl or PUT /v1/resources/openai-gpt4):
//!     {"concurrency": 8, "rate": [{"per": "load", "limit": 90000, "window_ms": 60000}]}

import { ratequeue, Rejected } from "@ratequeue/sdk";

const RESOURCE = process.env["RESOURCE"] ?? "openai-gpt4";
const MAX_OUTPUT_TOKENS = 512;

/** Stands in for the provider's client: returns text and the tokens really used. */
async function complete(prompt: string): Promise<{ text: string; totalTokens: number }> {
  await new Promise((r) => setTimeout(r, 20));
  return { text: prompt.toUpperCase(), totalTokens: Math.ceil(prompt.length / 4) + 40 };
}

const estimate = (prompt: string): number => Math.ceil(prompt.length / 4) + MAX_OUTPUT_TOKENS;

export async function summarizeAll(prompts: string[]): Promise<string[]> {
  return Promise.all(
    prompts.map((prompt) =>
      ratequeue.acquire(RESOURCE, { load: estimate(prompt), lane: "batch", waitMs: 120_000 }, async (lease) => {
        const resp = await complete(prompt);
        lease.setActualLoad(resp.totalTokens); // unused tokens go back to the budget
        return resp.text;
      }),
    ),
  );
}

/** The same with explicit resource management: released at the end of the block. */
export async function summarizeOne(prompt: string): Promise<string> {
  await using lease = await ratequeue.lease(RESOURCE, { load: estimate(prompt), lane: "batch" });
  const resp = await complete(prompt);
  lease.setActualLoad(resp.totalTokens);
  return resp.text;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const prompts = Array.from({ length: 20 }, (_, i) => `document ${i}: ${"lorem ipsum ".repeat(20 + i)}`);
  try {
    const out = await summarizeAll(prompts);
    console.log(`${out.length} summaries, then one more: ${(await summarizeOne("a last one")).slice(0, 20)}`);
  } catch (e) {
    if (e instanceof Rejected) console.error(`no slot: ${e.code}, retry in ${e.retryAfterMs} ms`);
    throw e;
  }
}
