"""Plain asyncio: many concurrent LLM calls sharing one token budget through ratequeue.

Each call reserves its *estimated* tokens (prompt + the most it may generate) before it
starts, and settles the *actual* usage at release, so the cluster credits back what was not
used. Run against a cluster (`ratequeue dev` prints the URL and an admin token):

    RATEQUEUE_URL=http://127.0.0.1:7700 RATEQUEUE_API_KEY=... python plain_asyncio.py

The resource needs a `per: load` bucket, e.g. PUT /v1/resources/openai-gpt4
{"concurrency": 8, "rate": [{"per": "load", "limit": 90000, "window_ms": 60000}]}.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass
from typing import List, Optional, Tuple

import ratequeue.aio as rq

RESOURCE = os.environ.get("RATEQUEUE_RESOURCE", "openai-gpt4")


def estimate_tokens(prompt: str, max_output_tokens: int) -> int:
    """An upper bound of what the call can cost: ~4 characters per prompt token plus the
    most the model may generate. Over-reserving is safe: the difference is settled."""
    return len(prompt) // 4 + 1 + max_output_tokens


@dataclass
class Completion:
    text: str
    total_tokens: int
    fencing_token: int


async def call_llm(prompt: str, max_output_tokens: int) -> Tuple[str, int]:
    """Stand-in for the provider call. With the OpenAI SDK this would be:

        resp = await openai_client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": prompt}],
            max_tokens=max_output_tokens)
        return resp.choices[0].message.content, resp.usage.total_tokens
    """
    await asyncio.sleep(0.01)
    generated = random.randint(1, max_output_tokens)
    return f"answer to {prompt[:20]!r}", len(prompt) // 4 + 1 + generated


async def complete(
    prompt: str,
    *,
    max_output_tokens: int = 256,
    lane: str = "batch",
    priority: int = 10,
    client: Optional[rq.Client] = None,
) -> Completion:
    estimate = estimate_tokens(prompt, max_output_tokens)
    async with rq.acquire(RESOURCE, load=estimate, lane=lane, priority=priority, timeout=60, client=client) as lease:
        text, used = await call_llm(prompt, max_output_tokens)
        lease.set_actual_load(used)  # settle: credit back estimate - used
        return Completion(text, used, lease.fencing_token)


async def main(n: int = 20, client: Optional[rq.Client] = None) -> List[Completion]:
    prompts = [f"Summarise document {i}: " + "lorem ipsum " * random.randint(10, 200) for i in range(n)]
    results = await asyncio.gather(*(complete(p, client=client) for p in prompts))
    for r in results[:3]:
        print(f"{r.total_tokens:5d} tokens, fencing token {r.fencing_token}: {r.text}")
    print(f"{len(results)} completions, {sum(r.total_tokens for r in results)} tokens in total")
    return list(results)


if __name__ == "__main__":
    asyncio.run(main())
