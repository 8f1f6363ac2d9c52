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
from collections import deque
from typing import Any, Awaitable, Callable, Coroutine, Deque, Generator, List, Optional, Set, Tuple, Union

from ._errors import LeaseLost, RatequeueError
from ._http import Origin
from ._lease import log
from ._net import connect_failure, forget, idle_ok, io_failure, timed_out, tls_context, tune

__all__ = [
    "AsyncSocket",
    "AsyncSlotWaiter",
    "current_loop",
    "AsyncRenewal",
    "AsyncAcquireMixin",
    "AsyncProgressWatch",
    "pause",
    "shielded",
]

#: Bytes read per receive call.
RECV_LEN = 65536
#: The shortest connect timeout tried (what is left of a call's budget may be less).
CONNECT_TIMEOUT_MIN_S = 0.001
#: An idle connection used this recently is reused without a readiness probe.
IDLE_PROBE_AFTER_S = 0.5

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
        self._fd = sock.fileno()
        self._origin = origin
        self.scheme, self.host, self.port = origin.scheme, origin.host, origin.port
        self._tls: Optional[ssl.SSLObject] = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        #: The loop whose selector watches this socket for reading. The registration
        #: outlives a request (registering and unregistering for every answer cost two
        #: epoll_ctl calls and the selector's bookkeeping per request): while the
        #: connection is idle the same callback notices a server closing it. It ends
        #: when that loop closes (its selector goes with it), when the connection is
        #: closed (through its loop, `close`), or when the socket turns readable with
        #: nobody reading. The pool hands a registered connection only to tasks of its
        #: loop (`affinity`).
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        #: The read in progress, resolved by the reader callback with the bytes read (or
        #: the error), or with a socket.timeout at its deadline.
        self._reader: Optional["asyncio.Future[Union[bytes, BaseException]]"] = None
        #: What the callback read while a request was on the connection but no read
        #: waited (the task had not come back for the next part yet).
        self._pending: Deque[Union[bytes, BaseException]] = deque()
        #: A request (or the TLS handshake) is on the connection: from its send until
        #: the pool takes it back.
        self._busy = True
        #: The server closed (or wrote to) the idle connection: do not reuse it.
        self._dead = False
        #: When the last answer was read (time.monotonic).
        self._used_at = 0.0
        #: The deadline of the read in progress (time.monotonic), and the loop timer that
        #: enforces it: one timer per connection, re-armed only when a read's deadline
        #: falls before it (a timer per read cost a handle, a heap push and a cancel).
        #: When it fires early it re-arms itself for the read then in progress, if any.
        self._deadline = 0.0
        self._watchdog: Optional[asyncio.TimerHandle] = None
        self._watch_at = 0.0

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
        # The reader callback reads whatever arrives (as asyncio's own transports do): the
        # answer costs one recv, made as soon as the selector reports it, and a select
        # right after cannot report the same bytes again.
        if self._pending:
            item = self._pending.popleft()
            if isinstance(item, BaseException):
                raise item
            return item
        loop = self._loop
        if loop is None or loop.is_closed():
            # First read in this loop (the pool hands a registered connection only to its
            # own loop's tasks, and a free one to anyone). Python 3.11 asks the OS for
            # its pid in every get_running_loop(): once per connection and loop here.
            loop = asyncio.get_running_loop()
            try:
                loop.add_reader(self._fd, self._on_readable, loop)
            except NotImplementedError:
                raise RuntimeError(
                    "ratequeue.aio needs an event loop with add_reader (a selector loop); on "
                    "Windows set asyncio.WindowsSelectorEventLoopPolicy()"
                ) from None
            self._loop = loop
            self._watchdog = None  # a timer of an earlier loop, which has closed
        fut: "asyncio.Future[Union[bytes, BaseException]]" = loop.create_future()
        self._reader = fut
        self._deadline = deadline
        if self._watchdog is None or deadline < self._watch_at:
            self._arm(loop, deadline)
        try:
            item = await fut
        finally:
            self._reader = None
        if isinstance(item, BaseException):
            raise item
        return item

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watch_at = at
        self._watchdog = loop.call_later(max(0.0, at - time.monotonic()), self._watch, loop)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """The read timer fired: time out the read in progress if its deadline has come,
        else wait for that deadline (the timer was armed for an earlier read's)."""
        self._watchdog = None
        fut = self._reader
        if fut is None:
            return  # no read in progress: the next read arms the timer again
        if time.monotonic() >= self._deadline:
            _time_out(fut)
        else:
            self._arm(loop, self._deadline)

    def _disarm(self) -> None:
        """In the loop's thread: drop the read timer (the connection is closing)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _on_readable(self, loop: asyncio.AbstractEventLoop) -> None:
        item: Union[bytes, BaseException]
        try:
            item = self._sock.recv(RECV_LEN)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            item = e
        if not item or isinstance(item, BaseException):
            # The end of the stream stays readable (the selector is level-triggered).
            self._unregister(loop)
        else:
            self._used_at = time.monotonic()
        fut = self._reader
        if fut is not None:
            self._reader = None
            if not fut.done():  # else it timed out: the connection is not reused
                fut.set_result(item)
        elif self._busy:
            self._pending.append(item)  # between two reads of one answer
        else:
            # Bytes, or the end, on an idle connection: the server closed it (or broke
            # the protocol). Not reusable.
            self._dead = True
            self._unregister(loop)

    def _unregister(self, loop: asyncio.AbstractEventLoop) -> None:
        """In `loop`'s thread (or with `loop` not running): drop the registration."""
        if self._loop is loop:
            self._loop = None
            if not loop.is_closed():
                loop.remove_reader(self._fd)
                self._disarm()

    def park(self) -> None:
        """The pool keeps the connection idle: the answer was read whole."""
        self._busy = False
        if self._pending:
            self._dead = True  # more than one answer came

    def affinity(self, here: Optional[asyncio.AbstractEventLoop]) -> int:
        """2: `here` (the running loop, `current_loop()`) watches this connection; 1: no
        live loop does; 0: another live loop does, and only its tasks may use it."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return 1
        return 2 if here is loop else 0

    async def send_all(self, data: bytes, deadline: float) -> None:
        self._busy = True
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
        """Whether the idle connection can carry a request. One used within
        `IDLE_PROBE_AFTER_S` is taken without asking the kernel (the server's idle timeout
        is far longer; should it have closed the connection anyway, the pool retries on a
        fresh one, as every call is idempotent)."""
        if self._dead:
            return False
        if time.monotonic() - self._used_at < IDLE_PROBE_AFTER_S:
            return True
        return idle_ok(self._sock)

    def close(self) -> None:
        """Close the connection from any thread: one registered with a loop running in
        another thread is unregistered and closed by that loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                running: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop and loop.is_running():
                try:
                    loop.call_soon_threadsafe(self._close_in, loop)
                    return
                except RuntimeError:
                    pass  # closed meanwhile: its selector is gone
            else:
                self._unregister(loop)
        self._loop = None
        self._sock.close()

    def _close_in(self, loop: asyncio.AbstractEventLoop) -> None:
        self._unregister(loop)
        self._loop = None
        self._sock.close()

    def forget(self) -> None:
        # A forked child: the parent's loop registration is the parent's (the epoll
        # instance is shared), so only our descriptor goes.
        self._loop = None
        forget(self._sock)


