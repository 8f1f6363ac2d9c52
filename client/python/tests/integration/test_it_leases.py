"""Lease behaviour against a real cluster: async and sync acquire/release, priority, lanes,
settle, release on exception and cancellation, auto-renewal past the TTL, lease loss,
every error code mapped to its exception with retry_after filled, and the holder label
in the dashboard's lease list."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from typing import Any, Dict, List, Optional

import pytest

import ratequeue
import ratequeue.aio as rq
from ratequeue._sync_transport import SyncConnectionPool
from ratequeue.testing import ConnectError, Request, Response
from cluster import Cluster

DEADLINE = 30.0


async def wait_queued(env: Cluster, name: str, n: int) -> None:
    """Poll the leader's queue length for `name` until it reaches n (bounded)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        queued = sum(env.resource(name)["stats"]["queued"].values())
        if queued >= n:
            return
        assert time.monotonic() < deadline, f"only {queued} of {n} waiters queued"
        await asyncio.sleep(0.02)


async def test_async_acquire_and_release(env: Cluster, resource_name: str) -> None:
    env.put_resource(resource_name, {"concurrency": 2})
    async with rq.acquire(resource_name, load=3, lane="user-facing", ttl=10) as lease:
        assert lease.resource == resource_name and lease.lane == "user-facing" and lease.load == 3
        assert lease.fencing_token > 0 and lease.ttl_ms == 10_000
        assert ratequeue.Limit("concurrency", 2, 1) in lease.limits
        assert env.resource(resource_name)["stats"]["held"] == 1
    assert env.resource(resource_name)["stats"]["held"] == 0
    # Fencing tokens strictly increase.
    async with rq.acquire(resource_name) as a:
        async with rq.acquire(resource_name) as b:
            assert lease.fencing_token < a.fencing_token < b.fencing_token


def test_sync_acquire_and_release(env: Cluster, resource_name: str) -> None:
    env.put_resource(resource_name, {"concurrency": 1})
    with ratequeue.acquire(resource_name) as lease:
        with pytest.raises(ratequeue.WouldBlock) as ei:
            with ratequeue.acquire(resource_name, timeout=0):
                pass
        assert ei.value.retry_after is not None and ei.value.retry_after > 0
    assert lease.released
    with ratequeue.acquire(resource_name, timeout=0):
        pass


async def test_priority_is_served_first_within_a_lane(env: Cluster, resource_name: str) -> None:
    env.put_resource(resource_name, {"concurrency": 1})
    order: List[str] = []
    holder = await rq.acquire(resource_name)

    async def wait_then_record(tag: str, priority: int) -> None:
        async with rq.acquire(resource_name, priority=priority, timeout=DEADLINE):
            order.append(tag)

    low = asyncio.create_task(wait_then_record("low", 1))
    await wait_queued(env, resource_name, 1)
    mid = asyncio.create_task(wait_then_record("mid", 10))
    await wait_queued(env, resource_name, 2)
    high = asyncio.create_task(wait_then_record("high", 100))
    await wait_queued(env, resource_name, 3)
    await holder.release()
    await asyncio.wait_for(asyncio.gather(low, mid, high), DEADLINE)
    assert order == ["high", "mid", "low"]


async def test_lanes_share_capacity(env: Cluster, resource_name: str) -> None:
    env.put_resource(resource_name, {"concurrency": 1, "lanes": {"user-facing": {"weight": 3}}})
    order: List[str] = []
    holder = await rq.acquire(resource_name)

    async def one(lane: str) -> None:
        async with rq.acquire(resource_name, lane=lane, timeout=DEADLINE):
            order.append(lane)

    tasks = [asyncio.create_task(one("batch")) for _ in range(4)]
    await wait_queued(env, resource_name, 4)
    tasks += [asyncio.create_task(one("user-facing")) for _ in range(4)]
    await wait_queued(env, resource_name, 8)
    await holder.release()
    await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE)
    # Weighted fair share: the weight-3 lane gets most of the first grants, but batch
    # is not starved although it queued first.
    assert order[:4].count("user-facing") >= 2
    assert "batch" in order[:5]


