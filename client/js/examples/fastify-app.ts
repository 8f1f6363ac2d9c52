//! A Fastify service whose interactive requests share the LLM budget with batch work:
//! requests wait in a high-priority `user-facing` lane; a client that disconnects stops
//! waiting (its acquire is aborted, so the cluster drops the waiter); when no slot comes in
//! time the service answers 429 with the cluster's Retry-After.
//!
//!     RATEQUEUE_URL=... RATEQUEUE_API_KEY=... node build/examples/fastify-app.js
//!     curl -X POST localhost:3000/summarize -H 'content-type: application/json' -d '{"text":"..."}'

import Fastify, { type FastifyInstance } from "fastify";
import { Client, Rejected, Unavailable } from "@ratequeue/sdk";

export interface AppOptions {
  /** One client for the whole process (defaults from RATEQUEUE_URL / RATEQUEUE_API_KEY). */
  client?: Client;
  resource?: string;
  /** How long an interactive request may wait for a slot. */
  waitMs?: number;
}

async function complete(text: string): Promise<{ summary: string; totalTokens: number }> {
  await new Promise((r) => setTimeout(r, 5));
  return { summary: text.slice(0, 40), totalTokens: Math.ceil(text.length / 4) + 30 };
}

export function buildApp(options: AppOptions = {}): FastifyInstance {
  const client = options.client ?? new Client();
  const resource = options.resource ?? "openai-gpt4";
  const app = Fastify();

  app.post<{ Body: { text: string } }>("/summarize", async (request, reply) => {
    const text = String(request.body?.text ?? "");
    // Stop waiting for a slot if the HTTP client goes away.
    const gone = new AbortController();
    request.raw.once("close", () => {
      if (!reply.sent) gone.abort();
    });
    try {
      return await client.acquire(
        resource,
        { load: Math.ceil(text.length / 4) + 256, priority: 100, lane: "user-facing", waitMs: options.waitMs ?? 10_000, signal: gone.signal },
        async (lease) => {
          const out = await complete(text);
          lease.setActualLoad(out.totalTokens);
          return { summary: out.summary, fencingToken: lease.fencingToken };
        },
      );
    } catch (e) {
      if (e instanceof Rejected) {
        const seconds = Math.max(1, Math.ceil((e.retryAfterMs ?? 1000) / 1000));
        return reply.code(429).header("retry-after", String(seconds)).send({ error: e.code, retryAfterMs: e.retryAfterMs });
      }
      if (e instanceof Unavailable) return reply.code(503).header("retry-after", "1").send({ error: e.code });
      throw e;
    }
  });
  return app;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const app = buildApp();
  await app.listen({ port: Number(process.env["PORT"] ?? 3000), host: "127.0.0.1" });
}
