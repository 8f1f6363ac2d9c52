"""The Python half of `bash bench/sdk.sh`: acquire+release with `ratequeue.aio` against a
running cluster. Prints one JSON line: p50/p99 of one sequential pair (ms) and the pairs
per second of C concurrent tasks in one process.

    python3 bench/sdk_python.py URLS KEY RESOURCE PAIRS CONCURRENCY SECONDS
"""

import asyncio
import json
import sys
import time

import ratequeue.aio as rq


async def main(urls: str, key: str, name: str, n: int, c: int, seconds: float) -> None:
    async with rq.Client(urls, key) as client:
        for _ in range(200):  # warm up
            async with client.acquire(name):
                pass
        lat = []
        for _ in range(n):
            t0 = time.perf_counter()
            async with client.acquire(name):
                pass
            lat.append((time.perf_counter() - t0) * 1000)
        lat.sort()
        pairs = 0
        end = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal pairs
            while time.perf_counter() < end:
                async with client.acquire(name):
                    pass
                pairs += 1

        await asyncio.gather(*(loop() for _ in range(c)))
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]  # noqa: E731
    print(json.dumps({"p50_ms": q(0.5), "p99_ms": q(0.99), "pairs_per_s": pairs / seconds}))


if __name__ == "__main__":
    u, k, r, n, c, s = sys.argv[1:7]
    asyncio.run(main(u, k, r, int(n), int(c), float(s)))
