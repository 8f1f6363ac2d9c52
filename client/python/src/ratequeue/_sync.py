"""GENERATED from `_async.py` by `client/python/scripts/unasync.py`: do not edit.

The blocking client of `ratequeue`: `Client`, `Lease`, `AcquireContext`, `acquire` and
`default_client`, for threads, Celery prefork workers and any code without an event loop.
`_async.py` says what it owns; `_sync_backend.py` holds what the blocking flavour does
differently.
"""

from __future__ import annotations

import os
import random
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Tuple, Type, Union

from ._sync_backend import SyncAcquireMixin, SyncProgressWatch, SyncRenewal, pause, shielded
from ._sync_transport import SyncConnectionPool
from ._config import (
    TTL_MS_MAX,
    TTL_MS_MIN,
    PathArg,
    Timing,
    TLSFiles,
    check_holder_label,
    check_load,
    resolve_api_key,
    resolve_holder,
    resolve_tls,
    resolve_urls,
    seconds_to_ms,
    this_process_holder,
)
from ._errors import LeaseLost, RatequeueError
from ._http import SyncTransport, Request, Response, TransportError, encode_json
from ._lease import LeaseBase, Stopped, exit_policy, log, pop_current, presumed_lost, push_current
from ._net import tls_context
from ._protocol import (
    AcquireArgs,
    CallSpec,
    Grant,
    Json,
    Nodes,
    Progress,
    ProviderReport,
    Reported,
    Send,
    Sleep,
    acquire_spec,
    default_headers,
    parse_grant,
    parse_progress,
    parse_release,
    parse_renewal,
    parse_reported,
    plan,
    progress_spec,
    release_spec,
    renew_spec,
    report_spec,
)

if TYPE_CHECKING:
    from ._lease import CurrentToken

#: A progress callback: called with where a waiting acquire stands.
OnProgress = Callable[[Progress], Any]
#: Bounds of `progress_interval` (seconds between two progress polls of one acquire).
PROGRESS_INTERVAL_MIN_S = 0.1
PROGRESS_INTERVAL_MAX_S = 60.0


def _check_interval(interval: float) -> float:
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        raise TypeError(f"progress_interval must be a number of seconds, not {interval!r}")
    if not PROGRESS_INTERVAL_MIN_S <= interval <= PROGRESS_INTERVAL_MAX_S:
        raise ValueError(
            f"progress_interval must be in {PROGRESS_INTERVAL_MIN_S}..{PROGRESS_INTERVAL_MAX_S} s, not {interval!r}"
        )
    return float(interval)

__all__ = ["Client", "Lease", "AcquireContext", "acquire", "default_client"]


