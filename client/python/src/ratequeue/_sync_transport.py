"""GENERATED from `_async_transport.py` by `client/python/scripts/unasync.py`: do not edit.

The blocking HTTP/1.1 connection pool of the SDK.
`_async_transport.py` says what it owns; `_sync_backend.py` holds what the blocking flavour does
differently.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

from ._sync_backend import SyncSlotWaiter, SyncSocket, current_loop
from ._http import (
    HeaderCache,
    PoolTimeout,
    ReadError,
    Request,
    Response,
    ResponseParser,
    Timeouts,
    WriteError,
    encode_request,
    split_url,
)
from ._net import fork_generation, track

__all__ = ["SyncConnectionPool"]


class SyncConnectionPool:
    """Keep-alive connections per node, at most `connections_max` open at once and at most
    `keepalive_max` kept idle; `https://` ones use the TLS context `tls` (default: the
    system's trust store, `_net.tls_context()`)."""

    def __init__(
        self, connections_max: int = 1000, keepalive_max: int = 100, tls: Optional[ssl.SSLContext] = None
    ) -> None:
        self._connections_max = connections_max
        self._tls = tls
        self._keepalive_max = keepalive_max
        self._lock = threading.Lock()
        self._idle: Dict[Tuple[str, str, int], List[SyncSocket]] = {}
        self._idle_count = 0
        #: Connections open: idle ones plus those carrying a request (or connecting).
        self._open = 0
        self._waiters: Deque[SyncSlotWaiter] = deque()
        self._fork_generation = fork_generation()
        self._closed = False
        self._headers = HeaderCache()
        track(self)

    @property
    def connections(self) -> int:
        """Connections open now (idle and busy)."""
        return self._open

    def handle_request(self, request: Request) -> Response:
        """Send `request` and return its response, or raise a `TransportError`."""
        origin, target = split_url(request.url)
        data = encode_request(
            request.method, target, origin.netloc, request.headers, request.content, self._headers.encode(request.headers)
        )
        t = request.timeouts
        for _ in range(2):
            conn, reused = self._checkout(origin.scheme, origin.host, origin.port, t)
            parser = ResponseParser(request.method)
            done = False
            try:
                conn.send_all(data, time.monotonic() + t.write)
                deadline = time.monotonic() + t.read
                while parser.response is None:
                    chunk = conn.recv(deadline)
                    if chunk:
                        parser.feed(chunk)
                    else:
                        parser.eof()
                done = True
            except (ReadError, WriteError):
                if reused and not parser.started:
                    continue  # the server had closed this idle connection: use a fresh one
                raise
            finally:
                self._checkin(conn, keep=done and parser.keep_alive)
            assert parser.response is not None
            return parser.response
        raise AssertionError("unreachable: the second attempt uses a fresh connection")

    def _checkout(self, scheme: str, host: str, port: int, t: Timeouts) -> Tuple[SyncSocket, bool]:
        """An idle connection to the node if one is still open, else a new one (waiting for
        room under `connections_max` at most `t.pool` seconds)."""
        key = (scheme, host, port)
        give_up = time.monotonic() + t.pool
        here = current_loop()
        while True:
            self._after_fork_check()
            stale: List[SyncSocket] = []
            waiter: Optional[SyncSlotWaiter] = None
            found: Optional[SyncSocket] = None
            with self._lock:
                if self._closed:
                    raise RuntimeError("the ratequeue client is closed")
                idle = self._idle.get(key, [])
                while found is None:
                    # The most recently used connection this loop already watches, else
                    # the most recent one no live loop watches (another thread's loop
                    # keeps its own).
                    pick = -1
                    for i in range(len(idle) - 1, -1, -1):
                        affinity = idle[i].affinity(here)
                        if affinity == 2:
                            pick = i
                            break
                        if affinity == 1 and pick < 0:
                            pick = i
                            if here is None:
                                break  # no loop here (blocking flavour): none can be better
                    if pick < 0:
                        break
                    conn = idle.pop(pick)
                    self._idle_count -= 1
                    if conn.idle_ok():
                        found = conn
                    else:
                        stale.append(conn)
                        self._open -= 1
                if found is None:
                    if self._open >= self._connections_max:
                        # Full: make room by closing an idle connection (to another node,
                        # or one another loop watches: it is closed by that loop).
                        for other in self._idle.values():
                            if other:
                                stale.append(other.pop())
                                self._idle_count -= 1
                                self._open -= 1
                                break
                    if self._open < self._connections_max:
                        self._open += 1
                    else:
                        waiter = SyncSlotWaiter()
                        self._waiters.append(waiter)
            for conn in stale:
                conn.close()
            if found is not None:
                return found, True
            if waiter is None:
                break
            if not waiter.wait(give_up):
                with self._lock:
                    queued = waiter in self._waiters
                    if queued:
                        self._waiters.remove(waiter)
                if queued:  # else it was woken just now: look again
                    raise PoolTimeout(f"all {self._connections_max} connections stayed busy for {t.pool:g} s")
        try:
            conn = SyncSocket.connect(scheme, host, port, t.connect, self._tls)
        except BaseException:
            self._slot_freed()
            raise
        return conn, False

    def _checkin(self, conn: SyncSocket, keep: bool) -> None:
        key = (conn.scheme, conn.host, conn.port)
        waiter: Optional[SyncSlotWaiter] = None
        with self._lock:
            kept = keep and not self._closed and self._fork_generation == fork_generation() and self._idle_count < self._keepalive_max
            if kept:
                conn.park()
                self._idle.setdefault(key, []).append(conn)
                self._idle_count += 1
                # A waiter for another node can now close this idle one to make room.
                waiter = self._waiters.popleft() if self._waiters else None
        if not kept:
            conn.close()
            self._slot_freed()
        elif waiter is not None:
            waiter.wake()

    def _slot_freed(self) -> None:
        with self._lock:
            self._open -= 1
            waiter = self._waiters.popleft() if self._waiters else None
        if waiter is not None:
            waiter.wake()

    def _after_fork_check(self) -> None:
        if self._fork_generation != fork_generation():
            self._after_fork()

    def _after_fork(self) -> None:
        """In a forked child: the connections are the parent's. Drop them without closing
        the connections themselves, and start over with a fresh lock."""
        self._lock = threading.Lock()
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.forget()
        self._idle_count = 0
        self._open = 0
        self._waiters = deque()
        self._fork_generation = fork_generation()

    def close(self) -> None:
        """Close the idle connections; busy ones close when their request ends. Further
        requests raise `RuntimeError`."""
        self._after_fork_check()
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
            conns = [c for cs in idle.values() for c in cs]
            self._idle_count = 0
            self._open -= len(conns)
            waiters, self._waiters = self._waiters, deque()
        for conn in conns:
            conn.close()
        for w in waiters:
            w.wake()

    def __del__(self) -> None:
        # A client dropped without close(): its idle connections go with it, quietly.
        if self._fork_generation == fork_generation():
            self.close_now()

    def close_now(self) -> None:
        """Close the idle connections from any context (at process exit, or when the pool
        is dropped without being closed)."""
        with self._lock:
            idle, self._idle = self._idle, {}
            self._idle_count = 0
        for conns in idle.values():
            for conn in conns:
                conn.close()
