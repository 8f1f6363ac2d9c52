"""The sync API: leases in `with` blocks, background renewal, lease loss, threads, fork,
and `@limited` on plain functions. Waits are on conditions and events with deadlines."""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from typing import List, Optional

import pytest

import ratequeue
from ratequeue.testing import ConnectError, Response
from fakecluster import FAST, URLS, FakeCluster, Seen

DEADLINE = 10.0


def test_release_on_exit_and_on_exception(client: ratequeue.Client, cluster: FakeCluster) -> None:
    with client.acquire("gpt") as lease:
        assert cluster.resources["gpt"].held == 1
        assert not lease.released
    assert lease.released and cluster.leases[lease.id].released
    assert cluster.resources["gpt"].held == 0

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with client.acquire("gpt") as lease2:
            raise Boom()
    assert cluster.leases[lease2.id].released
    assert cluster.resources["gpt"].held == 0


def test_acquire_lease_by_hand_and_release_is_idempotent(client: ratequeue.Client, cluster: FakeCluster) -> None:
    lease = client.acquire_lease("gpt", load=5)
    assert lease.renewing
    assert lease.release() == "released"
    assert lease.release() == "already_released"
    assert not lease.renewing
    assert len(cluster.of_kind("release")) == 1
    # The raw call by id reports the server's idempotent answer.
    assert client.release(lease.id) == "already_released"


def test_renews_in_the_background_and_stops_on_exit(client: ratequeue.Client, cluster: FakeCluster) -> None:
    with client.acquire("gpt", ttl=0.15) as lease:
        assert cluster.wait_for(lambda: cluster.leases[lease.id].renewals >= 3, DEADLINE)
        assert lease.renewing
        assert not lease.lost
    assert not lease.renewing  # the thread was joined by the release
    renewals = cluster.leases[lease.id].renewals
    rel = cluster.of_kind("release")[0]
    assert all(cluster.seen.index(r) < cluster.seen.index(rel) for r in cluster.of_kind("renew"))
    assert cluster.leases[lease.id].renewals == renewals
    assert all(r.body == {} for r in cluster.of_kind("renew"))


def test_lease_lost_sets_the_flag_and_raises_at_exit(client: ratequeue.Client, cluster: FakeCluster) -> None:
    with pytest.raises(ratequeue.LeaseLost) as ei:
        with client.acquire("gpt", ttl=0.15) as lease:
            cluster.expire(lease.id)
            assert cluster.wait_for(lambda: lease.lost, DEADLINE)
            with pytest.raises(ratequeue.LeaseLost):
                lease.check()
            assert not lease.renewing or cluster.wait_for(lambda: not lease.renewing, DEADLINE)
    assert ei.value.code == "lease_expired" and ei.value.lease_id == lease.id
    assert lease.lost


def test_lease_lost_found_at_release_raises(client: ratequeue.Client, cluster: FakeCluster) -> None:
    with pytest.raises(ratequeue.LeaseLost) as ei:
        with client.acquire("gpt", ttl=60) as lease:  # no renewal before the exit
            cluster.expire(lease.id)
    assert ei.value.status == 410 and lease.lost


def test_block_exception_wins_over_a_lost_lease(client: ratequeue.Client, cluster: FakeCluster) -> None:
    with pytest.raises(KeyError):
        with client.acquire("gpt", ttl=60) as lease:
            cluster.expire(lease.id)
            raise KeyError("mine")
    assert lease.lost


def test_renewal_failing_past_the_ttl_presumes_the_lease_lost(cluster: FakeCluster) -> None:
    def renew_unreachable(seen: Seen) -> Optional[Response]:
        if seen.kind == "renew":
            raise ConnectError("partitioned")
        return None

    cluster.hooks.append(renew_unreachable)
    c = ratequeue.Client("http://n1:7700", "k3y", timing=FAST, transport=cluster.transport())
    with pytest.raises(ratequeue.LeaseLost) as ei:
        with c.acquire("gpt", ttl=0.2) as lease:
            assert cluster.wait_for(lambda: lease.lost, DEADLINE)
    assert ei.value.code == "renewal_failed"
    assert len(cluster.of_kind("renew")) >= 2
    # The release was still attempted, so a lease that is in fact alive is freed.
    assert cluster.leases[lease.id].released


def test_a_release_racing_a_renewal_is_not_a_loss(client: ratequeue.Client, cluster: FakeCluster) -> None:
    for _ in range(20):
        with client.acquire("gpt", ttl=0.1) as lease:
            cluster.wait_for(lambda: cluster.leases[lease.id].renewals >= 1, DEADLINE)
        assert not lease.lost


def test_current_lease_is_set_inside_the_block(client: ratequeue.Client) -> None:
    assert ratequeue.current_lease() is None
    with client.acquire("gpt") as outer:
        assert ratequeue.current_lease() is outer
        with client.acquire("gpt") as inner:
            assert ratequeue.current_lease() is inner
        assert ratequeue.current_lease() is outer
    assert ratequeue.current_lease() is None