class Client:
    """A client of one ratequeue cluster, safe to share between tasks, threads and (it
    reconnects in the child) forked processes.

    `urls` is a list or a comma-separated string of node base URLs (default RATEQUEUE_URL);
    `api_key` defaults to RATEQUEUE_API_KEY. For `https://` nodes, `ca_file` (default
    RATEQUEUE_CA_FILE) is the PEM bundle of the CAs to trust instead of the system's, and
    `client_cert` + `client_key` (default RATEQUEUE_CLIENT_CERT, RATEQUEUE_CLIENT_KEY) a
    certificate to present to nodes that require one; the files are read here (a bad one
    is a ValueError naming it). `holder` labels this client's leases in the dashboard's
    lease list (default RATEQUEUE_HOLDER): each acquire sends `<holder>@<host>:<pid>`, or
    `<host>:<pid>` without one. Connections are pooled; the leader is cached
    and redirects from followers are followed with method and body preserved; transient
    failures are retried with backoff and jitter, resending the same request_id.

    `timing`, `transport` (for example `ratequeue.MockTransport(handler)`), `clock`,
    `sleep` and `rng` exist so tests can inject time and the network.
    """

    def __init__(
        self,
        urls: Union[str, Sequence[str], None] = None,
        api_key: Optional[str] = None,
        *,
        ca_file: Optional[PathArg] = None,
        client_cert: Optional[PathArg] = None,
        client_key: Optional[PathArg] = None,
        holder: Optional[str] = None,
        timing: Optional[Timing] = None,
        transport: Optional[SyncTransport] = None,
        clock: Optional[Callable[[], float]] = None,
        sleep: Optional[Callable[[float], None]] = None,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.urls: Tuple[str, ...] = tuple(resolve_urls(urls))
        self._api_key = resolve_api_key(api_key)
        #: The label of this client's leases (the `holder` argument, else RATEQUEUE_HOLDER).
        self.holder: Optional[str] = resolve_holder(holder)
        self.timing = timing or Timing()
        #: The TLS files in use (`ratequeue.TLSFiles`, from the arguments or environment).
        self.tls = resolve_tls(ca_file, client_cert, client_key)
        self._transport: SyncTransport = transport or SyncConnectionPool(
            self.timing.connections_max,
            self.timing.keepalive_max,
            None if self.tls.is_default else tls_context(self.tls),
        )
        self._headers = {**default_headers(self._api_key), "content-type": "application/json"}
        self._clock = clock or time.monotonic
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._nodes = Nodes(self.urls, self._rng)
        self._closed = False

    @property
    def leader(self) -> Optional[str]:
        """The cached leader base URL, if one is known."""
        return self._nodes.leader

    def close(self) -> None:
        """Close pooled connections and refuse further use. Leases still held keep their
        own reference and fail to renew; release them first."""
        self._closed = True
        self._transport.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    # --- the driver -------------------------------------------------------------------

    def _call(self, spec: CallSpec, stop: Optional[threading.Event] = None) -> Json:
        """Run one call's plan. `stop` (blocking flavour only) abandons it with `Stopped`
        between attempts; in asyncio the task is cancelled instead."""
        gen = plan(spec, self._nodes, self.timing, self._rng, self._clock)
        try:
            action = next(gen)
            while True:
                if isinstance(action, Sleep):
                    pause(self._sleep, action.seconds, stop)
                    feedback: Union[Response, TransportError, None] = None
                else:
                    if stop is not None and stop.is_set():
                        raise Stopped()
                    feedback = self._send(action)
                action = gen.send(feedback)
        except StopIteration as done:
            result: Json = done.value
            return result
        finally:
            gen.close()

    def _send(self, action: Send) -> Union[Response, TransportError]:
        if self._closed:
            raise RuntimeError("the ratequeue client is closed")
        content = b"" if action.body is None else encode_json(action.body).encode()
        request = Request(action.method, action.url, self._headers, content, action.timeout)
        try:
            return self._transport.handle_request(request)
        except TransportError as e:
            return e

    # --- the API ----------------------------------------------------------------------

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
        holder: Optional[str] = None,
        on_progress: Optional[OnProgress] = None,
        progress_interval: float = 1.0,
    ) -> "AcquireContext":
        """`with client.acquire("openai-gpt4", load=2000) as lease:` waits in the
        queue (at most `timeout` seconds; 0 = try once), holds the slot in the block, renews
        it in the background, and releases it on exit (reporting `lease.set_actual_load`).
        `holder` labels this lease instead of the client's `holder`. `on_progress(p)`, if
        given, is called with a `ratequeue.Progress` every `progress_interval` seconds
        (0.1 to 60) while the acquire waits in the queue (in the blocking flavour from a
        thread of its own); never after the acquire has returned or raised. A callback
        that raises is logged and not called again."""
        interval = _check_interval(progress_interval)
        label = self.holder if holder is None else check_holder_label(holder)
        args = AcquireArgs.build(
            resource,
            load=load,
            priority=priority,
            lane=lane,
            ttl=ttl,
            timeout=timeout,
            request_id=request_id,
            timing=self.timing,
            holder=this_process_holder(label),
        )
        return AcquireContext(self, args, on_progress, interval)

    def acquire_lease(
        self,
        resource: str,
        *,
        load: int = 1,
        priority: int = 10,
        lane: Optional[str] = None,
        ttl: Optional[float] = None,
        timeout: Optional[float] = None,
        request_id: Optional[str] = None,
        holder: Optional[str] = None,
        on_progress: Optional[OnProgress] = None,
        progress_interval: float = 1.0,
    ) -> "Lease":
        """Acquire and return the lease, for use without a block: it renews itself until
        `lease.release()` (or use it as a context manager)."""
        return self.acquire(
            resource,
            load=load,
            priority=priority,
            lane=lane,
            ttl=ttl,
            timeout=timeout,
            request_id=request_id,
            holder=holder,
            on_progress=on_progress,
            progress_interval=progress_interval,
        )._acquire()

    def _acquire_args(
        self, args: AcquireArgs, on_progress: Optional[OnProgress] = None, interval: float = 1.0
    ) -> "Lease":
        sent_at = self._clock()
        watch: Optional[SyncProgressWatch] = None
        if on_progress is not None:

            def poll(stop: Optional[threading.Event]) -> Optional[Progress]:
                return self._progress(args.resource, args.request_id, interval, stop)

            watch = SyncProgressWatch(poll, on_progress, interval)
        try:
            data = self._call(acquire_spec(args, self.timing, self._clock))
        finally:
            if watch is not None:
                watch.stop()
        # Nothing is awaited between the response and the lease owning it: a cancellation cannot
        # strand a granted slot here (the server releases one cancelled in flight).
        lease = Lease(self, parse_grant(data), args.request_id, sent_at)
        lease._start_renewal()
        return lease

    def release(self, lease_id: str, actual_load: Optional[int] = None) -> str:
        """Release a lease by id; returns `released` or `already_released`. Raises
        `LeaseLost` when the lease had expired."""
        if actual_load is not None:
            check_load("actual_load", actual_load)
        deadline = self._clock() + self.timing.release_budget_s
        return parse_release(self._call(release_spec(lease_id, actual_load, self.timing, deadline)))

    def report(self, lease_id: str, report: ProviderReport) -> Reported:
        """Tell the cluster what the provider answered the holder of `lease_id` (its
        remaining budget, resets, a 429): the resource's feedback policy lowers its
        budget to the provider's figures and pauses grants after a 429. Raises
        `LeaseLost` when the lease has ended."""
        deadline = self._clock() + self.timing.request_timeout_s
        return parse_reported(self._call(report_spec(lease_id, report, self.timing, deadline)))

    def waiter_progress(self, resource: str, request_id: str) -> Optional[Progress]:
        """Where this client's acquire with `request_id` stands in the leader's queue;
        None once it no longer waits (granted, refused, gone) or if it never queued."""
        return self._progress(resource, request_id, self.timing.request_timeout_s, None)

    def _progress(
        self, resource: str, request_id: str, budget: float, stop: Optional[threading.Event]
    ) -> Optional[Progress]:
        deadline = self._clock() + min(budget, self.timing.request_timeout_s)
        try:
            data = self._call(progress_spec(resource, request_id, self.timing, deadline), stop=stop)
        except RatequeueError as e:
            if e.code == "waiter_not_found":
                return None
            raise
        return parse_progress(data)

    def renew(self, lease_id: str, ttl: Optional[float] = None) -> Tuple[int, int]:
        """Renew a lease by id; returns (ttl_ms, fencing_token). Raises `LeaseLost`."""
        ttl_ms = None if ttl is None else seconds_to_ms("ttl", ttl, TTL_MS_MIN, TTL_MS_MAX)
        deadline = self._clock() + self.timing.request_timeout_s
        return parse_renewal(self._call(renew_spec(lease_id, ttl_ms, self.timing, deadline)))