async def test_settle_credits_back_unused_load(env: Cluster, resource_name: str) -> None:
    env.put_resource(resource_name, {"rate": [{"per": "load", "limit": 1000, "window_ms": 3_600_000}]})
    async with rq.acquire(resource_name, load=800) as lease:
        lease.set_actual_load(100)  # used far less than reserved
    # 1000 - 800 + 700 credited back = 900 left: another 800 fits at once.
    async with rq.acquire(resource_name, load=800, timeout=0) as lease2:
        pass  # no settle: the whole 800 stays charged
    with pytest.raises(rq.WouldBlock) as ei:
        await rq.acquire(resource_name, load=800, timeout=0)
    assert ei.value.retry_after is not None and ei.value.retry_after > 1.0
    assert lease2.released
    # An excess is debited too: the bucket can go negative.
    async with rq.acquire(resource_name, load=100, timeout=0) as lease3:
        lease3.set_actual_load(1000)
    with pytest.raises(rq.WouldBlock):
        await rq.acquire(resource_name, load=1, timeout=0)


async def test_release_on_exception_and_on_cancellation(env: Cluster, resource_name: str) -> None:
    env.put_resource(resource_name, {"concurrency": 1})
    with pytest.raises(RuntimeError):
        async with rq.acquire(resource_name):
            raise RuntimeError("boom")
    assert env.resource(resource_name)["stats"]["held"] == 0

    inside = asyncio.Event()

    async def hold_forever() -> None:
        async with rq.acquire(resource_name):
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hold_forever())
    await asyncio.wait_for(inside.wait(), DEADLINE)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert env.resource(resource_name)["stats"]["held"] == 0
    # A waiter cancelled in the queue leaves it.
    holder = await rq.acquire(resource_name)
    waiter = asyncio.create_task(hold_forever())
    await wait_queued(env, resource_name, 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    deadline = time.monotonic() + DEADLINE
    while sum(env.resource(resource_name)["stats"]["queued"].values()) != 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await holder.release()
    assert env.resource(resource_name)["stats"]["held"] == 0


def test_auto_renew_keeps_the_lease_past_its_ttl(env: Cluster, resource_name: str) -> None:
    env.put_resource(resource_name, {"concurrency": 1})
    ttl = 0.6
    with ratequeue.acquire(resource_name, ttl=ttl) as lease:
        end = time.monotonic() + 4 * ttl
        while time.monotonic() < end:  # hold for several TTLs
            with pytest.raises(ratequeue.WouldBlock):
                with ratequeue.acquire(resource_name, timeout=0):
                    pass
            time.sleep(ttl / 4)
        assert not lease.lost and lease.renewing
    assert lease.released and not lease.lost


class DropRenewals(SyncConnectionPool):
    """The SDK's own transport, losing every renew: simulates a partitioned holder."""

    def handle_request(self, request: Request) -> Response:
        if request.path.endswith("/renew"):
            raise ConnectError("renewal dropped by the test")
        return super().handle_request(request)


def test_simulated_lease_loss_raises(env: Cluster, resource_name: str, client_key: str) -> None:
    env.put_resource(resource_name, {"concurrency": 1})
    timing = ratequeue.Timing(backoff_max_s=0.05)
    with ratequeue.Client(env.url_list, client_key, timing=timing, transport=DropRenewals()) as c:
        with pytest.raises(ratequeue.LeaseLost) as ei:
            with c.acquire(resource_name, ttl=0.5) as lease:
                deadline = time.monotonic() + DEADLINE
                while not lease.lost:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                with pytest.raises(ratequeue.LeaseLost):
                    lease.check()
                # The cluster really let it go: someone else gets the slot.
                with ratequeue.acquire(resource_name, timeout=5):
                    pass
        assert ei.value.lease_id == lease.id
        assert ei.value.code in ("renewal_failed", "lease_expired")


ERROR_CASES: List[Dict[str, Any]] = [
    {"kwargs": {"load": 2000}, "exc": ratequeue.LoadExceedsLimit, "code": "load_exceeds_limit", "status": 422},
    {"resource": "py-does-not-exist", "exc": ratequeue.ResourceNotFound, "code": "resource_not_found", "status": 404},
    {"resource": "other-team", "exc": ratequeue.Forbidden, "code": "forbidden", "status": 403},
    {"key": "not-a-key", "exc": ratequeue.Unauthorized, "code": "unauthorized", "status": 401},
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c["code"] for c in ERROR_CASES])
def test_error_codes_map_to_exceptions(env: Cluster, resource_name: str, case: Dict[str, Any]) -> None:
    env.put_resource(resource_name, {"concurrency": 1, "rate": [{"per": "load", "limit": 1000, "window_ms": 1000}]})
    env.put_resource("other-team", {"concurrency": 1})
    resource: str = case.get("resource", resource_name)
    key: Optional[str] = case.get("key")
    with pytest.raises(case["exc"]) as ei:
        with ratequeue.acquire(resource, api_key=key, **case.get("kwargs", {})):
            pass
    assert ei.value.code == case["code"] and ei.value.status == case["status"]


