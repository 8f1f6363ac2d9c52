"""Bodies of the worker processes of the cross-process tests. Importable by spawned
children; each appends one line per event to a shared timeline file.

Timestamps are `time.monotonic()`: on Linux that is CLOCK_MONOTONIC, one clock for every
process on the machine, so intervals recorded by different processes compare directly.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List

import ratequeue


def append(path: str, record: Dict[str, Any]) -> None:
    """One write per line with O_APPEND: lines from many processes never interleave."""
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read(path: str) -> List[Dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def hold_slots(resource: str, timeline: str, count: int, hold_s: float, filled: Any) -> None:
    """Acquire `count` times; record when each lease was held (start, end) with its token.

    `filled` is a `FillGate` shared by every worker: the first holders keep their leases
    until every slot is held at once, so the test sees the cluster grant up to the limit
    whatever the machine's timing.
    """
    for _ in range(count):
        with ratequeue.acquire(resource, timeout=120) as lease:
            start = time.monotonic()
            filled.hold()
            time.sleep(hold_s)  # the work done under the lease
            end = time.monotonic()
        append(timeline, {"pid": os.getpid(), "start": start, "end": end, "token": lease.fencing_token})


class FillGate:
    """Holds the first `slots` lease holders until `slots` leases are held at once.

    Built from multiprocessing primitives so spawned workers share it. If the cluster
    never grants `slots` at once, `hold` raises after `timeout_s` and the worker fails.
    """

    def __init__(self, ctx: Any, slots: int, timeout_s: float = 60.0) -> None:
        self.slots = slots
        self.timeout_s = timeout_s
        self.holders = ctx.Value("i", 0)
        self.full = ctx.Event()

    def hold(self) -> None:
        if self.full.is_set():
            return
        with self.holders.get_lock():
            self.holders.value += 1
            if self.holders.value >= self.slots:
                self.full.set()
        if not self.full.wait(self.timeout_s):
            raise RuntimeError(f"{self.slots} leases were never held at once")


def take_grants(resource: str, timeline: str, count: int) -> None:
    """Acquire and release at once `count` times; record when each grant arrived."""
    for _ in range(count):
        before = time.monotonic()
        with ratequeue.acquire(resource, timeout=120) as lease:
            after = time.monotonic()
        append(timeline, {"pid": os.getpid(), "sent": before, "granted": after, "token": lease.fencing_token})


def max_overlap(intervals: List[Dict[str, Any]]) -> int:
    """The largest number of [start, end] intervals open at one instant."""
    events = sorted([(r["start"], 1) for r in intervals] + [(r["end"], -1) for r in intervals])
    # At equal times a release (-1) sorts before a start (+1): touching is not overlapping.
    depth = best = 0
    for _, d in events:
        depth += d
        best = max(best, depth)
    return best
