"""HTTP clients for the Python SDK, compared on the API's own exchange (docs/benchmarks.md,
"Python SDK: the transport"). Each candidate sends raw acquire + release pairs to the
leader (no SDK logic around it):

- `httpx` (sync, async, async over HTTP/2: one multiplexed connection), `httpcore`
  (sync, async), `aiohttp`: the libraries the SDK could use;
- `ratequeue` (sync, async): the SDK's own keep-alive HTTP/1.1 pool.

    python3 bench/python/transports.py LEADER_URL KEY RESOURCE [--seconds S] [--tasks T]

Prints one JSON object per candidate: p50 of the acquire and of the pair from one
caller, and pairs/s with T concurrent callers (tasks, or threads for sync clients).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from typing import Any, Dict, List, Tuple

from ratequeue._async_transport import AsyncConnectionPool
from ratequeue._http import Request
from ratequeue._sync_transport import SyncConnectionPool

BODY = json.dumps({"wait_ms": 5000}).encode()


class Base:
    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}


class HttpxSync(Base):
    name = "httpx (sync)"

    def __init__(self, base: str, key: str) -> None:
        import httpx

        super().__init__(base, key)
        self.c = httpx.Client(headers=self.headers, limits=httpx.Limits(max_connections=1000))

    def post(self, path: str, body: bytes) -> Tuple[int, Any]:
        r = self.c.post(self.base + path, content=body)
        return r.status_code, r.json()


class RatequeueSync(Base):
    name = "ratequeue (sync)"

    def __init__(self, base: str, key: str) -> None:
        super().__init__(base, key)
        self.p = SyncConnectionPool()

    def post(self, path: str, body: bytes) -> Tuple[int, Any]:
        r = self.p.handle_request(Request("POST", self.base + path, self.headers, body))
        return r.status_code, r.json()


class HttpcoreSync(Base):
    name = "httpcore (sync)"

    def __init__(self, base: str, key: str) -> None:
        import httpcore

        super().__init__(base, key)
        self.p = httpcore.ConnectionPool(max_connections=1000)

    def post(self, path: str, body: bytes) -> Tuple[int, Any]:
        r = self.p.request("POST", self.base + path, headers=self.headers, content=body)
        return r.status, json.loads(r.content)


class HttpxAsync(Base):
    name = "httpx (async)"
    http2 = False

    def __init__(self, base: str, key: str) -> None:
        import httpx

        super().__init__(base, key)
        self.c = httpx.AsyncClient(headers=self.headers, http2=self.http2, limits=httpx.Limits(max_connections=1000))

    async def post(self, path: str, body: bytes) -> Tuple[int, Any]:
        r = await self.c.post(self.base + path, content=body)
        return r.status_code, r.json()

    async def close(self) -> None:
        await self.c.aclose()


class HttpxAsyncH2(HttpxAsync):
    name = "httpx (async, HTTP/2)"
    http2 = True


class HttpcoreAsync(Base):
    name = "httpcore (async)"

    def __init__(self, base: str, key: str) -> None:
        import httpcore

        super().__init__(base, key)
        self.p = httpcore.AsyncConnectionPool(max_connections=1000)

    async def post(self, path: str, body: bytes) -> Tuple[int, Any]:
        r = await self.p.request("POST", self.base + path, headers=self.headers, content=body)
        return r.status, json.loads(r.content)

    async def close(self) -> None:
        await self.p.aclose()


class Aiohttp(Base):
    name = "aiohttp"

    def __init__(self, base: str, key: str) -> None:
        super().__init__(base, key)
        self.s: Any = None

    async def post(self, path: str, body: bytes) -> Tuple[int, Any]:
        import aiohttp

        if self.s is None:
            self.s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
        async with self.s.post(self.base + path, data=body, headers=self.headers) as r:
            return r.status, await r.json()

    async def close(self) -> None:
        await self.s.close()


class RatequeueAsync(Base):
    name = "ratequeue (async)"

    def __init__(self, base: str, key: str) -> None:
        super().__init__(base, key)
        self.p = AsyncConnectionPool()

    async def post(self, path: str, body: bytes) -> Tuple[int, Any]:
        r = await self.p.handle_async_request(Request("POST", self.base + path, self.headers, body))
        return r.status_code, r.json()

    async def close(self) -> None:
        await self.p.aclose()


SYNC = [HttpxSync, HttpcoreSync, RatequeueSync]
ASYNC = [HttpxAsync, HttpxAsyncH2, HttpcoreAsync, Aiohttp, RatequeueAsync]


def p50(xs: List[float]) -> float:
    return round(sorted(xs)[len(xs) // 2] * 1000, 3)


def pair_sync(c: Any, res: str) -> Tuple[float, float]:
    t0 = time.perf_counter()
    st, d = c.post(f"/v1/resources/{res}/acquire", BODY)
    assert st == 200, (st, d)
    t1 = time.perf_counter()
    st, d2 = c.post(f"/v1/leases/{d['lease_id']}/release", b"{}")
    assert st == 200, (st, d2)
    return t1 - t0, time.perf_counter() - t0


async def pair_async(c: Any, res: str) -> Tuple[float, float]:
    t0 = time.perf_counter()
    st, d = await c.post(f"/v1/resources/{res}/acquire", BODY)
    assert st == 200, (st, d)
    t1 = time.perf_counter()
    st, d2 = await c.post(f"/v1/leases/{d['lease_id']}/release", b"{}")
    assert st == 200, (st, d2)
    return t1 - t0, time.perf_counter() - t0


def run_sync(cls: Any, base: str, key: str, res: str, seconds: float, n: int) -> Dict[str, Any]:
    c = cls(base, key)
    for _ in range(50):
        pair_sync(c, res)
    acq, pair = [], []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a, p = pair_sync(c, res)
        acq.append(a)
        pair.append(p)
    done = [0] * n
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        while time.perf_counter() < stop:
            pair_sync(c, res)
            done[i] += 1

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {"client": cls.name, "acquire_p50_ms": p50(acq), "pair_p50_ms": p50(pair),
            "concurrent": f"{n} threads", "pairs_per_sec": round(sum(done) / seconds)}


async def run_async(cls: Any, base: str, key: str, res: str, seconds: float, n: int) -> Dict[str, Any]:
    c = cls(base, key)
    for _ in range(50):
        await pair_async(c, res)
    acq, pair = [], []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a, p = await pair_async(c, res)
        acq.append(a)
        pair.append(p)
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await pair_async(c, res)
            done += 1

    await asyncio.gather(*(worker() for _ in range(n)))
    await c.close()
    return {"client": cls.name, "acquire_p50_ms": p50(acq), "pair_p50_ms": p50(pair),
            "concurrent": f"{n} tasks", "pairs_per_sec": round(done / seconds)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("leader")
    ap.add_argument("key")
    ap.add_argument("resource")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--tasks", type=int, default=32)
    a = ap.parse_args()
    for cls in SYNC:
        print(json.dumps(run_sync(cls, a.leader, a.key, a.resource, a.seconds, a.tasks)), flush=True)
    for acls in ASYNC:
        print(json.dumps(asyncio.run(run_async(acls, a.leader, a.key, a.resource, a.seconds, a.tasks))), flush=True)


if __name__ == "__main__":
    main()
