"""Across OS processes: the cluster's limits hold for many independent sync clients.

Each worker is a separate process (spawned: nothing shared but the environment) using the
module-level `ratequeue.acquire`; they write what they held, and when, to one timeline file
on the machine-wide monotonic clock, which the test then checks.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any, Callable, List, Tuple

import workers
from cluster import Cluster

PROCESSES = 16
ACQUISITIONS = 25
CONCURRENCY = 3


CTX = multiprocessing.get_context("spawn")


def run_workers(target: Callable[..., None], args_list: List[Tuple[Any, ...]]) -> None:
    procs = [CTX.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0] * len(procs)


def test_concurrency_limit_holds_across_processes(env: Cluster, resource_name: str, tmp_path: Path) -> None:
    env.put_resource(resource_name, {"concurrency": CONCURRENCY})
    timeline = str(tmp_path / "timeline.jsonl")
    # The first CONCURRENCY holders wait for each other (FillGate), so every slot is
    # certainly filled once; after that the workers hold for 3 ms each and race.
    gate = workers.FillGate(CTX, CONCURRENCY)
    run_workers(workers.hold_slots, [(resource_name, timeline, ACQUISITIONS, 0.003, gate)] * PROCESSES)

    records = workers.read(timeline)
    assert len(records) == PROCESSES * ACQUISITIONS
    assert len({r["pid"] for r in records}) == PROCESSES
    overlap = workers.max_overlap(records)
    assert overlap <= CONCURRENCY, f"{overlap} leases held at once"
    assert overlap == CONCURRENCY, "the gate's first holders held every slot at once"
    tokens = [r["token"] for r in records]
    assert len(set(tokens)) == len(tokens), "fencing tokens are unique"
    stats = env.resource(resource_name)["stats"]
    assert stats["held"] == 0
    assert stats["grants_total"] == PROCESSES * ACQUISITIONS


def test_rate_limit_holds_across_processes(env: Cluster, resource_name: str, tmp_path: Path) -> None:
    capacity, window_ms = 10, 1000  # a burst of 10, then 10 per second
    env.put_resource(resource_name, {"rate": [{"per": "request", "limit": capacity, "window_ms": window_ms}]})
    timeline = str(tmp_path / "grants.jsonl")
    procs, each = 8, 6
    run_workers(workers.take_grants, [(resource_name, timeline, each)] * procs)

    grants = workers.read(timeline)
    assert len(grants) == procs * each
    per_s = capacity / (window_ms / 1000.0)
    # A grant happened on the server somewhere in [sent, granted]. For any two grants i, j,
    # every grant whose whole [sent, granted] lies in [sent_i, granted_j] was charged in
    # that span, so there can be at most capacity + refill over the span of them.
    slack = 1  # one token of rounding in the bucket's refill arithmetic
    for i in grants:
        for j in grants:
            lo, hi = i["sent"], j["granted"]
            if hi <= lo:
                continue
            inside = sum(1 for g in grants if g["sent"] >= lo and g["granted"] <= hi)
            assert inside <= capacity + per_s * (hi - lo) + slack, (inside, hi - lo)
    first = min(g["sent"] for g in grants)
    last = max(g["granted"] for g in grants)
    assert last - first >= (len(grants) - capacity - slack) / per_s
