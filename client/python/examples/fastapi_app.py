"""FastAPI: interactive requests jump the queue, batch requests fill the gaps.

Every request reserves its estimated LLM tokens on a shared `openai-gpt4` resource before
calling the model and settles the real usage afterwards. Interactive traffic goes to the
`user-facing` lane with a high priority; batch traffic to the `batch` lane. Give the lanes
weights on the resource (`"lanes": {"user-facing": {"weight": 3}}`) so batch still makes
progress under load.

    RATEQUEUE_URL=http://127.0.0.1:7700 RATEQUEUE_API_KEY=... uvicorn fastapi_app:app

When the queue is full or the wait times out, the endpoint answers 429 with the cluster's
Retry-After, so clients back off by the binding limit instead of guessing.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Dict, Literal, Optional, Tuple

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

import ratequeue.aio as rq

RESOURCE = os.environ.get("RATEQUEUE_RESOURCE", "openai-gpt4")

@dataclass(frozen=True)
class Tier:
    lane: str
    priority: int
    timeout: float  # seconds to wait in the queue before answering 429


TIERS: Dict[str, Tier] = {
    "interactive": Tier(lane="user-facing", priority=100, timeout=10.0),
    "batch": Tier(lane="batch", priority=10, timeout=120.0),
}


class ChatRequest(BaseModel):
    prompt: str
    max_tokens: int = 256
    tier: Literal["interactive", "batch"] = "interactive"


class ChatResponse(BaseModel):
    text: str
    tokens_reserved: int
    tokens_used: int
    lane: str
    fencing_token: int


def estimate_tokens(prompt: str, max_tokens: int) -> int:
    return len(prompt) // 4 + 1 + max_tokens


async def call_llm(prompt: str, max_tokens: int) -> Tuple[str, int]:
    """Stand-in for the provider call (see plain_asyncio.py for the OpenAI version)."""
    await asyncio.sleep(0)
    used = len(prompt) // 4 + 1 + random.randint(1, max_tokens)
    return f"echo: {prompt[:40]}", used


def create_app(client: Optional[rq.Client] = None) -> FastAPI:
    """The app. Tests pass a client; in production it is built from RATEQUEUE_URL and
    RATEQUEUE_API_KEY on first use and closed at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        own = getattr(app.state, "own_rq", None)
        if own is not None:
            await own.aclose()

    app = FastAPI(title="LLM gateway with ratequeue", lifespan=lifespan)
    app.state.rq = client

    def rq_client(request: Request) -> rq.Client:
        c: Optional[rq.Client] = request.app.state.rq
        if c is None:
            c = rq.Client()
            request.app.state.rq = c
            request.app.state.own_rq = c
        return c

    @app.post("/chat", response_model=ChatResponse)
    async def chat(body: ChatRequest, request: Request) -> ChatResponse:
        tier = TIERS[body.tier]
        estimate = estimate_tokens(body.prompt, body.max_tokens)
        try:
            async with rq_client(request).acquire(
                RESOURCE,
                load=estimate,
                lane=tier.lane,
                priority=tier.priority,
                timeout=tier.timeout,
            ) as lease:
                text, used = await call_llm(body.prompt, body.max_tokens)
                lease.set_actual_load(used)
                return ChatResponse(
                    text=text,
                    tokens_reserved=estimate,
                    tokens_used=used,
                    lane=lease.lane,
                    fencing_token=lease.fencing_token,
                )
        except rq.Rejected as e:
            retry = str(max(1, math.ceil(e.retry_after or 1)))
            raise HTTPException(429, detail=f"busy ({e.code})", headers={"Retry-After": retry}) from e
        except rq.LoadExceedsLimit as e:
            raise HTTPException(413, detail="prompt too large for the token budget") from e
        except rq.Unavailable as e:
            raise HTTPException(503, detail="rate limiter unavailable", headers={"Retry-After": "1"}) from e

    return app


app = create_app()
