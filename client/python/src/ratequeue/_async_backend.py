"""What the asyncio client (`_async.py`, `_async_transport.py`; exported by `ratequeue.aio`)
does differently from the blocking one, besides `async`/`await`. `_sync_backend.py` is its
blocking twin; the generator maps each name here to the one there.

Owns: `AsyncSocket` (a non-blocking socket registered with the running loop only while it
waits, so it belongs to no loop), the wait for a free pool slot, sleeping between
attempts, a renewal task per lease, the awaitable `acquire(...)`, and shielding a release
from the task's cancellation. Never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl
import threading
import time
from typing import Any, Awaitable, Callable, Coroutine, Generator, List, Optional, Set, Tuple

from ._errors import LeaseLost
from ._http import Origin
from ._lease import log
from ._net import connect_failure, forget, idle_ok, io_failure, timed_out, tls_context, tune

__all__ = ["AsyncSocket", "AsyncSlotWaiter", "AsyncRenewal", "AsyncAcquireMixin", "pause", "shielded"]

#: Bytes read per receive call.
RECV_LEN = 65536
#: The shortest connect timeout tried (what is left of a call's budget may be less).
CONNECT_TIMEOUT_MIN_S = 0.001

#: Releases running after their `async with` was cancelled again: held so they finish.
_background: Set["asyncio.Future[Any]"] = set()

_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN}


async def _ready(sock: socket.socket, write: bool, deadline: float) -> bool:
    """Wait until `sock` is readable (or writable); False at `deadline` (time.monotonic)."""
    loop = asyncio.get_running_loop()
    fut: "asyncio.Future[bool]" = loop.create_future()

    def done(ok: bool) -> None:
        if not fut.done():
            fut.set_result(ok)

    fd = sock.fileno()
    try:
        if write:
            loop.add_writer(fd, done, True)
        else:
            loop.add_reader(fd, done, True)
    except NotImplementedError:
        raise RuntimeError(
            "ratequeue.aio needs an event loop with add_reader (a selector loop); on Windows "
            "set asyncio.WindowsSelectorEventLoopPolicy()"
        ) from None
    timer = loop.call_later(max(0.0, deadline - time.monotonic()), done, False)
    try:
        return await fut
    finally:
        timer.cancel()
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _resolve(host: str, port: int, deadline: float) -> List[Tuple[int, Any]]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), max(0.0, deadline - time.monotonic())
            )
        except asyncio.TimeoutError:
            raise socket.timeout("name resolution timed out") from None
        return [(family, addr) for family, _, _, _, addr in infos]
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return [(family, (host, port))]


class AsyncSocket:
    """One connection to a node (TLS through memory buffers for `https://`)."""

    def __init__(self, sock: socket.socket, origin: Origin) -> None:
        self._sock = sock
        self._origin = origin
        self.scheme, self.host, self.port = origin.scheme, origin.host, origin.port
        self._tls: Optional[ssl.SSLObject] = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        #: A request was just sent and nothing read since.
        self._awaiting = False

    @staticmethod
    async def connect(
        scheme: str, host: str, port: int, timeout: float, tls: Optional[ssl.SSLContext] = None
    ) -> "AsyncSocket":
        """A connection to the node, TLS-wrapped with `tls` (default `tls_context()`) for
        `https://`."""
        origin = Origin(scheme, host, port)
        timeout = max(timeout, CONNECT_TIMEOUT_MIN_S)  # the same floor as the blocking flavour
        deadline = time.monotonic() + timeout
        try:
            last: Optional[BaseException] = None
            for family, addr in await _resolve(host, port, deadline):
                sock = socket.socket(family, socket.SOCK_STREAM)
                try:
                    sock.setblocking(False)
                    tune(sock)
                    err = sock.connect_ex(addr)
                    if err in _IN_PROGRESS:
                        if not await _ready(sock, True, deadline):
                            raise socket.timeout("connect timed out")
                        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, "connect failed")
                    conn = AsyncSocket(sock, origin)
                    if scheme == "https":
                        await conn._handshake(tls or tls_context(), deadline)
                    return conn
                except OSError as e:
                    sock.close()
                    if isinstance(e, (socket.timeout, ssl.SSLError)):
                        raise
                    last = e
                except BaseException:
                    sock.close()
                    raise
            raise last if last is not None else OSError(errno.EHOSTUNREACH, "no address")
        except (OSError, asyncio.TimeoutError) as e:
            raise connect_failure(origin, e, timeout) from None

    async def _handshake(self, context: ssl.SSLContext, deadline: float) -> None:
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=self.host)
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush(deadline)
                data = await self._raw_recv(deadline)
                if not data:
                    raise ConnectionResetError(errno.ECONNRESET, "closed during the TLS handshake")
                self._incoming.write(data)
        await self._flush(deadline)

    async def _flush(self, deadline: float) -> None:
        data = self._outgoing.read()
        if data:
            await self._raw_send(data, deadline)

    async def _raw_send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                n = self._sock.send(view)
                view = view[n:]
                continue
            except BlockingIOError:
                pass
            if not await _ready(self._sock, True, deadline):
                raise socket.timeout("write timed out")

    async def _raw_recv(self, deadline: float) -> bytes:
        if self._awaiting:
            # Just sent a request: the answer cannot be there yet, so wait before the first
            # read instead of spending a system call on a certain EAGAIN.
            self._awaiting = False
            if not await _ready(self._sock, False, deadline):
                raise socket.timeout("read timed out")
        while True:
            try:
                return self._sock.recv(RECV_LEN)
            except BlockingIOError:
                pass
            if not await _ready(self._sock, False, deadline):
                raise socket.timeout("read timed out")

    async def send_all(self, data: bytes, deadline: float) -> None:
        self._awaiting = True
        try:
            if self._tls is not None:
                self._tls.write(data)
                await self._flush(deadline)
            else:
                await self._raw_send(data, deadline)
        except socket.timeout:
            raise timed_out(self._origin, "write") from None
        except (OSError, ssl.SSLError) as e:
            raise io_failure(self._origin, e, writing=True) from None

    async def recv(self, deadline: float) -> bytes:
        """Some bytes of the answer; b"" once the server closed the connection."""
        try:
            while True:
                if self._tls is not None:
                    try:
                        return self._tls.read(RECV_LEN)
                    except ssl.SSLWantReadError:
                        pass
                    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                        return b""
                data = await self._raw_recv(deadline)
                if self._tls is None:
                    return data
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
        except socket.timeout:
            raise timed_out(self._origin, "read") from None
        except (OSError, ssl.SSLError) as e:
            raise io_failure(self._origin, e, writing=False) from None

    def idle_ok(self) -> bool:
        return idle_ok(self._sock)

    def close(self) -> None:
        self._sock.close()

    def forget(self) -> None:
        forget(self._sock)


class AsyncSlotWaiter:
    """A call waiting for room in a full pool; woken from any thread."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._fut: "asyncio.Future[None]" = self._loop.create_future()

    def _set(self) -> None:
        if not self._fut.done():
            self._fut.set_result(None)

    def wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._set)
        except RuntimeError:
            pass  # its loop is closed: nobody waits any more

    async def wait(self, give_up: float) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self._fut), max(0.0, give_up - time.monotonic()))
            return True
        except asyncio.TimeoutError:
            return False