class Lease(LeaseBase, SyncRenewal):
    """A held slot. Renews itself in the background until released."""

    def __init__(self, client: Client, grant: Grant, request_id: str, granted_at: float) -> None:
        super().__init__(grant, request_id, client.timing, granted_at)
        self._rq = client
        self._init_renewal()

    def _renew_loop(self) -> None:
        client = self._rq
        interval = self._renew_interval()
        while self._renewal_wait(interval):
            sent_at = client._clock()
            try:
                data = client._call(
                    renew_spec(self.id, None, client.timing, self._expiry()), stop=self._renewal_stop()
                )
                ttl_ms, token = parse_renewal(data)
            except Stopped:
                return
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

    def report(self, report: Optional[ProviderReport] = None, **fields: Any) -> Reported:
        """Report what the provider answered this lease's call: a `ProviderReport`
        (e.g. from `ratequeue.providers.openai_report(response)`) or its fields
        (`remaining_tokens=...`, `rate_limited=True`, ...)."""
        return self._rq.report(self.id, report if report is not None else ProviderReport(**fields))

    def release(self) -> str:
        """Stop renewing and release, reporting `actual_load` if set. Idempotent. Returns
        one of `RELEASE_STATES`: `released`, `already_released`, or `not_owner` in a forked
        child (only the process that acquired a lease releases it). Raises `LeaseLost` if
        the lease was lost; other failures are raised too (the slot then lapses at its
        TTL)."""
        if self._forked_copy():
            # Only the process that acquired the lease gives it back.
            self._released = True
            return "not_owner"
        if not self._begin_release():
            return "already_released"
        return self._give_back()

    def _give_back(self) -> str:
        """What `release` does once it has marked the lease released: stop the renewal,
        release on the cluster. Safe to run again (`_resume_release`): both steps are
        idempotent."""
        self._stop_renewal()
        try:
            state = self._rq.release(self.id, self._actual_load)
        except LeaseLost as e:
            with self._state_lock:
                if self._lost is None:
                    if e.lease_id is None:
                        e.lease_id = self.id
                    self._lost = e
            raise
        finally:
            self._join_renewal()
        lost = self._lost
        if lost is not None:
            raise lost
        return state

    def __enter__(self) -> "Lease":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        shielded(_exit, _resume_release, self, exc is not None)


