"""The SDK says what is wrong, at once and in the same words from both APIs (issue 20's
observations, one test each). Only the public API is used, over real loopback sockets: a
small node (`Node`) answers like a ratequeue leader, and closed ports stand for a cluster
that is down.

Time is injected where a bound is checked (`clock=`/`sleep=`), so no assertion depends
on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import socket
import threading
import traceback
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import ratequeue
import ratequeue.aio as rq

README = Path(__file__).resolve().parents[1] / "README.md"


class Node:
    """One HTTP/1.1 keep-alive node on loopback: grants every acquire of `gpt` (key
    `k3y`), answers `would_block` naming the binding limit for `full`, counts accepted
    connections."""

    def __init__(self) -> None:
        node = self
        self.connections = 0
        self.lock = threading.Lock()
        self.token = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with node.lock:
                    node.connections += 1

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                if n:
                    self.rfile.read(n)
                status, body = node.answer(self.path, self.headers.get("authorization"))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, auth: Any) -> Tuple[int, Dict[str, Any]]:
        if auth != "Bearer k3y":
            return 401, {"error": {"code": "unauthorized", "message": "unknown API key"}}
        if path.endswith("/release"):
            return 200, {"state": "released"}
        if path.startswith("/v1/resources/full/"):
            return 429, {
                "error": {
                    "code": "would_block",
                    "message": "no room now",
                    "retry_after_ms": 120,
                    "limit": "concurrency",
                }
            }
        with self.lock:
            self.token += 1
            t = self.token
        return 200, {
            "lease_id": f"{t}-{t:016x}",
            "resource": "gpt",
            "lane": "default",
            "load": 1,
            "fencing_token": t,
            "ttl_ms": 30_000,
            "queued_ms": 0,
            "limits": [],
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def node() -> Iterator[Node]:
    n = Node()
    yield n
    n.close()


def closed_ports(n: int) -> List[str]:
    """URLs of loopback ports nobody listens on (connections are refused at once)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    urls = [f"http://127.0.0.1:{s.getsockname()[1]}" for s in socks]
    for s in socks:
        s.close()
    return urls


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: List[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def test_the_default_connect_timeout_is_at_most_three_seconds() -> None:
    assert ratequeue.Timing().connect_timeout_s <= 3.0


def test_a_cluster_that_is_down_is_reported_within_the_connect_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    urls = closed_ports(3)
    t = FakeTime()
    timing = ratequeue.Timing(connect_timeout_s=2.0, retry_budget_s=30.0, attempts_max=1000)
    c = ratequeue.Client(urls, "k3y", timing=timing, clock=t.clock, sleep=t.sleep)
    caplog.set_level(logging.WARNING, logger="ratequeue")
    with pytest.raises(ratequeue.Unavailable) as ei:
        c.acquire_lease("gpt", timeout=0)  # no wait: only the connection failure counts
    assert t.now - 1000.0 <= 2.0
    assert ei.value.code == "unreachable"
    for url in urls:  # every URL tried is named
        assert url in str(ei.value)
    retries = [
        r
        for r in caplog.records
        if r.name == "ratequeue" and ("retrying" in r.getMessage() or "trying another node" in r.getMessage())
    ]
    assert len(retries) >= 3  # a log line per retry, never silent
    c.close()


async def test_a_cluster_that_is_down_is_reported_within_the_connect_timeout_async() -> None:
    urls = closed_ports(2)
    t = FakeTime()
    timing = ratequeue.Timing(connect_timeout_s=1.5, retry_budget_s=30.0, attempts_max=1000)
    c = rq.Client(urls, "k3y", timing=timing, clock=t.clock, sleep=t.asleep)
    with pytest.raises(rq.Unavailable) as ei:
        await c.acquire("gpt", timeout=30)
    assert t.now - 1000.0 <= 1.5
    assert all(url in str(ei.value) for url in urls)
    await c.aclose()


def test_https_against_the_plain_port_fails_at_once(node: Node) -> None:
    t = FakeTime()
    c = ratequeue.Client(node.url.replace("http://", "https://"), "k3y", clock=t.clock, sleep=t.sleep)
    with pytest.raises(ratequeue.RatequeueError) as ei:
        c.acquire_lease("gpt")
    assert ei.value.code == "tls_error", ei.value
    assert t.sleeps == []  # not retried
    assert node.connections == 1
    c.close()


def test_sync_and_async_word_a_connection_failure_the_same() -> None:
    (url,) = closed_ports(1)
    timing = ratequeue.Timing(connect_timeout_s=0.2, backoff_initial_s=0.01, backoff_max_s=0.02)
    with pytest.raises(ratequeue.Unavailable) as sync_err:
        ratequeue.Client(url, "k3y", timing=timing).acquire_lease("gpt", timeout=0)

    async def attempt() -> None:
        await rq.Client(url, "k3y", timing=timing).acquire("gpt", timeout=0)

    with pytest.raises(rq.Unavailable) as async_err:
        asyncio.run(attempt())
    assert str(sync_err.value) == str(async_err.value)
    assert "connection refused" in str(sync_err.value)


def test_unauthorized_says_where_the_key_comes_from(node: Node) -> None:
    c = ratequeue.Client(node.url, "wrong")
    with pytest.raises(ratequeue.Unauthorized) as ei:
        c.acquire_lease("gpt")
    assert "RATEQUEUE_API_KEY" in str(ei.value) and "api_key=" in str(ei.value)
    c.close()


def test_a_rejection_names_the_binding_limit(node: Node) -> None:
    c = ratequeue.Client(node.url, "k3y")
    with pytest.raises(ratequeue.WouldBlock) as ei:
        c.acquire_lease("full", timeout=0)
    assert ei.value.limit == "concurrency"
    assert ei.value.retry_after == 0.12
    assert "concurrency" in str(ei.value)
    c.close()


def test_every_release_outcome_is_documented() -> None:
    text = README.read_text()
    lease_section = text[text.index("## The lease") : text.index("## Client")]
    for state in ratequeue.RELEASE_STATES:
        assert f"`{state}`" in lease_section, state
    assert set(ratequeue.RELEASE_STATES) == {"released", "already_released", "not_owner"}


def test_tracebacks_show_public_names() -> None:
    for name in ratequeue.__all__:
        obj = getattr(ratequeue, name)
        if isinstance(obj, type):
            assert obj.__module__ == "ratequeue", name
    for cls in (rq.Client, rq.Lease, rq.AcquireContext):
        assert cls.__module__ == "ratequeue.aio"
    line = traceback.format_exception_only(ratequeue.WaitTimeout, ratequeue.WaitTimeout("waited"))[-1]
    assert line.startswith("ratequeue.WaitTimeout: ")


def test_fresh_event_loops_reuse_a_warm_connection_and_leak_no_socket(node: Node) -> None:
    """The Celery pattern: `asyncio.run` per task with the default client."""
    c = rq.Client(node.url, "k3y")

    async def task() -> str:
        async with c.acquire("gpt") as lease:
            return lease.id

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        ids = [asyncio.run(task()) for _ in range(3)]
        gc.collect()
    assert len(set(ids)) == 3
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert node.connections == 1  # every loop after the first used the warm connection
    asyncio.run(c.aclose())


def test_every_public_error_is_documented() -> None:
    text = README.read_text()
    errors = text[text.index("## Errors") :]
    for name in ratequeue.__all__:
        obj = getattr(ratequeue, name)
        if isinstance(obj, type) and issubclass(obj, ratequeue.RatequeueError) and obj is not ratequeue.RatequeueError:
            assert re.search(rf"`{name}`", errors), name