def test_rejections_carry_retry_after(env: Cluster, resource_name: str) -> None:
    env.put_resource(resource_name, {"concurrency": 1, "max_queue": 1})
    holder = ratequeue.default_client().acquire_lease(resource_name)
    try:
        with pytest.raises(ratequeue.WouldBlock) as wb:
            ratequeue.acquire(resource_name, timeout=0).__enter__()
        with pytest.raises(ratequeue.WaitTimeout) as wt:
            ratequeue.acquire(resource_name, timeout=0.3).__enter__()
        # One waiter fills the queue (max_queue 1); the next is refused at once.
        started = threading.Event()
        outcome: List[BaseException] = []

        def queued_waiter() -> None:
            started.set()
            try:
                with ratequeue.acquire(resource_name, timeout=DEADLINE):
                    pass
            except BaseException as e:  # noqa: BLE001
                outcome.append(e)

        t = threading.Thread(target=queued_waiter)
        t.start()
        assert started.wait(DEADLINE)
        deadline = time.monotonic() + DEADLINE
        while sum(env.resource(resource_name)["stats"]["queued"].values()) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(ratequeue.QueueFull) as qf:
            ratequeue.acquire(resource_name, timeout=5).__enter__()
    finally:
        holder.release()
    t.join(DEADLINE)
    assert outcome == []
    for e in (wb.value, wt.value, qf.value):
        assert e.status == 429 and e.retry_after is not None and e.retry_after > 0, e


def test_a_concurrency_rejection_names_the_limit_and_waits_for_releases_not_the_ttl(
    env: Cluster, resource_name: str
) -> None:
    """The binding limit is named, and `retry_after` (what the Celery example uses as its
    countdown) follows how long leases are really held, not the holder's 30 s TTL."""
    env.put_resource(resource_name, {"concurrency": 1, "default_ttl_ms": 30_000})
    for _ in range(5):
        with ratequeue.acquire(resource_name):
            pass  # held for a few milliseconds
    with ratequeue.acquire(resource_name):
        for timeout in (0, 0.1):
            with pytest.raises(ratequeue.Rejected) as ei:
                ratequeue.acquire(resource_name, timeout=timeout).__enter__()
            e = ei.value
            assert e.limit == "concurrency" and e.bucket is None, e
            assert e.retry_after is not None and 0 < e.retry_after < 10, e


