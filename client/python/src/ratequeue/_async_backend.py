"""What the asyncio client (`_async.py`, exported by `ratequeue.aio`) does differently from
the blocking one, besides `async`/`await`. `_sync_backend.py` is its blocking twin; the
generator maps each name here to the one there.

Owns: one httpx connection pool per event loop (a pool cannot move between loops, so one
client works under repeated `asyncio.run` calls and with loops in several threads), a
renewal task per lease, the awaitable `acquire(...)`, and shielding a release from the
task's cancellation. Never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any, Awaitable, Callable, Coroutine, Dict, Generator, Optional, Set, Tuple, Union

import httpx

from ._config import Timing
from ._errors import LeaseLost
from ._lease import log
from ._protocol import Send, default_headers

__all__ = ["AsyncConnections", "AsyncRenewal", "AsyncAcquireMixin", "shielded", "POOLS_MAX"]

#: Connection pools one client keeps for distinct live event loops.
POOLS_MAX = 64

#: Releases running after their `async with` was cancelled again: held so they finish.
_background: Set["asyncio.Future[Any]"] = set()


class AsyncConnections:
    """Mixed into `aio.Client`: connection pools, sending, sleeping."""

    timing: Timing
    _api_key: Optional[str]
    _transport: Optional[httpx.AsyncBaseTransport]
    _sleep: Optional[Callable[[float], Awaitable[None]]]

    def _init_connections(self) -> None:
        # One connection pool per event loop, keyed by id(loop) with a weak reference to
        # tell a recycled id from the same loop. Pools of closed or collected loops are
        # dropped on the next use.
        self._pools: Dict[int, Tuple["weakref.ref[asyncio.AbstractEventLoop]", httpx.AsyncClient]] = {}
        self._pid = os.getpid()
        self._closed = False

    def _build_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            headers=default_headers(self._api_key),
            transport=self._transport,
            follow_redirects=False,
            limits=httpx.Limits(
                max_connections=self.timing.connections_max,
                max_keepalive_connections=self.timing.keepalive_max,
            ),
        )

    def _client(self) -> httpx.AsyncClient:
        if self._closed:
            raise RuntimeError("ratequeue.aio.Client is closed")
        loop = asyncio.get_running_loop()
        if self._pid != os.getpid():
            # A forked child must not use the parent's sockets: drop (never close) them.
            self._pools = {}
            self._pid = os.getpid()
        entry = self._pools.get(id(loop))
        if entry is not None and entry[0]() is loop:
            return entry[1]
        for key, (ref, _) in list(self._pools.items()):
            other = ref()
            if other is None or other.is_closed():
                self._pools.pop(key, None)
        if len(self._pools) >= POOLS_MAX:
            self._pools.pop(next(iter(self._pools)), None)
        http = self._build_http()
        self._pools[id(loop)] = (weakref.ref(loop), http)
        return http

    async def _close_connections(self) -> None:
        """Close the running loop's connections and refuse further use. Pools of other
        loops are dropped."""
        self._closed = True
        pools, self._pools = self._pools, {}
        loop = asyncio.get_running_loop()
        entry = pools.get(id(loop))
        if entry is not None and entry[0]() is loop:
            await entry[1].aclose()

    async def _send(self, action: Send) -> Union[httpx.Response, httpx.TransportError]:
        try:
            return await self._client().request(action.method, action.url, json=action.body, timeout=action.timeout)
        except httpx.TransportError as e:
            return e

    async def _pause(self, seconds: float, stop: Optional[threading.Event]) -> None:
        # A renewal is stopped by cancelling its task, never through `stop`.
        await (self._sleep or asyncio.sleep)(seconds)


class AsyncRenewal:
    """Mixed into `aio.Lease`: the renewal runs as a task of the loop that acquired."""

    def _renew_loop(self) -> Coroutine[Any, Any, None]:
        raise NotImplementedError

    def _init_renewal(self) -> None:
        self._task: Optional["asyncio.Task[None]"] = None

    def _start_renewal(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._renew_loop())

    @property
    def renewing(self) -> bool:
        """Whether the renewal task is still running."""
        t = self._task
        return t is not None and not t.done()

    async def _renewal_wait(self, interval: float) -> bool:
        """Wait until the next renewal is due; False once the renewal is stopped (here the
        task is cancelled instead)."""
        await asyncio.sleep(interval)
        return True

    def _renewal_stop(self) -> Optional[threading.Event]:
        return None

    async def _stop_renewal(self) -> None:
        t = self._task
        if t is not None and not t.done():
            t.cancel()
            # asyncio.wait does not raise the renewal task's CancelledError, but does
            # raise ours if we are cancelled meanwhile.
            await asyncio.wait({t})

    def _join_renewal(self) -> None:
        """Nothing to join: `_stop_renewal` waited for the task."""


class AsyncAcquireMixin:
    """Mixed into `aio.AcquireContext`: `lease = await client.acquire(...)` acquires
    without a block (release it with `await lease.release()`)."""

    def _acquire(self) -> Coroutine[Any, Any, Any]:
        raise NotImplementedError

    def __await__(self) -> Generator[Any, None, Any]:
        return self._acquire().__await__()


def _retrieve(fut: "asyncio.Future[Any]") -> None:
    _background.discard(fut)
    if not fut.cancelled():
        exc = fut.exception()
        if exc is not None and not isinstance(exc, LeaseLost):
            log.warning("ratequeue background release failed: %r", exc)


async def shielded(fn: Callable[..., Awaitable[None]], *args: Any) -> None:
    """Run `fn(*args)` (the release on leaving a block) to the end even if the task is
    cancelled (again) meanwhile: it then goes on in the background and the cancellation
    propagates."""
    fut = asyncio.ensure_future(fn(*args))
    _background.add(fut)
    fut.add_done_callback(_retrieve)
    await asyncio.shield(fut)
