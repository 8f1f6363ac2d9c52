"""What the blocking client (`_sync.py`, `_sync_transport.py`; exported by `ratequeue`) does
differently from the asyncio one, besides `async`/`await`: the blocking twin of
`_async_backend.py`.

Owns: `SyncSocket` (a blocking socket with a timeout per operation), the wait for a free
pool slot, sleeping between attempts (abandoned when a renewal's stop event is set), a
renewal daemon thread per lease, and the (trivial) release on leaving a block. Never
touches asyncio.
"""

from __future__ import annotations

import heapq
import math
import os
import select
import socket
import ssl
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

from ._config import Timing
from ._http import Origin
from ._errors import RatequeueError
from ._lease import Stopped, log
from ._net import connect_failure, forget, idle_ok, io_failure, timed_out, tls_context, tune

__all__ = [
    "SyncSocket",
    "SyncSlotWaiter",
    "current_loop",
    "SyncRenewal",
    "SyncAcquireMixin",
    "SyncProgressWatch",
    "pause",
    "shielded",
]

#: Bytes read per receive call.
RECV_LEN = 65536
#: The shortest connect timeout tried (what is left of a call's budget may be less).
CONNECT_TIMEOUT_MIN_S = 0.001
#: An idle connection used this recently is reused without a readiness probe.
IDLE_PROBE_AFTER_S = 0.5


class SyncSocket:
    """One connection to a node (wrapped in TLS for `https://`).

    A plain-text connection is a non-blocking socket waited on with `poll`: a request
    costs one send, one poll and one recv. (A socket with a Python timeout polls before
    every operation and switches the descriptor's mode each time: seven system calls per
    request.) A TLS one keeps the Python timeout per operation."""

    def __init__(self, sock: socket.socket, origin: Origin) -> None:
        self._sock = sock
        self._origin = origin
        self.scheme, self.host, self.port = origin.scheme, origin.host, origin.port
        self._plain = not isinstance(sock, ssl.SSLSocket)
        #: A request was just sent and nothing read since.
        self._awaiting = False
        #: When the last answer was read (time.monotonic).
        self._used_at = 0.0
        self._poll_in: Optional[Any] = None
        self._poll_out: Optional[Any] = None
        if self._plain:
            sock.setblocking(False)
            if hasattr(select, "poll"):
                fd = sock.fileno()
                self._poll_in = select.poll()
                self._poll_in.register(fd, select.POLLIN)
                self._poll_out = select.poll()
                self._poll_out.register(fd, select.POLLOUT)

    @staticmethod
    def connect(
        scheme: str, host: str, port: int, timeout: float, tls: Optional[ssl.SSLContext] = None
    ) -> "SyncSocket":
        """A connection to the node, TLS-wrapped with `tls` (default `tls_context()`) for
        `https://`."""
        origin = Origin(scheme, host, port)
        # A zero timeout would make the socket non-blocking: the connect could not finish.
        timeout = max(timeout, CONNECT_TIMEOUT_MIN_S)
        try:
            sock = socket.create_connection((host, port), timeout)
        except OSError as e:
            raise connect_failure(origin, e, timeout) from None
        try:
            tune(sock)
            if scheme == "https":
                sock = (tls or tls_context()).wrap_socket(sock, server_hostname=host)
        except OSError as e:
            sock.close()
            raise connect_failure(origin, e, timeout) from None
        return SyncSocket(sock, origin)

    def _timeout(self, deadline: float, what: str) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise timed_out(self._origin, what)
        self._sock.settimeout(left)

    def _wait(self, write: bool, deadline: float) -> bool:
        """Wait until the plain socket is writable (or readable); False at `deadline`."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        poller = self._poll_out if write else self._poll_in
        if poller is not None:
            return bool(poller.poll(math.ceil(left * 1000)))
        fd = self._sock.fileno()
        r, w, _ = select.select([] if write else [fd], [fd] if write else [], [], left)
        return bool(r or w)

    def send_all(self, data: bytes, deadline: float) -> None:
        try:
            if not self._plain:
                self._timeout(deadline, "write")
                self._sock.sendall(data)
                return
            self._awaiting = True
            view = memoryview(data)
            while True:
                try:
                    n = self._sock.send(view)
                except BlockingIOError:
                    n = 0
                if n == len(view):
                    return
                view = view[n:]
                if not self._wait(True, deadline):
                    raise socket.timeout("write timed out")
        except socket.timeout:
            raise timed_out(self._origin, "write") from None
        except OSError as e:
            raise io_failure(self._origin, e, writing=True) from None

    def recv(self, deadline: float) -> bytes:
        """Some bytes of the answer; b"" once the server closed the connection."""
        try:
            if not self._plain:
                self._timeout(deadline, "read")
                data = self._sock.recv(RECV_LEN)
                self._used_at = time.monotonic()
                return data
            if self._awaiting:
                # Just sent a request: the answer cannot be there yet, so wait before the
                # first read instead of spending a system call on a certain EAGAIN.
                self._awaiting = False
                if not self._wait(False, deadline):
                    raise socket.timeout("read timed out")
            while True:
                try:
                    data = self._sock.recv(RECV_LEN)
                    self._used_at = time.monotonic()
                    return data
                except BlockingIOError:
                    pass
                if not self._wait(False, deadline):
                    raise socket.timeout("read timed out")
        except socket.timeout:
            raise timed_out(self._origin, "read") from None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""
        except OSError as e:
            raise io_failure(self._origin, e, writing=False) from None

    def idle_ok(self) -> bool:
        """Whether the idle connection can carry a request. One used within
        `IDLE_PROBE_AFTER_S` is taken without asking the kernel (the server's idle timeout
        is far longer; should it have closed the connection anyway, the pool retries on a
        fresh one, as every call is idempotent)."""
        if not self._plain and isinstance(self._sock, ssl.SSLSocket) and self._sock.pending():
            return False
        if time.monotonic() - self._used_at < IDLE_PROBE_AFTER_S:
            return True
        if self._poll_in is not None:
            try:
                return not self._poll_in.poll(0)
            except (OSError, ValueError):
                return False
        return idle_ok(self._sock)

    def park(self) -> None:
        """The pool keeps the connection idle (nothing to do for a blocking socket)."""

    def affinity(self, here: Optional[object]) -> int:
        """A blocking connection belongs to no event loop: any thread may use it (1, as
        an asyncio one that no live loop watches)."""
        return 1

    def close(self) -> None:
        self._sock.close()

    def forget(self) -> None:
        forget(self._sock)


def current_loop() -> Optional[object]:
    """No event loop: blocking connections have no affinity (`SyncSocket.affinity`)."""
    return None


class SyncSlotWaiter:
    """A call waiting for room in a full pool; woken from any thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wake(self) -> None:
        self._event.set()

    def wait(self, give_up: float) -> bool:
        return self._event.wait(max(0.0, give_up - time.monotonic()))


