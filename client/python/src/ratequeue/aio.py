"""The asyncio API: `import ratequeue.aio as rq`.

    async with rq.acquire("openai-gpt4", load=2000, priority=100, lane="user-facing") as lease:
        ...

Owns: the async driver of `_protocol.plan`, a renewal task per held lease, and release on
exit that survives the task's cancellation (it is shielded). Never blocks the event loop.
An `aio.Client` keeps one connection pool per event loop, so one client (and the module's
default client) works under repeated `asyncio.run` calls and with loops in several threads.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import weakref
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Dict,
    Generator,
    Optional,
    Sequence,
    Set,
    Tuple,
    Type,
    Union,
)

import httpx

from ._config import TTL_MS_MAX, TTL_MS_MIN, Timing, check_load, resolve_api_key, resolve_urls, seconds_to_ms
from ._decorator import current_lease, limited
from ._errors import (
    Forbidden,
    InvalidRequest,
    LeaseLost,
    LoadExceedsLimit,
    QueueFull,
    RatequeueError,
    Rejected,
    ResourceNotFound,
    Unauthorized,
    Unavailable,
    WaitTimeout,
    WouldBlock,
)
from ._lease import LeaseBase, exit_policy, log, pop_current, presumed_lost, push_current
from ._protocol import (
    AcquireArgs,
    CallSpec,
    Grant,
    Json,
    Limit,
    Nodes,
    Sleep,
    acquire_spec,
    parse_grant,
    parse_release,
    parse_renewal,
    plan,
    release_spec,
    renew_spec,
)
from ._version import __version__

if TYPE_CHECKING:
    from ._lease import CurrentToken

__all__ = [
    "Client",
    "Lease",
    "AcquireContext",
    "acquire",
    "limited",
    "current_lease",
    "Timing",
    "Limit",
    "RatequeueError",
    "Rejected",
    "QueueFull",
    "WaitTimeout",
    "WouldBlock",
    "LoadExceedsLimit",
    "InvalidRequest",
    "Unauthorized",
    "Forbidden",
    "ResourceNotFound",
    "LeaseLost",
    "Unavailable",
]

#: Connection pools one client keeps for distinct live event loops.
POOLS_MAX = 64

#: Releases running after their `async with` was cancelled again: held so they finish.
_background: Set["asyncio.Future[Any]"] = set()


class Client:
    """An asyncio client of one ratequeue cluster; see `ratequeue.Client` for the
    behaviour. `transport` must be an `httpx.AsyncBaseTransport`; `sleep` a coroutine
    function."""

    def __init__(
        self,
        urls: Union[str, Sequence[str], None] = None,
        api_key: Optional[str] = None,
        *,
        timing: Optional[Timing] = None,
        transport: Optional[httpx.AsyncBaseTransport] = None,
        clock: Optional[Callable[[], float]] = None,
        sleep: Optional[Callable[[float], Awaitable[None]]] = None,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.urls: Tuple[str, ...] = tuple(resolve_urls(urls))
        self._api_key = resolve_api_key(api_key)
        self.timing = timing or Timing()
        self._transport = transport
        self._clock = clock or time.monotonic
        self._sleep = sleep or asyncio.sleep
        self._rng = rng or random.Random()
        self._nodes = Nodes(self.urls, self._rng)
        # One connection pool per event loop (a pool cannot move between loops), keyed by
        # id(loop) with a weak reference to tell a recycled id from the same loop. Pools of
        # closed or collected loops are dropped on the next use.
        self._pools: Dict[int, Tuple["weakref.ref[asyncio.AbstractEventLoop]", httpx.AsyncClient]] = {}
        self._pid = os.getpid()
        self._closed = False

    @property
    def leader(self) -> Optional[str]:
        """The cached leader base URL, if one is known."""
        return self._nodes.leader

    def _build_http(self) -> httpx.AsyncClient:
        headers = {"user-agent": f"ratequeue-python/{__version__}"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return httpx.AsyncClient(
            headers=headers,
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

    async def aclose(self) -> None:
        """Close the running loop's connections and refuse further use. Pools of other
        loops are dropped."""
        self._closed = True
        pools, self._pools = self._pools, {}
        loop = asyncio.get_running_loop()
        entry = pools.get(id(loop))
        if entry is not None and entry[0]() is loop:
            await entry[1].aclose()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    async def _call(self, spec: CallSpec) -> Json:
        gen = plan(spec, self._nodes, self.timing, self._rng, self._clock)
        try:
            action = next(gen)
            while True:
                if isinstance(action, Sleep):
                    await self._sleep(action.seconds)
                    feedback: Union[httpx.Response, httpx.TransportError, None] = None
                else:
                    try:
                        feedback = await self._client().request(
                            action.method, action.url, json=action.body, timeout=action.timeout
                        )
                    except httpx.TransportError as e:
                        feedback = e
                action = gen.send(feedback)
        except StopIteration as done:
            result: Json = done.value
            return result
        finally:
            gen.close()

    def acquire(
        self,
        resource: str,
        *,
        load: int = 1,
        priority: int = 10,
        lane: Optional[str] = None,
        ttl: Optional[float] = None,
        timeout: Optional[float] = None,
        request_id: Optional[str] = None,
    ) -> "AcquireContext":
        """`async with client.acquire(...) as lease:`; or `lease = await client.acquire(...)`
        and later `await lease.release()`."""
        args = AcquireArgs.build(
            resource,
            load=load,
            priority=priority,
            lane=lane,
            ttl=ttl,
            timeout=timeout,
            request_id=request_id,
            timing=self.timing,
        )
        return AcquireContext(self, args)

    async def acquire_lease(
        self,
        resource: str,
        *,
        load: int = 1,
        priority: int = 10,
        lane: Optional[str] = None,
        ttl: Optional[float] = None,
        timeout: Optional[float] = None,
        request_id: Optional[str] = None,
    ) -> "Lease":
        return await self.acquire(
            resource, load=load, priority=priority, lane=lane, ttl=ttl, timeout=timeout, request_id=request_id
        )

    async def _acquire_args(self, args: AcquireArgs) -> "Lease":
        sent_at = self._clock()
        data = await self._call(acquire_spec(args, self.timing, self._clock))
        # No await between the response and the lease owning it: a cancellation cannot
        # strand a granted slot here (the server releases one cancelled in flight).
        lease = Lease(self, parse_grant(data), args.request_id, sent_at)
        lease._start_renewal()
        return lease

    async def release(self, lease_id: str, actual_load: Optional[int] = None) -> str:
        if actual_load is not None:
            check_load("actual_load", actual_load)
        deadline = self._clock() + self.timing.release_budget_s
        return parse_release(await self._call(release_spec(lease_id, actual_load, self.timing, deadline)))

    async def renew(self, lease_id: str, ttl: Optional[float] = None) -> Tuple[int, int]:
        ttl_ms = None if ttl is None else seconds_to_ms("ttl", ttl, TTL_MS_MIN, TTL_MS_MAX)
        deadline = self._clock() + self.timing.request_timeout_s
        return parse_renewal(await self._call(renew_spec(lease_id, ttl_ms, self.timing, deadline)))


class Lease(LeaseBase):
    """A held slot (asyncio). Renews itself from a task until released."""

    def __init__(self, client: Client, grant: Grant, request_id: str, granted_at: float) -> None:
        super().__init__(grant, request_id, client.timing, granted_at)
        self._rq = client
        self._task: Optional["asyncio.Task[None]"] = None

    def _start_renewal(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._renew_loop())

    @property
    def renewing(self) -> bool:
        t = self._task
        return t is not None and not t.done()

    async def _renew_loop(self) -> None:
        client = self._rq
        interval = self._renew_interval()
        while True:
            await asyncio.sleep(interval)
            sent_at = client._clock()
            try:
                data = await client._call(renew_spec(self.id, None, client.timing, self._expiry()))
                ttl_ms, token = parse_renewal(data)
            except LeaseLost as e:
                self._mark_lost(e)
                return
            except RatequeueError as e:
                if client._clock() >= self._expiry():
                    self._mark_lost(presumed_lost(self, e))
                    return
                log.info("ratequeue renewal of %s failed, retrying: %s", self.id, e)
                interval = min(self._renew_interval(), max(0.0, self._expiry() - client._clock()) / 2)
                continue
            except Exception as e:  # noqa: BLE001 - a renewal bug must not pass silently
                log.exception("ratequeue renewal of %s crashed", self.id)
                self._mark_lost(presumed_lost(self, e))
                return
            self._renewed(sent_at, ttl_ms, token)
            interval = self._renew_interval()

    async def _stop_renewal(self) -> None:
        t = self._task
        if t is not None and not t.done():
            t.cancel()
            # asyncio.wait does not raise the renewal task's CancelledError, but does
            # raise ours if we are cancelled meanwhile.
            await asyncio.wait({t})

    async def release(self) -> str:
        """Stop renewing and release, reporting `actual_load` if set. Idempotent.
        Raises `LeaseLost` if the lease was lost."""
        if self._forked_copy():
            self._released = True
            return "not_owner"
        if not self._begin_release():
            return "already_released"
        await self._stop_renewal()
        try:
            state = await self._rq.release(self.id, self._actual_load)
        except LeaseLost as e:
            with self._state_lock:
                if self._lost is None:
                    if e.lease_id is None:
                        e.lease_id = self.id
                    self._lost = e
            raise
        lost = self._lost
        if lost is not None:
            raise lost
        return state

    async def __aenter__(self) -> "Lease":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await _shielded_exit(self, exc is not None)


async def _exit(lease: Lease, body_raised: bool) -> None:
    try:
        await lease.release()
    except LeaseLost:
        pass  # decided below from lease.lost_error
    except RatequeueError as e:
        log.warning("ratequeue could not release lease %s (it lapses at its TTL): %s", lease.id, e)
    err = exit_policy(lease, body_raised)
    if err is not None:
        raise err


def _retrieve(fut: "asyncio.Future[Any]") -> None:
    _background.discard(fut)
    if not fut.cancelled():
        exc = fut.exception()
        if exc is not None and not isinstance(exc, LeaseLost):
            log.warning("ratequeue background release failed: %r", exc)


async def _shielded_exit(lease: Lease, body_raised: bool) -> None:
    """Release even if the task is cancelled (again) meanwhile: the release then goes on
    in the background and the cancellation propagates."""
    fut = asyncio.ensure_future(_exit(lease, body_raised))
    _background.add(fut)
    fut.add_done_callback(_retrieve)
    await asyncio.shield(fut)


class AcquireContext:
    """What `acquire(...)` returns: an async context manager yielding the `Lease`, also
    awaitable for a lease released by hand."""

    def __init__(self, client: Client, args: AcquireArgs) -> None:
        self._rq = client
        self._args = args
        self._lease: Optional[Lease] = None
        self._token: Optional[CurrentToken] = None

    @property
    def request_id(self) -> str:
        return self._args.request_id

    def __await__(self) -> Generator[Any, None, Lease]:
        return self._rq._acquire_args(self._args).__await__()

    async def __aenter__(self) -> Lease:
        if self._lease is not None:
            raise RuntimeError("this acquire(...) context is already in use")
        self._lease = await self._rq._acquire_args(self._args)
        self._token = push_current(self._lease)
        return self._lease

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        lease, self._lease = self._lease, None
        pop_current(self._token)
        self._token = None
        if lease is not None:
            await _shielded_exit(lease, exc is not None)


# --- module-level default clients --------------------------------------------------------

_defaults: Dict[Tuple[Tuple[str, ...], Optional[str]], Client] = {}
#: Distinct (urls, api_key) pairs kept; beyond that the oldest default client is dropped.
DEFAULT_CLIENTS_MAX = 32


def default_client(url: Union[str, Sequence[str], None] = None, api_key: Optional[str] = None) -> Client:
    """The process-wide async client for these URLs and key (from the environment when
    None). It keeps one connection pool per event loop, so it works under any number of
    `asyncio.run` calls and loops in several threads."""
    key = (tuple(resolve_urls(url)), resolve_api_key(api_key))
    c = _defaults.get(key)
    if c is None:
        if len(_defaults) >= DEFAULT_CLIENTS_MAX:
            _defaults.pop(next(iter(_defaults)), None)
        c = Client(list(key[0]), key[1])
        c = _defaults.setdefault(key, c)
    return c


def acquire(
    resource: str,
    *,
    load: int = 1,
    priority: int = 10,
    lane: Optional[str] = None,
    ttl: Optional[float] = None,
    timeout: Optional[float] = None,
    api_key: Optional[str] = None,
    url: Union[str, Sequence[str], None] = None,
    request_id: Optional[str] = None,
    client: Optional[Client] = None,
) -> AcquireContext:
    """`async with ratequeue.aio.acquire("openai-gpt4", load=n) as lease:` using the
    default client for `url` (default RATEQUEUE_URL) and `api_key` (default
    RATEQUEUE_API_KEY)."""
    c = client if client is not None else default_client(url, api_key)
    return c.acquire(
        resource, load=load, priority=priority, lane=lane, ttl=ttl, timeout=timeout, request_id=request_id
    )