def _exit(lease: Lease, body_raised: bool) -> None:
    try:
        lease.release()
    except LeaseLost:
        pass  # decided below from lease.lost_error
    except RatequeueError as e:
        log.warning("ratequeue could not release lease %s (it lapses at its TTL): %s", lease.id, e)
    err = exit_policy(lease, body_raised)
    if err is not None:
        raise err


def _resume_release(lease: Lease) -> None:
    """The rest of `_exit` after the task was cancelled while its release ran (asyncio
    only: `shielded` runs it in the background). The lease is already marked released;
    the cluster is asked again, which is idempotent by lease id."""
    try:
        lease._give_back()
    except LeaseLost:
        pass  # the block's task was cancelled: nobody is left to raise the loss to
    except RatequeueError as e:
        log.warning("ratequeue could not release lease %s (it lapses at its TTL): %s", lease.id, e)


class AcquireContext(SyncAcquireMixin):
    """What `acquire(...)` returns: a context manager yielding the `Lease`."""

    def __init__(
        self, client: Client, args: AcquireArgs, on_progress: Optional[OnProgress] = None, interval: float = 1.0
    ) -> None:
        self._rq = client
        self._args = args
        self._on_progress = on_progress
        self._interval = interval
        self._lease: Optional[Lease] = None
        self._token: Optional[CurrentToken] = None

    @property
    def request_id(self) -> str:
        return self._args.request_id

    def _acquire(self) -> Lease:
        return self._rq._acquire_args(self._args, self._on_progress, self._interval)

    def __enter__(self) -> Lease:
        if self._lease is not None:
            raise RuntimeError("this acquire(...) context is already in use")
        self._lease = self._acquire()
        self._token = push_current(self._lease)
        return self._lease

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        lease, self._lease = self._lease, None
        pop_current(self._token)
        self._token = None
        if lease is not None:
            shielded(_exit, _resume_release, lease, exc is not None)


# --- module-level default clients --------------------------------------------------------

_defaults: Dict[Tuple[Tuple[str, ...], Optional[str], TLSFiles, Optional[str]], Client] = {}
_defaults_lock = threading.Lock()
#: Distinct (urls, api_key) pairs kept; beyond that the oldest default client is dropped.
DEFAULT_CLIENTS_MAX = 32


def default_client(url: Union[str, Sequence[str], None] = None, api_key: Optional[str] = None) -> Client:
    """The process-wide client for these URLs and key (from the environment when None) and
    the TLS files and holder label of the environment (RATEQUEUE_CA_FILE,
    RATEQUEUE_CLIENT_CERT, RATEQUEUE_CLIENT_KEY, RATEQUEUE_HOLDER). It works in every thread, after a fork, and under any number of
    `asyncio.run` calls."""
    tls = resolve_tls()
    key = (tuple(resolve_urls(url)), resolve_api_key(api_key), tls, resolve_holder(None))
    with _defaults_lock:
        c = _defaults.get(key)
        if c is None:
            if len(_defaults) >= DEFAULT_CLIENTS_MAX:
                _defaults.pop(next(iter(_defaults)))
            c = Client(
                list(key[0]),
                key[1],
                ca_file=tls.ca_file,
                client_cert=tls.client_cert,
                client_key=tls.client_key,
                holder=key[3],
            )
            _defaults[key] = c
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
    holder: Optional[str] = None,
    on_progress: Optional[OnProgress] = None,
    progress_interval: float = 1.0,
) -> AcquireContext:
    """`with ratequeue.acquire("openai-gpt4", load=n) as lease:` using the
    default client for `url` (default RATEQUEUE_URL) and `api_key` (default
    RATEQUEUE_API_KEY)."""
    c = client if client is not None else default_client(url, api_key)
    return c.acquire(
        resource,
        load=load,
        priority=priority,
        lane=lane,
        ttl=ttl,
        timeout=timeout,
        request_id=request_id,
        holder=holder,
        on_progress=on_progress,
        progress_interval=progress_interval,
    )


def _after_fork_in_child() -> None:
    global _defaults_lock
    _defaults_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