async def test_the_holder_label_reaches_the_lease_list(
    env: Cluster, resource_name: str, client_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.put_resource(resource_name, {"concurrency": 3})
    place = f"{socket.gethostname()}:{os.getpid()}"
    monkeypatch.setenv("RATEQUEUE_HOLDER", "py-env")
    async with rq.Client(env.url_list, client_key, holder="py-it") as c:
        async with c.acquire(resource_name), c.acquire(resource_name, holder="job 7"):
            with ratequeue.acquire(resource_name):  # the default client: RATEQUEUE_HOLDER
                r = env.admin("GET", f"/v1/dashboard/resources/{resource_name}")
                assert r.status_code == 200, r.text
                holders = sorted(lease["holder"] for lease in r.json()["leases"]["shown"])
    assert holders == [f"job 7@{place}", f"py-env@{place}", f"py-it@{place}"]


async def test_dry_run_grants_at_once_and_carries_the_shadow(env: Cluster, resource_name: str) -> None:
    env.put_resource(resource_name, {"concurrency": 1, "mode": "dry_run"})
    async with rq.acquire(resource_name) as first:
        assert first.shadow == ratequeue.Shadow("grant", 0, None)
        # Enforce would refuse a try-once request while the one slot is held; dry-run
        # grants it and says so.
        async with rq.acquire(resource_name, timeout=0) as second:
            assert second.shadow is not None and second.shadow.would_refuse
            assert (second.shadow.decision, second.shadow.limit) == ("would_block", "concurrency")
            assert second.shadow.wait_ms > 0
    with ratequeue.acquire(resource_name) as lease:
        assert lease.shadow is not None and lease.shadow.decision == "grant"
    env.put_resource(resource_name, {"concurrency": 1})
    with ratequeue.acquire(resource_name) as lease:
        assert lease.shadow is None
        with pytest.raises(ratequeue.WouldBlock):
            with ratequeue.acquire(resource_name, timeout=0):
                pass


async def test_a_report_lowers_the_budget_and_a_429_pauses(env: Cluster, resource_name: str) -> None:
    env.put_resource(
        resource_name, {"rate": [{"per": "request", "limit": 100, "window_ms": 3_600_000}], "feedback": {}}
    )
    headers = {"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "20s"}
    async with rq.acquire(resource_name) as lease:
        reported = await lease.report(ratequeue.providers.openai_report(headers))
        assert reported.paused_ms == 0
        assert ratequeue.Limit("request", 100, 3) in reported.limits
        reported = await lease.report(rate_limited=True, retry_after_ms=30_000)
        assert reported.paused_ms > 25_000
    with pytest.raises(ratequeue.WouldBlock):
        with ratequeue.acquire(resource_name, timeout=0):
            pass


async def _until(what: str, check: Any) -> None:
    """Poll `check()` until true, bounded by DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_async_on_progress_reports_position_and_stops_when_the_wait_ends(
    env: Cluster, resource_name: str
) -> None:
    env.put_resource(resource_name, {"concurrency": 1})
    client = rq.default_client()
    holder = await client.acquire_lease(resource_name)
    first: List[ratequeue.Progress] = []
    second: List[ratequeue.Progress] = []
    cancelled: List[ratequeue.Progress] = []

    async def wait(seen: List[ratequeue.Progress], request_id: str) -> rq.Lease:
        return await client.acquire_lease(
            resource_name, lane="batch", timeout=60, request_id=request_id, on_progress=seen.append, progress_interval=0.1
        )

    t1 = asyncio.create_task(wait(first, "py-progress-1"))
    await _until("the first waiter's progress", lambda: bool(first))
    t2 = asyncio.create_task(wait(second, "py-progress-2"))
    await _until("the second waiter's progress", lambda: bool(second))
    t3 = asyncio.create_task(wait(cancelled, "py-progress-3"))
    await _until("the third waiter's progress", lambda: bool(cancelled))
    p = second[-1]
    assert (p.lane, p.position, p.ahead_in_resource, p.queued_in_resource) == ("batch", 2, 1, 3)
    assert p.binding_limit == "concurrency" and p.position_exact and p.estimated_wait_ms >= 1
    assert p.request_id == "py-progress-2" and p.resource == resource_name
    assert first[-1].position == 1
    assert await client.waiter_progress(resource_name, "py-progress-2") is not None
    assert await client.waiter_progress(resource_name, "never-sent") is None

    # Aborted: a cancelled acquire's callback is called no more.
    t3.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t3
    n_cancelled = len(cancelled)

    # Granted: the first returns its lease and its callback stops; the second moves up.
    await holder.release()
    lease1 = await t1
    n_first = len(first)
    await _until("the second waiter to move up", lambda: second[-1].position == 1)
    await asyncio.sleep(0.5)  # five intervals: a stopped watch would have called by now
    assert len(first) == n_first and len(cancelled) == n_cancelled
    await lease1.release()
    lease2 = await t2
    await lease2.release()


def test_sync_on_progress_reports_position_and_stops_on_error(env: Cluster, resource_name: str) -> None:
    env.put_resource(resource_name, {"concurrency": 1})
    client = ratequeue.default_client()
    seen: List[ratequeue.Progress] = []
    threads: List[threading.Thread] = []
    with client.acquire(resource_name):
        errors: List[BaseException] = []

        def wait() -> None:
            try:
                with client.acquire(resource_name, timeout=3, on_progress=seen.append, progress_interval=0.1):
                    pass
            except BaseException as e:  # noqa: BLE001 - checked below
                errors.append(e)

        t = threading.Thread(target=wait)
        t.start()
        threads.append(t)
        deadline = time.monotonic() + DEADLINE
        while not seen:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.02)
        p = seen[-1]
        assert (p.lane, p.position, p.ahead_in_resource, p.binding_limit) == ("default", 1, 0, "concurrency")
        # The wait times out: the error ends the polling too.
        t.join(DEADLINE)
        assert not t.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], ratequeue.WaitTimeout)
        n = len(seen)
        time.sleep(0.5)
        assert len(seen) == n, "progress after the acquire raised"
    with pytest.raises(ValueError):
        client.acquire(resource_name, on_progress=seen.append, progress_interval=0.01)