def test_limited_on_a_plain_function(client: ratequeue.Client, cluster: FakeCluster) -> None:
    @ratequeue.limited("gpt", load=lambda prompt, **kw: len(prompt), lane="batch", priority=3, client=client)
    def complete(prompt: str, *, used: int) -> str:
        lease = ratequeue.current_lease()
        assert lease is not None and lease.load == len(prompt)
        lease.set_actual_load(used)
        return prompt.upper()

    assert complete("hello", used=2) == "HELLO"
    assert complete.__name__ == "complete"
    acq = [a for a in cluster.of_kind("acquire") if a.node == cluster.leader][0]
    assert (acq.body["load"], acq.body["lane"], acq.body["priority"]) == (5, "batch", 3)
    (rel,) = cluster.of_kind("release")
    assert rel.body == {"actual_load": 2}

    with pytest.raises(TypeError):
        ratequeue.limited("gpt", client=object())(complete)

    @ratequeue.limited("gpt", client=client)
    def fails() -> None:
        raise ValueError("x")

    with pytest.raises(ValueError):
        fails()
    assert cluster.resources["gpt"].held == 0


def test_threads_share_one_client_and_never_exceed_the_limit(client: ratequeue.Client, cluster: FakeCluster) -> None:
    cluster.resources["gpt"].concurrency = 3
    errors: List[BaseException] = []
    barrier = threading.Barrier(12)

    def worker() -> None:
        try:
            barrier.wait(DEADLINE)
            for _ in range(5):
                with client.acquire("gpt", timeout=DEADLINE):
                    assert cluster.resources["gpt"].held <= 3
                    # The first holders stay until all three slots were held at once,
                    # so the test sees the limit reached whatever the machine's timing.
                    assert cluster.wait_for(lambda: cluster.resources["gpt"].max_held >= 3, DEADLINE)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE * 3)
    assert errors == []
    assert not any(t.is_alive() for t in threads)
    assert len(cluster.leases) == 60 and all(lease.released for lease in cluster.leases.values())
    assert cluster.resources["gpt"].max_held == 3


def test_module_level_acquire_uses_the_default_client(monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster) -> None:
    monkeypatch.setenv("RATEQUEUE_URL", URLS)
    monkeypatch.setenv("RATEQUEUE_API_KEY", "k3y")
    default = ratequeue.default_client()
    monkeypatch.setattr(default, "_transport", cluster.transport())
    monkeypatch.setattr(default, "timing", FAST)
    with ratequeue.acquire("gpt", load=3) as lease:
        assert cluster.leases[lease.id].load == 3
    assert cluster.leases[lease.id].released


def _wait_child(pid: int, timeout: float) -> int:
    """Exit status of a forked child, killing it if it overruns (a deadlock)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -999
        # A pipe-free wait: select on nothing for a short slice.
        select.select([], [], [], 0.01)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_opens_new_connections_and_leaves_inherited_leases_alone(cluster: FakeCluster) -> None:
    """Over real sockets: a forked child never uses the parent's connections, even with the
    pool's lock held by another thread at the fork, and an inherited lease stays the
    parent's."""
    url = cluster.serve()
    client = ratequeue.Client(url, "k3y", timing=FAST)
    held = client.acquire_lease("gpt", ttl=60)
    assert cluster.connections == 1
    pool = client._transport
    locked = threading.Event()
    unlock = threading.Event()

    def hold_lock() -> None:
        with pool._lock:  # type: ignore[attr-defined]
            locked.set()
            unlock.wait(DEADLINE)

    t = threading.Thread(target=hold_lock)
    t.start()
    assert locked.wait(DEADLINE)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(r)
            with client.acquire("gpt") as lease:
                assert lease.renewing
            assert held.release() == "not_owner"  # the parent's lease stays the parent's
            os.write(w, lease.id.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    unlock.set()
    t.join(DEADLINE)
    assert _wait_child(pid, DEADLINE) == 0
    child_lease = os.read(r, 100).decode()
    os.close(r)
    assert child_lease and cluster.leases[child_lease].released
    assert cluster.connections == 2  # the child's own
    # The parent's connection and lease are untouched.
    assert not held.released
    assert held.release() == "released"
    assert cluster.connections == 2
    client.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_default_client_works_after_fork(monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster) -> None:
    monkeypatch.setenv("RATEQUEUE_URL", URLS)
    monkeypatch.setenv("RATEQUEUE_API_KEY", "k3y")
    default = ratequeue.default_client()
    monkeypatch.setattr(default, "_transport", cluster.transport())
    monkeypatch.setattr(default, "timing", FAST)
    with ratequeue.acquire("gpt"):
        pass
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            assert ratequeue.default_client() is default
            with ratequeue.acquire("gpt") as lease:
                assert lease.fencing_token > 0
            code = 0
        finally:
            os._exit(code)
    assert _wait_child(pid, DEADLINE) == 0