def current_loop() -> Optional[asyncio.AbstractEventLoop]:
    """The running event loop (what a connection's `affinity` is measured against)."""
    return asyncio.get_running_loop()


def _time_out(fut: "asyncio.Future[Union[bytes, BaseException]]") -> None:
    if not fut.done():
        fut.set_result(socket.timeout("read timed out"))


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


class AsyncProgressWatch:
    """The progress polls of one waiting acquire: a task of the running loop that asks
    `poll` every `interval` seconds and hands each answer to `on_progress`. `stop` (the
    acquire returned or raised) cancels it: the callback never runs after that, as the
    task only runs while the acquire's own task awaits."""

    def __init__(
        self,
        poll: Callable[[Optional[threading.Event]], Awaitable[Any]],
        on_progress: Callable[[Any], Any],
        interval: float,
    ) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(poll, on_progress, interval))

    @staticmethod
    async def _run(
        poll: Callable[[Optional[threading.Event]], Awaitable[Any]], on_progress: Callable[[Any], Any], interval: float
    ) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                progress = await poll(None)
            except RatequeueError as e:
                log.debug("ratequeue progress poll failed (trying again): %s", e)
                continue
            if progress is None:
                continue  # not (or no longer) queued on the leader
            try:
                on_progress(progress)
            except Exception:  # noqa: BLE001 - the callback is the caller's code
                log.exception("ratequeue on_progress callback raised; it is not called again")
                return

    def stop(self) -> None:
        self._task.cancel()


def _retrieve(fut: "asyncio.Future[Any]") -> None:
    _background.discard(fut)
    if not fut.cancelled():
        exc = fut.exception()
        if exc is not None and not isinstance(exc, LeaseLost):
            log.warning("ratequeue background release failed: %r", exc)


async def shielded(
    fn: Callable[[Any, bool], Awaitable[None]],
    resume: Callable[[Any], Awaitable[None]],
    lease: Any,
    body_raised: bool,
) -> None:
    """Run `fn(lease, body_raised)` (the release on leaving a block) in the task, and if
    the task is cancelled (again) meanwhile, let the cancellation propagate and finish the
    release in the background with `resume(lease)`. A cancellation can only arrive while
    the release waits for the renewal to stop or for the cluster, and both steps are safe
    to repeat. (Running the release as a task of its own behind `asyncio.shield` on every
    exit cost a task, a loop iteration and two futures per lease.)"""
    try:
        await fn(lease, body_raised)
    except asyncio.CancelledError:
        fut = asyncio.ensure_future(resume(lease))
        _background.add(fut)
        fut.add_done_callback(_retrieve)
        raise
