"""The examples against the real cluster: the FastAPI app through httpx's ASGI transport
(priority and lane per tier), the Celery task body in several forked worker processes (as
a prefork pool runs it), and the plain asyncio fan-out; all settle real token usage."""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
from pathlib import Path
from typing import Any, Dict, List

import httpx
import pytest

import ratequeue
import ratequeue.aio as rq
from cluster import Cluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))

import celery_tasks  # noqa: E402
import fastapi_app  # noqa: E402
import plain_asyncio  # noqa: E402

TOKENS_PER_MINUTE = 200_000


@pytest.fixture
def llm_resource(env: Cluster, resource_name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    env.put_resource(
        resource_name,
        {
            "concurrency": 4,
            "rate": [{"per": "load", "limit": TOKENS_PER_MINUTE, "window_ms": 60_000}],
            "lanes": {"user-facing": {"weight": 3}},
        },
    )
    for module in (celery_tasks, fastapi_app, plain_asyncio):
        monkeypatch.setattr(module, "RESOURCE", resource_name)
    return resource_name


def load_remaining(env: Cluster, name: str) -> int:
    limits = env.resource(name)["stats"]["limits"]
    (load,) = [lim for lim in limits if lim["kind"] == "load"]
    remaining: int = load["remaining"]
    return remaining


async def test_fastapi_example_with_priority_and_lane(env: Cluster, llm_resource: str) -> None:
    async with rq.Client() as client:
        app = fastapi_app.create_app(client=client)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
            r = await http.post("/chat", json={"prompt": "hi " * 100, "max_tokens": 500})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["lane"] == "user-facing" and body["tokens_used"] <= body["tokens_reserved"]
            r = await http.post("/chat", json={"prompt": "nightly report", "tier": "batch"})
            assert r.status_code == 200 and r.json()["lane"] == "batch"

            # Fill the slots, queue batch then interactive work, then free one slot: the
            # queued requests run one at a time, and the interactive one (its lane weighs
            # 3 to batch's 1) is among the first served although it queued last.
            holders = [await client.acquire(llm_resource) for _ in range(4)]
            order: List[str] = []

            async def post(tag: str, payload: Dict[str, Any]) -> httpx.Response:
                resp = await http.post("/chat", json=payload)
                order.append(tag)
                return resp

            batch = [asyncio.create_task(post("batch", {"prompt": f"b{i}", "tier": "batch"})) for i in range(3)]
            await _wait_queued(env, llm_resource, 3)
            interactive = asyncio.create_task(post("interactive", {"prompt": "urgent"}))
            await _wait_queued(env, llm_resource, 4)
            await holders[0].release()
            results = await asyncio.wait_for(asyncio.gather(interactive, *batch), 60)
            assert all(r.status_code == 200 for r in results)
            assert order.index("interactive") <= 1, order
            for h in holders[1:]:
                await h.release()
    # Everything settled: only what was really used is charged, not the reservations.
    assert env.resource(llm_resource)["stats"]["held"] == 0


async def _wait_queued(env: Cluster, name: str, n: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while sum(env.resource(name)["stats"]["queued"].values()) < n:
        assert loop.time() < deadline
        await asyncio.sleep(0.02)


def _celery_worker(docs: List[str], out: "multiprocessing.Queue[Dict[str, Any]]") -> None:
    for d in docs:
        out.put(celery_tasks.summarize_body(d))


def test_celery_task_body_in_worker_processes(env: Cluster, llm_resource: str) -> None:
    # The parent uses the default client first, as a Celery master that imported the
    # tasks module might; the forked workers must then build their own connections.
    with ratequeue.acquire(llm_resource):
        pass
    before = load_remaining(env, llm_resource)
    ctx = multiprocessing.get_context("fork")
    out: "multiprocessing.Queue[Dict[str, Any]]" = ctx.Queue()
    docs = [f"document {i} " * (50 + i) for i in range(24)]
    procs = [ctx.Process(target=_celery_worker, args=(docs[i::4], out)) for i in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in docs]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert len({r["pid"] for r in results}) == 4
    assert all(r["used"] <= r["reserved"] for r in results)
    assert len({r["fencing_token"] for r in results}) == len(results)
    # Settled: the bucket was charged what was used, not what was reserved (allowing
    # for refill during the test, which only makes `remaining` larger).
    used = sum(r["used"] for r in results)
    reserved = sum(r["reserved"] for r in results)
    after = load_remaining(env, llm_resource)
    assert after >= before - used
    assert after > before - reserved


async def test_plain_asyncio_example(env: Cluster, llm_resource: str) -> None:
    results = await plain_asyncio.main(n=16)
    assert len(results) == 16
    assert env.resource(llm_resource)["stats"]["held"] == 0
