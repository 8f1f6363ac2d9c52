"""A fixed number of acquire+release pairs from the Python SDK, for counting what the
Python side spends per pair (bench/python/cost.sh runs it under callgrind and strace).

    python3 bench/python/cost.py URLS KEY RESOURCE MODE PAIRS

MODE is `sync` (one blocking caller) or a number of asyncio tasks sharing one client.
"""

from __future__ import annotations

import asyncio
import sys

import ratequeue
import ratequeue.aio as rq


def main() -> None:
    urls, key, resource, mode, pairs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    if mode == "sync":
        c = ratequeue.Client(urls, key)
        for _ in range(pairs):
            with c.acquire(resource):
                pass
        c.close()
        return
    tasks = int(mode)

    async def run() -> None:
        async with rq.Client(urls, key) as c:
            left = [pairs]

            async def worker() -> None:
                while left[0] > 0:
                    left[0] -= 1
                    async with c.acquire(resource):
                        pass

            await asyncio.gather(*(worker() for _ in range(tasks)))

    asyncio.run(run())


if __name__ == "__main__":
    main()