async def pause(
    sleep: Optional[Callable[[float], Awaitable[None]]], seconds: float, stop: Optional[threading.Event]
) -> None:
    """Sleep between attempts (with the injected `sleep` in tests). A renewal is stopped by
    cancelling its task, never through `stop`."""
    await (sleep or asyncio.sleep)(seconds)


class AsyncRenewal:
    """Mixed into `aio.Lease`: the renewal runs as a task of the loop that acquired. Until
    the first renewal falls due there is only a timer: a lease released sooner (the common
    case) never creates a task."""

    def _renew_loop(self) -> Coroutine[Any, Any, None]:
        raise NotImplementedError

    def _renew_interval(self) -> float:
        raise NotImplementedError

    def _init_renewal(self) -> None:
        self._task: Optional["asyncio.Task[None]"] = None
        self._timer: Optional[asyncio.TimerHandle] = None
        self._due = False

    def _start_renewal(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._renew_interval(), self._spawn_renewal, loop)

    def _spawn_renewal(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._due = True
        self._task = loop.create_task(self._renew_loop())

    @property
    def renewing(self) -> bool:
        """Whether the lease is still being renewed."""
        t = self._task
        return self._timer is not None or (t is not None and not t.done())

    async def _renewal_wait(self, interval: float) -> bool:
        """Wait until the next renewal is due (the first wait was the timer's); False once
        the renewal is stopped (here the task is cancelled instead)."""
        if self._due:
            self._due = False
            return True
        await asyncio.sleep(interval)
        return True

    def _renewal_stop(self) -> Optional[threading.Event]:
        return None

    async def _stop_renewal(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
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
