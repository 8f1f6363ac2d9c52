"""`limits` on Redis, the library Python users pick for rate limits, on this machine
(docs/benchmarks.md, "Python SDK"): hits/s from one process, one caller and T threads.

    python3 bench/python/limits_redis.py REDIS_URL [--seconds S] [--threads T]

A `hit` is one fixed-window check-and-count in Redis (`limits`' default strategy):
a rate limit only, with no queue, no concurrency slots, no replication and no fsync (the
Redis server is started without persistence), so it is a ceiling for the Python-side
cost of asking a shared store, not an equivalent of a replicated acquire + release.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import List

from limits import parse, storage, strategies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("redis_url")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=32)
    a = ap.parse_args()
    limiter = strategies.FixedWindowRateLimiter(storage.RedisStorage(a.redis_url))
    item = parse("1000000000/hour")
    for _ in range(100):
        assert limiter.hit(item, "warm")
    lat: List[float] = []
    end = time.perf_counter() + a.seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        assert limiter.hit(item, "one")
        lat.append(time.perf_counter() - t0)
    lat.sort()
    print(json.dumps({"bench": "limits-redis-1", "hits_per_sec": round(len(lat) / a.seconds),
                      "hit_p50_ms": round(lat[len(lat) // 2] * 1000, 3)}), flush=True)
    done = [0] * a.threads
    stop = time.perf_counter() + a.seconds

    def worker(i: int) -> None:
        while time.perf_counter() < stop:
            limiter.hit(item, f"t{i}")
            done[i] += 1

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(a.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps({"bench": "limits-redis-threads", "threads": a.threads,
                      "hits_per_sec": round(sum(done) / a.seconds)}), flush=True)


if __name__ == "__main__":
    main()
