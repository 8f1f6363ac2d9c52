"""What the blocking client (`_sync.py`, exported by `ratequeue`) does differently from the
asyncio one, besides `async`/`await`: the blocking twin of `_async_backend.py`.

Owns: one httpx connection pool per process and fork safety, a renewal daemon thread per
lease stopped through an event, and the (trivial) release on leaving a block. Never
touches asyncio. After `fork()` a child must not use the parent's sockets or locks: each
client notices the pid change (and `os.register_at_fork` resets it eagerly) and builds a
fresh `httpx.Client`; a lease inherited from the parent is neither renewed nor released by
the child.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any, Callable, List, Optional, Union

import httpx

from ._config import Timing
from ._lease import Stopped
from ._protocol import Send, default_headers

__all__ = ["SyncConnections", "SyncRenewal", "SyncAcquireMixin", "shielded"]


class SyncConnections:
    """Mixed into `ratequeue.Client`: the connection pool, sending, sleeping."""

    timing: Timing
    _api_key: Optional[str]
    _transport: Optional[httpx.BaseTransport]
    _sleep: Optional[Callable[[float], None]]

    def _init_connections(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._http: Optional[httpx.Client] = None
        self._closed = False
        _live_clients.add(self)

    def _build_http(self) -> httpx.Client:
        return httpx.Client(
            headers=default_headers(self._api_key),
            transport=self._transport,
            follow_redirects=False,
            limits=httpx.Limits(
                max_connections=self.timing.connections_max,
                max_keepalive_connections=self.timing.keepalive_max,
            ),
        )

    def _client(self) -> httpx.Client:
        if self._closed:
            raise RuntimeError("ratequeue.Client is closed")
        http = self._http
        if http is not None and self._pid == os.getpid():
            return http
        with self._lock:
            if self._pid != os.getpid():
                self._reset_after_fork()
            if self._http is None:
                self._http = self._build_http()
            return self._http

    def _reset_after_fork(self) -> None:
        """In a forked child: drop (never close) the parent's connections, which the child
        shares with it, and start over with fresh locks."""
        self._pid = os.getpid()
        self._http = None
        self._lock = threading.Lock()

    def _close_connections(self) -> None:
        with self._lock:
            self._closed = True
            http, self._http = self._http, None
        if http is not None and self._pid == os.getpid():
            http.close()

    def _send(self, action: Send) -> Union[httpx.Response, httpx.TransportError]:
        try:
            return self._client().request(action.method, action.url, json=action.body, timeout=action.timeout)
        except httpx.TransportError as e:
            return e

    def _pause(self, seconds: float, stop: Optional[threading.Event]) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
            if stop is not None and stop.is_set():
                raise Stopped()
        elif stop is not None:
            if stop.wait(seconds):
                raise Stopped()
        else:
            time.sleep(seconds)


class SyncRenewal:
    """Mixed into `ratequeue.Lease`: the renewal runs in a daemon thread until its stop
    event is set."""

    id: str
    _timing: Timing

    def _renew_loop(self) -> None:
        raise NotImplementedError

    def _init_renewal(self) -> None:
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _start_renewal(self) -> None:
        t = threading.Thread(target=self._renew_loop, name=f"ratequeue-renew-{self.id}", daemon=True)
        self._thread = t
        t.start()

    @property
    def renewing(self) -> bool:
        """Whether the renewal thread is still running."""
        t = self._thread
        return t is not None and t.is_alive()

    def _renewal_wait(self, interval: float) -> bool:
        """Wait until the next renewal is due; False once the renewal is stopped."""
        return not self._stop.wait(interval)

    def _renewal_stop(self) -> Optional[threading.Event]:
        return self._stop

    def _stop_renewal(self) -> None:
        self._stop.set()

    def _join_renewal(self) -> None:
        t = self._thread
        if t is not None and t is not threading.current_thread():
            # The thread sees the stop at its next wait or between retries; a renew
            # already on the wire finishes first (bounded by its timeouts).
            t.join(self._timing.request_timeout_s + self._timing.connect_timeout_s)


class SyncAcquireMixin:
    """Mixed into `ratequeue.AcquireContext`: nothing; a blocking acquire without a block
    is `client.acquire_lease(...)`."""


def shielded(fn: Callable[..., None], *args: Any) -> None:
    """Run the release on leaving a block: a blocking call cannot be cancelled midway."""
    fn(*args)


_live_clients: "weakref.WeakSet[SyncConnections]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    clients: List[SyncConnections] = list(_live_clients)
    for c in clients:
        c._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
