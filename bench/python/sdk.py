"""The Python SDK's figures for docs/benchmarks.md ("Python SDK"), against a running cluster.

    python3 bench/python/sdk.py URLS KEY RESOURCE [--seconds S] [--procs N] [--tasks T] [--proc-tasks P]

Prints one JSON object per measurement:
- `sync-1`, `async-1`: one caller, acquire + release in a loop; p50/p99 of the acquire,
  the release and the pair (the `with` block entered and left);
- `async-tasks`: one process, T tasks (default 32) in one event loop: pairs/s, and the
  process's CPU time per pair;
- `async-procs`: N processes (default 4) of P tasks each (default 64: 256 in all, the
  concurrency of `rqctl bench`'s peak): pairs/s in all;
- `sync-threads`: one process, T threads sharing one client: pairs/s;
- `fresh-loop`: the first acquire+release in a new `asyncio.run` (the Celery pattern)
  against one in a warm loop, p50 of each, and ResourceWarnings seen (must be 0).
The resource should have ample capacity (no contention), like `rqctl bench --workload
cycle`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import statistics
import threading
import time
import warnings
from typing import Any, Dict, List

import ratequeue
import ratequeue.aio as rq


def pct(xs: List[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))] * 1000, 3)


def summary(name: str, acq: List[float], rel: List[float], pair: List[float]) -> Dict[str, Any]:
    return {
        "bench": name,
        "pairs": len(pair),
        "acquire_p50_ms": pct(acq, 0.5),
        "acquire_p99_ms": pct(acq, 0.99),
        "release_p50_ms": pct(rel, 0.5),
        "release_p99_ms": pct(rel, 0.99),
        "pair_p50_ms": pct(pair, 0.5),
        "pair_p99_ms": pct(pair, 0.99),
        "pairs_per_sec": round(len(pair) / max(sum(pair), 1e-9)),
    }


def sync_one(urls: str, key: str, resource: str, seconds: float) -> Dict[str, Any]:
    c = ratequeue.Client(urls, key)
    for _ in range(50):
        with c.acquire(resource):
            pass
    acq: List[float] = []
    rel: List[float] = []
    pair: List[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        ctx = c.acquire(resource)
        lease = ctx.__enter__()
        t1 = time.perf_counter()
        ctx.__exit__(None, None, None)
        t2 = time.perf_counter()
        assert lease.released
        acq.append(t1 - t0)
        rel.append(t2 - t1)
        pair.append(t2 - t0)
    c.close()
    return summary("sync-1", acq, rel, pair)


async def _async_one(urls: str, key: str, resource: str, seconds: float) -> Dict[str, Any]:
    async with rq.Client(urls, key) as c:
        for _ in range(50):
            async with c.acquire(resource):
                pass
        acq: List[float] = []
        rel: List[float] = []
        pair: List[float] = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            ctx = c.acquire(resource)
            await ctx.__aenter__()
            t1 = time.perf_counter()
            await ctx.__aexit__(None, None, None)
            t2 = time.perf_counter()
            acq.append(t1 - t0)
            rel.append(t2 - t1)
            pair.append(t2 - t0)
    return summary("async-1", acq, rel, pair)


async def _tasks(urls: str, key: str, resource: str, seconds: float, tasks: int, cpu: Any = None) -> int:
    """Pairs done by `tasks` tasks in `seconds`; `cpu` (a list) gets the process's CPU
    seconds spent meanwhile."""
    async with rq.Client(urls, key) as c:
        async with c.acquire(resource):
            pass
        done = 0
        cpu0 = time.process_time()
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                async with c.acquire(resource):
                    pass
                done += 1

        await asyncio.gather(*(worker() for _ in range(tasks)))
        if cpu is not None:
            cpu.append(time.process_time() - cpu0)
        return done


def _proc(urls: str, key: str, resource: str, seconds: float, tasks: int, start: Any, out: Any) -> None:
    start.wait()
    out.put(asyncio.run(_tasks(urls, key, resource, seconds, tasks)))


def async_procs(urls: str, key: str, resource: str, seconds: float, procs: int, tasks: int) -> Dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    out = ctx.Queue()
    ps = [ctx.Process(target=_proc, args=(urls, key, resource, seconds, tasks, start, out)) for _ in range(procs)]
    for p in ps:
        p.start()
    time.sleep(2.0)  # let the children import and connect before the clock starts
    start.set()
    total = sum(out.get(timeout=seconds + 60) for _ in ps)
    for p in ps:
        p.join(30)
    return {"bench": "async-procs", "procs": procs, "tasks": tasks, "pairs_per_sec": round(total / seconds)}


def sync_threads(urls: str, key: str, resource: str, seconds: float, threads: int) -> Dict[str, Any]:
    c = ratequeue.Client(urls, key)
    with c.acquire(resource):
        pass
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        while time.perf_counter() < stop:
            with c.acquire(resource):
                pass
            done[i] += 1

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    c.close()
    return {"bench": "sync-threads", "threads": threads, "pairs_per_sec": round(sum(done) / seconds)}


def fresh_loop(urls: str, key: str, resource: str, rounds: int) -> Dict[str, Any]:
    """`asyncio.run` per task with one client, as the Celery example does, against calls
    in a warm loop. The two alternate (the warm loop runs in a thread), so machine noise
    hits both alike."""
    c = rq.Client(urls, key)

    async def one() -> float:
        t0 = time.perf_counter()
        async with c.acquire(resource):
            pass
        return time.perf_counter() - t0

    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    first: List[float] = []
    warm: List[float] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        asyncio.run_coroutine_threadsafe(one(), loop).result(60)
        for _ in range(rounds):
            first.append(asyncio.run(one()))
            warm.append(asyncio.run_coroutine_threadsafe(one(), loop).result(60))
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
        loop.close()
        asyncio.run(c.aclose())
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    return {
        "bench": "fresh-loop",
        "rounds": rounds,
        "fresh_first_call_p50_ms": pct(first, 0.5),
        "warm_call_p50_ms": pct(warm, 0.5),
        "extra_ms": round(pct(first, 0.5) - pct(warm, 0.5), 3),
        "resource_warnings": len(leaks),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("urls")
    ap.add_argument("key")
    ap.add_argument("resource")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--tasks", type=int, default=32)
    ap.add_argument("--proc-tasks", type=int, default=64)
    a = ap.parse_args()
    rows = [
        sync_one(a.urls, a.key, a.resource, a.seconds),
        asyncio.run(_async_one(a.urls, a.key, a.resource, a.seconds)),
    ]
    cpu: List[float] = []
    n = asyncio.run(_tasks(a.urls, a.key, a.resource, a.seconds, a.tasks, cpu))
    rows.append(
        {
            "bench": "async-tasks",
            "tasks": a.tasks,
            "pairs_per_sec": round(n / a.seconds),
            # The Python side's CPU per pair: what the machine's load does not change much.
            "cpu_us_per_pair": round(cpu[0] / max(n, 1) * 1e6),
        }
    )
    rows.append(async_procs(a.urls, a.key, a.resource, a.seconds, a.procs, a.proc_tasks))
    rows.append(sync_threads(a.urls, a.key, a.resource, a.seconds, a.tasks))
    rows.append(fresh_loop(a.urls, a.key, a.resource, 100))
    for r in rows:
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
