"""Redirects and failover: a client given only a follower finds the leader; acquires keep
working across a leader kill, and each request_id maps to exactly one lease."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Dict, List, Optional, Tuple

import ratequeue
from cluster import Cluster, Node

DEADLINE = 60.0


def test_redirect_from_a_follower(env: Cluster, resource_name: str, client_key: str) -> None:
    env.put_resource(resource_name, {"concurrency": 5})
    leader = env.leader()
    follower = env.followers()[0]
    with ratequeue.Client(follower.url, client_key) as c:
        with c.acquire(resource_name, load=2) as lease:
            assert lease.load == 2
        assert c.leader == leader.url  # cached from the 307
        assert lease.released


def test_retry_across_a_leader_kill_without_double_leases(env: Cluster, resource_name: str, client_key: str) -> None:
    env.put_resource(resource_name, {"concurrency": 4})
    # The budgets, not the attempt count, bound each call across the election: with the
    # leader dead, every other attempt is an instant move past it, so the default 50
    # attempts at a 0.5 s backoff cap last only ~6-12 s, which a slow election on a busy
    # machine outlasts (the JS client's failover test failed so in CI).
    timing = ratequeue.Timing(
        retry_budget_s=DEADLINE, release_budget_s=DEADLINE, backoff_max_s=0.5, attempts_max=100_000
    )
    granted: Dict[str, Tuple[str, int]] = {}  # request_id -> (lease id, fencing token)
    errors: List[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()
    killed = threading.Event()
    per_thread_after_kill = 5

    def worker() -> None:
        after_kill = 0
        with ratequeue.Client(env.url_list, client_key, timing=timing) as c:
            while not stop.is_set() and after_kill < per_thread_after_kill:
                rid = uuid.uuid4().hex
                try:
                    with c.acquire(resource_name, request_id=rid, timeout=DEADLINE) as lease:
                        with lock:
                            assert rid not in granted
                            granted[rid] = (lease.id, lease.fencing_token)
                except ratequeue.LeaseLost:
                    pass  # a lease may lapse while no leader exists; not a double grant
                except BaseException as e:  # noqa: BLE001
                    errors.append(e)
                    return
                if killed.is_set():
                    after_kill += 1

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    victim: Optional[Node] = None
    try:
        deadline = time.monotonic() + DEADLINE
        while len(granted) < 30:  # traffic is flowing
            assert time.monotonic() < deadline and not errors, errors
            time.sleep(0.01)
        victim = env.leader()
        victim.kill()
        killed.set()
        for t in threads:
            t.join(DEADLINE * 2)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        new_leader = env.leader()
        assert new_leader is not victim
    finally:
        stop.set()
        if victim is not None and not victim.running:
            env.restart(victim)

    leases = [lid for lid, _ in granted.values()]
    assert len(set(leases)) == len(leases), "a lease was handed to two request_ids"
    tokens = sorted(tok for _, tok in granted.values())
    assert len(set(tokens)) == len(tokens)
    # The replicated grant counter saw each request_id once: retries never granted twice.
    stats = env.resource(resource_name)["stats"]
    assert stats["grants_total"] == len(granted)
