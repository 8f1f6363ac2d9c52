"""The asyncio API: `async with` leases, release on exception and cancellation, renewal
task lifecycle, lease loss, redirects, `@limited` on coroutines, loops and default
clients."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from typing import AsyncIterator, Callable, List, Optional

import pytest

import ratequeue
from ratequeue.testing import MockTransport, Request, Response
import ratequeue.aio as rq
from fakecluster import FAST, URLS, FakeCluster, Seen

DEADLINE = 10.0


@pytest.fixture
async def aclient(cluster: FakeCluster) -> AsyncIterator[rq.Client]:
    c = rq.Client(URLS, "k3y", timing=FAST, transport=cluster.async_transport())
    yield c
    await c.aclose()


async def until(predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Poll a condition on the loop with a deadline (the fake cluster runs in threads)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)


async def test_acquire_and_release(aclient: rq.Client, cluster: FakeCluster) -> None:
    async with aclient.acquire("gpt", load=40, priority=100, lane="user-facing", ttl=20, timeout=2) as lease:
        assert isinstance(lease, rq.Lease)
        assert lease.load == 40 and lease.lane == "user-facing" and lease.ttl_ms == 20_000
        assert rq.current_lease() is lease
        lease.set_actual_load(31)
    assert rq.current_lease() is None
    assert cluster.leases[lease.id].released and cluster.leases[lease.id].actual_load == 31
    acq = [a for a in cluster.of_kind("acquire") if a.node == cluster.leader][0]
    assert acq.body == {
        "load": 40,
        "priority": 100,
        "lane": "user-facing",
        "ttl_ms": 20_000,
        "wait_ms": 2000,
        "request_id": lease.request_id,
        "holder": f"{socket.gethostname()}:{os.getpid()}",
    }


async def test_awaitable_form_and_manual_release(aclient: rq.Client, cluster: FakeCluster) -> None:
    lease = await aclient.acquire("gpt")
    assert lease.renewing
    assert await lease.release() == "released"
    assert await lease.release() == "already_released"
    assert not lease.renewing
    lease2 = await aclient.acquire_lease("gpt")
    async with lease2:
        pass
    assert cluster.leases[lease2.id].released


async def test_release_on_exception(aclient: rq.Client, cluster: FakeCluster) -> None:
    with pytest.raises(ZeroDivisionError):
        async with aclient.acquire("gpt") as lease:
            1 / 0
    assert cluster.leases[lease.id].released
    assert not lease.renewing


async def test_release_on_task_cancellation(aclient: rq.Client, cluster: FakeCluster) -> None:
    inside = asyncio.Event()
    holder: List[rq.Lease] = []

    async def work() -> None:
        async with aclient.acquire("gpt") as lease:
            holder.append(lease)
            inside.set()
            await asyncio.Event().wait()  # forever

    task = asyncio.create_task(work())
    await asyncio.wait_for(inside.wait(), DEADLINE)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (lease,) = holder
    assert cluster.leases[lease.id].released
    assert not lease.renewing


async def test_release_completes_even_if_cancelled_again_while_releasing(cluster: FakeCluster) -> None:
    release_started = asyncio.Event()
    release_may_finish = asyncio.Event()

    async def handler(request: Request) -> Response:
        if request.path.endswith("/release"):
            release_started.set()
            await release_may_finish.wait()
        return await asyncio.to_thread(cluster.handle, request)

    c = rq.Client("http://n1:7700", "k3y", timing=FAST, transport=MockTransport(handler))
    inside = asyncio.Event()
    holder: List[rq.Lease] = []

    async def work() -> None:
        async with c.acquire("gpt") as lease:
            holder.append(lease)
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(work())
    await asyncio.wait_for(inside.wait(), DEADLINE)
    task.cancel()
    await asyncio.wait_for(release_started.wait(), DEADLINE)
    task.cancel()  # a second cancellation while the release is on the wire
    with pytest.raises(asyncio.CancelledError):
        await task
    release_may_finish.set()
    (lease,) = holder
    await until(lambda: cluster.leases[lease.id].released)
    await c.aclose()


async def test_cancelling_a_waiting_acquire_aborts_the_request(cluster: FakeCluster) -> None:
    waiting = asyncio.Event()
    aborted = asyncio.Event()

    async def handler(request: Request) -> Response:
        if request.path.endswith("/acquire"):
            waiting.set()
            try:
                await asyncio.Event().wait()  # the server's long poll
            except asyncio.CancelledError:
                aborted.set()  # the connection went away: the server drops the waiter
                raise
        return await asyncio.to_thread(cluster.handle, request)

    c = rq.Client("http://n1:7700", "k3y", timing=FAST, transport=MockTransport(handler))

    async def work() -> None:
        async with c.acquire("gpt", timeout=60):
            raise AssertionError("must not be granted")

    task = asyncio.create_task(work())
    await asyncio.wait_for(waiting.wait(), DEADLINE)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert aborted.is_set()
    assert cluster.leases == {}
    await c.aclose()


async def test_renewal_task_runs_and_stops_on_exit(aclient: rq.Client, cluster: FakeCluster) -> None:
    async with aclient.acquire("gpt", ttl=0.15) as lease:
        await until(lambda: cluster.leases[lease.id].renewals >= 3)
        assert lease.renewing
        task = lease._task
    assert task is not None and task.done()
    rel = cluster.of_kind("release")[0]
    assert all(cluster.seen.index(r) < cluster.seen.index(rel) for r in cluster.of_kind("renew"))


async def test_a_nearer_first_renewal_is_not_held_up_by_a_later_one(aclient: rq.Client, cluster: FakeCluster) -> None:
    """A lease whose first renewal falls due sooner than an earlier lease's (0.05 s
    against 20 s) is renewed on its own schedule."""
    async with aclient.acquire("gpt", ttl=60) as slow:
        async with aclient.acquire("gpt", ttl=0.15) as fast:
            await until(lambda: cluster.leases[fast.id].renewals >= 2)
            assert fast.renewing
        assert cluster.leases[slow.id].renewals == 0
        assert slow.renewing
    assert not slow.renewing


async def test_a_released_lease_is_skipped_when_its_first_renewal_falls_due(
    aclient: rq.Client, cluster: FakeCluster
) -> None:
    async with aclient.acquire("gpt", ttl=0.15) as gone:
        pass
    assert not gone.renewing
    async with aclient.acquire("gpt", ttl=0.15) as later:
        await until(lambda: cluster.leases[later.id].renewals >= 1)  # past `gone`'s due time
    assert cluster.leases[gone.id].renewals == 0


def test_each_loop_renews_its_own_leases(cluster: FakeCluster) -> None:
    """`asyncio.run` per task (the Celery pattern): every new loop starts renewals."""
    c = rq.Client(URLS, "k3y", timing=FAST, transport=cluster.async_transport())

    async def hold() -> None:
        async with c.acquire("gpt", ttl=0.15) as lease:
            await until(lambda: cluster.leases[lease.id].renewals >= 1)

    for _ in range(3):
        asyncio.run(hold())
    asyncio.run(c.aclose())


async def test_lease_lost_is_a_flag_and_an_exception_at_exit(aclient: rq.Client, cluster: FakeCluster) -> None:
    with pytest.raises(rq.LeaseLost) as ei:
        async with aclient.acquire("gpt", ttl=0.15) as lease:
            cluster.expire(lease.id)
            await until(lambda: lease.lost)
            assert lease.lost_error is not None and lease.lost_error.code == "lease_expired"
    assert ei.value.lease_id == lease.id


async def test_lease_lost_does_not_replace_cancellation(aclient: rq.Client, cluster: FakeCluster) -> None:
    inside = asyncio.Event()
    holder: List[rq.Lease] = []

    async def work() -> None:
        async with aclient.acquire("gpt", ttl=60) as lease:
            holder.append(lease)
            cluster.expire(lease.id)
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(work())
    await asyncio.wait_for(inside.wait(), DEADLINE)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert holder[0].lost


async def test_presumed_lost_when_renewals_fail_past_the_ttl(cluster: FakeCluster) -> None:
    def renew_down(seen: Seen) -> Optional[Response]:
        if seen.kind == "renew":
            return Response.of_json(503, {"error": {"code": "no_leader", "message": "x", "retry_after_ms": 5}})
        return None

    cluster.hooks.append(renew_down)
    c = rq.Client("http://n1:7700", "k3y", timing=FAST, transport=cluster.async_transport())
    with pytest.raises(rq.LeaseLost) as ei:
        async with c.acquire("gpt", ttl=0.2) as lease:
            await until(lambda: lease.lost)
    assert ei.value.code == "renewal_failed"
    await c.aclose()


async def test_redirect_preserves_body_and_caches_the_leader(cluster: FakeCluster) -> None:
    cluster.leader = "http://n3:7700"
    c = rq.Client("http://n1:7700,http://n2:7700", "k3y", timing=FAST, transport=cluster.async_transport())
    async with c.acquire("gpt", load=9, request_id="r-9") as lease:
        pass
    first, second = cluster.of_kind("acquire")
    assert first.node in ("http://n1:7700", "http://n2:7700") and second.node == "http://n3:7700"
    assert first.body == second.body and second.body["request_id"] == "r-9"
    assert c.leader == "http://n3:7700"
    assert [r.node for r in cluster.of_kind("release")] == ["http://n3:7700"]
    assert lease.load == 9
    await c.aclose()


async def test_limited_on_a_coroutine(aclient: rq.Client, cluster: FakeCluster) -> None:
    @rq.limited("gpt", load=lambda prompt: len(prompt) * 2, lane="user-facing", priority=50, client=aclient)
    async def complete(prompt: str) -> str:
        lease = rq.current_lease()
        assert lease is not None
        lease.set_actual_load(3)
        await asyncio.sleep(0)
        return prompt[::-1]

    assert await complete("abc") == "cba"
    acq = [a for a in cluster.of_kind("acquire") if a.node == cluster.leader][0]
    assert (acq.body["load"], acq.body["lane"], acq.body["priority"]) == (6, "user-facing", 50)
    assert cluster.of_kind("release")[0].body == {"actual_load": 3}
    with pytest.raises(TypeError):
        rq.limited("gpt", client=ratequeue.Client(URLS))(complete)
    # The sync module exposes the same decorator.
    assert ratequeue.limited is rq.limited


async def test_concurrent_tasks_each_hold_their_own_lease(aclient: rq.Client, cluster: FakeCluster) -> None:
    cluster.resources["gpt"].concurrency = 4
    seen_ids: List[str] = []

    async def one() -> None:
        async with aclient.acquire("gpt", timeout=DEADLINE) as lease:
            assert rq.current_lease() is lease
            seen_ids.append(lease.id)
            await asyncio.sleep(0)

    await asyncio.gather(*(one() for _ in range(20)))
    assert len(set(seen_ids)) == 20
    assert cluster.resources["gpt"].max_held <= 4
    assert all(lease.released for lease in cluster.leases.values())


def test_one_client_survives_several_event_loops(cluster: FakeCluster) -> None:
    c = rq.Client(URLS, "k3y", timing=FAST, transport=cluster.async_transport())

    async def once() -> str:
        async with c.acquire("gpt") as lease:
            return lease.id

    a = asyncio.run(once())
    b = asyncio.run(once())
    assert a != b and cluster.leases[a].released and cluster.leases[b].released


def test_module_level_acquire_works_across_loops_and_threads(
    monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster
) -> None:
    monkeypatch.setenv("RATEQUEUE_URL", URLS)
    monkeypatch.setenv("RATEQUEUE_API_KEY", "k3y")
    d = rq.default_client()
    assert rq.default_client() is d
    monkeypatch.setattr(d, "_transport", cluster.async_transport())
    monkeypatch.setattr(d, "timing", FAST)
    transports: List[object] = []

    async def once() -> None:
        async with rq.acquire("gpt", load=2) as lease:
            assert lease.load == 2
        transports.append(d._transport)

    asyncio.run(once())
    asyncio.run(once())  # a new loop: the same client and transport serve it
    assert transports[0] is transports[1]
    errors: List[BaseException] = []

    def in_thread() -> None:
        try:
            asyncio.run(once())
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=in_thread) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert errors == []
    assert len(cluster.leases) == 6 and all(lease.released for lease in cluster.leases.values())


async def test_errors_carry_retry_after(aclient: rq.Client, cluster: FakeCluster) -> None:
    cluster.resources["gpt"].concurrency = 0
    with pytest.raises(rq.WouldBlock) as ei:
        await aclient.acquire("gpt", timeout=0)
    assert ei.value.retry_after == 0.25
    with pytest.raises(rq.ResourceNotFound):
        await aclient.acquire("nope")
    cluster.hooks.append(
        lambda seen: Response(429, {"retry-after": "2"}, json.dumps({"error": {"code": "queue_full", "message": "full"}}).encode())
    )
    with pytest.raises(rq.QueueFull) as ei2:
        await aclient.acquire("gpt")
    assert ei2.value.retry_after == 2.0
