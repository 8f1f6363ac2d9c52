"""What the blocking client (`_sync.py`, `_sync_transport.py`; exported by `ratequeue`) does
differently from the asyncio one, besides `async`/`await`: the blocking twin of
`_async_backend.py`.

Owns: `SyncSocket` (a blocking socket with a timeout per operation), the wait for a free
pool slot, sleeping between attempts (abandoned when a renewal's stop event is set), a
renewal daemon thread per lease, and the (trivial) release on leaving a block. Never
touches asyncio.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any, Callable, Optional

from ._config import Timing
from ._http import Origin
from ._lease import Stopped
from ._net import connect_failure, forget, idle_ok, io_failure, timed_out, tls_context, tune

__all__ = ["SyncSocket", "SyncSlotWaiter", "SyncRenewal", "SyncAcquireMixin", "pause", "shielded"]

#: Bytes read per receive call.
RECV_LEN = 65536


class SyncSocket:
    """One connection to a node (wrapped in TLS for `https://`)."""

    def __init__(self, sock: socket.socket, origin: Origin) -> None:
        self._sock = sock
        self._origin = origin
        self.scheme, self.host, self.port = origin.scheme, origin.host, origin.port

    @staticmethod
    def connect(scheme: str, host: str, port: int, timeout: float) -> "SyncSocket":
        origin = Origin(scheme, host, port)
        try:
            sock = socket.create_connection((host, port), timeout)
        except OSError as e:
            raise connect_failure(origin, e, timeout) from None
        try:
            tune(sock)
            if scheme == "https":
                sock = tls_context().wrap_socket(sock, server_hostname=host)
        except OSError as e:
            sock.close()
            raise connect_failure(origin, e, timeout) from None
        return SyncSocket(sock, origin)

    def _timeout(self, deadline: float, what: str) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise timed_out(self._origin, what)
        self._sock.settimeout(left)

    def send_all(self, data: bytes, deadline: float) -> None:
        try:
            self._timeout(deadline, "write")
            self._sock.sendall(data)
        except socket.timeout:
            raise timed_out(self._origin, "write") from None
        except OSError as e:
            raise io_failure(self._origin, e, writing=True) from None

    def recv(self, deadline: float) -> bytes:
        """Some bytes of the answer; b"" once the server closed the connection."""
        try:
            self._timeout(deadline, "read")
            return self._sock.recv(RECV_LEN)
        except socket.timeout:
            raise timed_out(self._origin, "read") from None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""
        except OSError as e:
            raise io_failure(self._origin, e, writing=False) from None

    def idle_ok(self) -> bool:
        if isinstance(self._sock, ssl.SSLSocket) and self._sock.pending():
            return False
        return idle_ok(self._sock)

    def close(self) -> None:
        self._sock.close()

    def forget(self) -> None:
        forget(self._sock)


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