def pause(sleep: Optional[Callable[[float], None]], seconds: float, stop: Optional[threading.Event]) -> None:
    """Sleep between attempts (with the injected `sleep` in tests); raise `Stopped` when
    `stop` is set meanwhile (the lease whose renewal this is is being released)."""
    if sleep is not None:
        sleep(seconds)
        if stop is not None and stop.is_set():
            raise Stopped()
    elif stop is not None:
        if stop.wait(seconds):
            raise Stopped()
    else:
        time.sleep(seconds)


class SyncProgressWatch:
    """The progress polls of one waiting acquire: a daemon thread that asks `poll` every
    `interval` seconds and hands each answer to `on_progress`. `stop` (the acquire
    returned or raised) sets its event and waits for a callback that is running: the
    callback never runs after `stop` returns. A poll in flight is abandoned between its
    attempts and its answer dropped; the thread does not outlive it."""

    def __init__(self, poll: Callable[[Optional[threading.Event]], Any], on_progress: Callable[[Any], Any], interval: float) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(
            target=self._run, args=(poll, on_progress, interval), name="ratequeue-progress", daemon=True
        ).start()

    def _run(self, poll: Callable[[Optional[threading.Event]], Any], on_progress: Callable[[Any], Any], interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                progress = poll(self._stop)
            except Stopped:
                return
            except RatequeueError as e:
                log.debug("ratequeue progress poll failed (trying again): %s", e)
                continue
            if progress is None:
                continue  # not (or no longer) queued on the leader
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    on_progress(progress)
                except Exception:  # noqa: BLE001 - the callback is the caller's code
                    log.exception("ratequeue on_progress callback raised; it is not called again")
                    return

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            pass  # a callback running now has finished


class _RenewalTimer:
    """One daemon thread per process that starts a lease's renewal thread when its first
    renewal falls due: a lease released sooner (the common case) never starts a thread.
    Entries of leases already released (their renewal stopped) are skipped, and swept out
    when they pile up."""

    #: Skipped entries kept before the heap is rebuilt without them.
    STALE_MAX = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._heap: List[Tuple[float, int, "SyncRenewal"]] = []
        self._seq = 0
        self._thread: Optional[threading.Thread] = None
        #: When the timer thread wakes next (time.monotonic; -inf while it is awake).
        self._wake_at = -math.inf

    def schedule(self, delay: float, renewal: "SyncRenewal") -> None:
        """Call `renewal._spawn_renewal()` in `delay` seconds unless its renewal has
        stopped by then."""
        with self._lock:  # the Condition's own lock: entering it directly costs less
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ratequeue-renewals", daemon=True)
                self._thread.start()
            if len(self._heap) > self.STALE_MAX:
                self._heap = [e for e in self._heap if not e[2]._stopped]
                heapq.heapify(self._heap)
            self._seq += 1
            due = time.monotonic() + delay
            heapq.heappush(self._heap, (due, self._seq, renewal))
            if due < self._wake_at:
                # Wake the timer thread only when this entry falls due before it would
                # wake anyway: most leases have the same TTL, so it rarely does (a wake-up
                # per acquire cost a thread switch).
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    # Entries of released leases stay until they fall due (or the sweep in
                    # schedule): popping them early would leave the thread without a
                    # wake-up time, and every acquire would have to wake it.
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        _, _, renewal = heapq.heappop(self._heap)
                        if renewal._stopped:
                            continue
                        break
                    self._wake_at = self._heap[0][0] if self._heap else math.inf
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                    self._wake_at = -math.inf  # awake: schedule() need not notify
            renewal._spawn_renewal()


_timer = _RenewalTimer()


def _after_fork_in_child() -> None:
    # The timer thread does not survive fork (nor do the parent's leases' renewals).
    global _timer
    _timer = _RenewalTimer()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SyncRenewal:
    """Mixed into `ratequeue.Lease`: the renewal runs in a daemon thread until it is
    stopped. Until the first renewal falls due there is only an entry in the process's
    renewal timer, and a flag: the thread and its stop event are made when it falls due
    (an event per lease cost more than the rest of its bookkeeping)."""

    id: str
    _timing: Timing
    _state_lock: threading.Lock

    def _renew_loop(self) -> None:
        raise NotImplementedError

    def _renew_interval(self) -> float:
        raise NotImplementedError

    def _init_renewal(self) -> None:
        #: Set (under `_state_lock`) when the renewal is stopped.
        self._stopped = False
        #: Made with the renewal thread, set when the renewal is stopped.
        self._stop: Optional[threading.Event] = None
        self._thread: Optional[threading.Thread] = None
        self._due = False
        self._scheduled = False

    def _start_renewal(self) -> None:
        self._scheduled = True
        _timer.schedule(self._renew_interval(), self)

    def _spawn_renewal(self) -> None:
        """In the timer thread: the first renewal is due."""
        t = threading.Thread(target=self._renew_loop, name=f"ratequeue-renew-{self.id}", daemon=True)
        with self._state_lock:
            self._scheduled = False
            if self._stopped:
                return
            self._stop = threading.Event()
            self._due = True
            self._thread = t
        t.start()

    @property
    def renewing(self) -> bool:
        """Whether the lease is still being renewed."""
        t = self._thread
        if self._stopped:
            return t is not None and t.is_alive()
        return self._scheduled or (t is not None and t.is_alive())

    def _renewal_wait(self, interval: float) -> bool:
        """Wait until the next renewal is due (the first wait was the timer's); False once
        the renewal is stopped."""
        if self._due:
            self._due = False
            return not self._stopped
        stop = self._stop
        assert stop is not None  # made before the thread started
        return not stop.wait(interval)

    def _renewal_stop(self) -> Optional[threading.Event]:
        return self._stop

    def _stop_renewal(self) -> None:
        with self._state_lock:
            self._stopped = True
            stop = self._stop
        if stop is not None:
            stop.set()

    def _join_renewal(self) -> None:
        t = self._thread
        if t is not None and t is not threading.current_thread():
            # The thread sees the stop at its next wait or between retries; a renew
            # already on the wire finishes first (bounded by its timeouts).
            t.join(self._timing.request_timeout_s + self._timing.connect_timeout_s)


class SyncAcquireMixin:
    """Mixed into `ratequeue.AcquireContext`: nothing; a blocking acquire without a block
    is `client.acquire_lease(...)`."""


def shielded(
    fn: Callable[[Any, bool], None], resume: Callable[[Any], None], lease: Any, body_raised: bool
) -> None:
    """Run the release on leaving a block: a blocking call cannot be cancelled midway, so
    `resume` (what finishes a cancelled asyncio release) is never needed."""
    fn(lease, body_raised)
