"""The examples run against the fake cluster: token reservation up front, settlement with
the real usage, priority and lane per tier, 429 with Retry-After when the queue is full.
(tests/integration runs them against a real cluster and in several processes.)"""

from __future__ import annotations

import os
import sys
from typing import Iterator, Optional

import httpx
import pytest

import ratequeue
from ratequeue.testing import Response
import ratequeue.aio as rq
from fakecluster import FAST, URLS, FakeCluster, Seen, error

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
sys.path.insert(0, EXAMPLES)

import celery_tasks  # noqa: E402
import fastapi_app  # noqa: E402
import plain_asyncio  # noqa: E402


@pytest.fixture
def gpt4(cluster: FakeCluster) -> FakeCluster:
    cluster.resources["openai-gpt4"] = cluster.resources.pop("gpt")
    return cluster


async def test_plain_asyncio_reserves_then_settles(gpt4: FakeCluster) -> None:
    c = rq.Client(URLS, "k3y", timing=FAST, transport=gpt4.async_transport())
    results = await plain_asyncio.main(n=12, client=c)
    await c.aclose()
    assert len(results) == 12
    assert len(gpt4.leases) == 12
    for lease in gpt4.leases.values():
        assert lease.released
        assert lease.actual_load is not None and 0 < lease.actual_load <= lease.load
        assert lease.lane == "batch"


async def test_fastapi_example_uses_lane_and_priority_per_tier(gpt4: FakeCluster) -> None:
    c = rq.Client(URLS, "k3y", timing=FAST, transport=gpt4.async_transport())
    app = fastapi_app.create_app(client=c)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
        r = await http.post("/chat", json={"prompt": "hello " * 40, "max_tokens": 64})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["lane"] == "user-facing" and body["tokens_used"] <= body["tokens_reserved"]
        r = await http.post("/chat", json={"prompt": "batch job", "tier": "batch"})
        assert r.status_code == 200 and r.json()["lane"] == "batch"

        acquires = [a for a in gpt4.of_kind("acquire") if a.node == gpt4.leader]
        assert [(a.body["lane"], a.body["priority"]) for a in acquires] == [("user-facing", 100), ("batch", 10)]
        assert acquires[0].body["load"] == len("hello " * 40) // 4 + 1 + 64
        assert all(lease.released and lease.actual_load for lease in gpt4.leases.values())

        gpt4.hooks.append(lambda seen: error(429, "queue_full", "full", retry_after_ms=1500))
        r = await http.post("/chat", json={"prompt": "x"})
        assert r.status_code == 429 and r.headers["retry-after"] == "2"
    await c.aclose()


@pytest.fixture
def default_on_fake(monkeypatch: pytest.MonkeyPatch, gpt4: FakeCluster) -> Iterator[FakeCluster]:
    monkeypatch.setenv("RATEQUEUE_URL", URLS)
    monkeypatch.setenv("RATEQUEUE_API_KEY", "k3y")
    d = ratequeue.default_client()
    monkeypatch.setattr(d, "_transport", gpt4.transport())
    monkeypatch.setattr(d, "timing", FAST)
    yield gpt4


def test_celery_task_body_settles_usage(default_on_fake: FakeCluster) -> None:
    out = celery_tasks.summarize_body("some document " * 100)
    (lease,) = default_on_fake.leases.values()
    assert lease.released and lease.actual_load == out["used"] and lease.load == out["reserved"]
    assert (lease.lane, out["fencing_token"]) == ("batch", lease.token)
    # Through Celery's own task machinery (eager: no broker).
    result = celery_tasks.summarize.apply(args=("another document",))
    assert result.successful() and result.get()["used"] > 0


def test_celery_task_retries_after_the_clusters_retry_after(default_on_fake: FakeCluster) -> None:
    from celery.exceptions import Retry

    def full(seen: Seen) -> Optional[Response]:
        return error(429, "queue_full", "full", retry_after_ms=3000)

    default_on_fake.hooks.append(full)
    task = celery_tasks.summarize
    # As a worker runs it (eagerly, so the retry is raised rather than sent to a broker).
    task.push_request(called_directly=False, is_eager=True, retries=0, id="t-1", args=["document"], kwargs={})
    try:
        with pytest.raises(Retry) as ei:
            task.run("document")
    finally:
        task.pop_request()
    assert ei.value.when is not None and 3.0 <= float(ei.value.when) <= 4.0
