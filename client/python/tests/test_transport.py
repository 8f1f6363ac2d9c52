"""The SDK's own HTTP/1.1 pools over real loopback sockets: keep-alive reuse, a
connection the server closed while idle replaced without an error, and the asyncio
pool's connections watched by one event loop at a time (registered once, not per
request; handed to another loop only once theirs is closed; closed by their loop when
the client closes from another thread).

The server is a small thread per connection that answers every request with a JSON body
and, with `close_after=n`, closes a connection after its n-th answer (as a node does at
its idle timeout), or with `silent_after=n` stops answering on it (a node that hangs).
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import threading
import time
import warnings
from typing import Any, Iterator, List

import pytest

from ratequeue._async_transport import AsyncConnectionPool
from ratequeue._http import ReadTimeout, Request, Timeouts
from ratequeue._sync_transport import SyncConnectionPool

BODY = b'{"state":"released"}'
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY)
#: Bound on waiting for the server thread to see something happen.
DEADLINE_S = 10.0


class Server:
    def __init__(self, close_after: int = 0, silent_after: int = 0) -> None:
        self.close_after = close_after
        self.silent_after = silent_after
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted = 0
        self.closed_by_client = 0
        self.lock = threading.Lock()
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        answered = 0
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        with self.lock:
                            self.closed_by_client += 1
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                if self.silent_after and answered >= self.silent_after:
                    continue  # read on, answer nothing
                conn.sendall(ANSWER)
                answered += 1
                if self.close_after and answered >= self.close_after:
                    return

    def wait_for(self, what: str, want: int) -> None:
        give_up = time.monotonic() + DEADLINE_S
        while getattr(self, what) < want:
            assert time.monotonic() < give_up, f"{what} = {getattr(self, what)}, wanted {want}"
            time.sleep(0.01)  # polling the server thread, bounded by DEADLINE_S

    def close(self) -> None:
        self.stopping = True
        self.listener.close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


@pytest.fixture
def closing_server() -> Iterator[Server]:
    s = Server(close_after=1)
    yield s
    s.close()


@pytest.fixture
def hanging_server() -> Iterator[Server]:
    s = Server(silent_after=1)
    yield s
    s.close()


def request(url: str, read: float = 10.0) -> Request:
    return Request("POST", url + "/v1/leases/1-1/release", {"authorization": "Bearer k"}, b"{}", Timeouts(read=read))


def test_sync_requests_share_one_keep_alive_connection(server: Server) -> None:
    pool = SyncConnectionPool()
    for _ in range(20):
        assert pool.handle_request(request(server.url)).json() == {"state": "released"}
    assert server.accepted == 1
    pool.close()
    server.wait_for("closed_by_client", 1)


def test_sync_a_connection_closed_by_the_server_is_replaced(closing_server: Server) -> None:
    pool = SyncConnectionPool()
    for _ in range(5):  # each reuses a connection the server has just closed
        assert pool.handle_request(request(closing_server.url)).status_code == 200
    assert closing_server.accepted == 5
    pool.close()


async def test_async_a_connection_closed_by_the_server_is_replaced(closing_server: Server) -> None:
    pool = AsyncConnectionPool()
    for _ in range(5):
        assert (await pool.handle_async_request(request(closing_server.url))).status_code == 200
    assert closing_server.accepted == 5
    await pool.aclose()


async def test_async_an_idle_connection_the_server_closed_is_noticed_by_the_loop(closing_server: Server) -> None:
    pool = AsyncConnectionPool()
    assert (await pool.handle_async_request(request(closing_server.url))).status_code == 200
    # The loop watches the idle connection: its end is seen without a request on it.
    (conn,) = [c for cs in pool._idle.values() for c in cs]
    give_up = time.monotonic() + DEADLINE_S
    while not conn._dead:
        assert time.monotonic() < give_up
        await asyncio.sleep(0.01)  # letting the loop poll, bounded by DEADLINE_S
    assert conn._loop is None  # and no longer watched (the end stays readable)
    assert (await pool.handle_async_request(request(closing_server.url))).status_code == 200
    assert closing_server.accepted == 2
    await pool.aclose()


async def test_async_a_read_times_out_at_its_own_deadline_before_an_earlier_longer_one(
    hanging_server: Server,
) -> None:
    """A connection keeps one read timer, armed for the first read's deadline (30 s
    here): a later read with a nearer deadline on the same connection must re-arm it."""
    pool = AsyncConnectionPool()
    assert (await pool.handle_async_request(request(hanging_server.url, read=30.0))).status_code == 200
    start = time.monotonic()
    with pytest.raises(ReadTimeout):
        await pool.handle_async_request(request(hanging_server.url, read=0.2))
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < DEADLINE_S, elapsed
    assert hanging_server.accepted == 1
    await pool.aclose()


async def test_async_a_read_is_not_cut_short_by_the_timer_of_an_earlier_shorter_one(
    hanging_server: Server,
) -> None:
    """The timer armed for an earlier read's deadline (0.1 s) fires while a read with a
    later one (0.6 s) waits: it must wait on until that read's own deadline."""
    pool = AsyncConnectionPool()
    assert (await pool.handle_async_request(request(hanging_server.url, read=0.1))).status_code == 200
    start = time.monotonic()
    with pytest.raises(ReadTimeout):
        await pool.handle_async_request(request(hanging_server.url, read=0.6))
    elapsed = time.monotonic() - start
    assert 0.6 <= elapsed < DEADLINE_S, elapsed
    await pool.aclose()


def test_async_one_loop_registers_a_connection_once(server: Server) -> None:
    """Not per request: registering and unregistering the socket for every answer cost two
    epoll_ctl calls each time (docs/benchmarks.md, "Python SDK")."""
    pool = AsyncConnectionPool()
    loop = asyncio.new_event_loop()
    calls: List[Any] = []
    add_reader = loop.add_reader

    def counting_add_reader(fd: Any, callback: Any, *args: Any) -> Any:
        calls.append(fd)
        return add_reader(fd, callback, *args)

    loop.add_reader = counting_add_reader  # type: ignore[method-assign]

    async def many() -> None:
        for _ in range(20):
            assert (await pool.handle_async_request(request(server.url))).status_code == 200

    loop.run_until_complete(many())
    assert len(calls) == 1
    loop.run_until_complete(pool.aclose())
    loop.close()
    server.wait_for("closed_by_client", 1)


def test_async_loops_in_two_threads_each_keep_their_connection(server: Server) -> None:
    """A connection another thread's live loop watches is not taken from it; closing the
    client from one loop closes the other loop's connection in that loop; nothing leaks."""
    pool = AsyncConnectionPool()
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()

    async def one() -> int:
        return (await pool.handle_async_request(request(server.url))).status_code

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(5):
            assert asyncio.run_coroutine_threadsafe(one(), other).result(DEADLINE_S) == 200
            assert asyncio.run(one()) == 200  # a fresh loop each time, like Celery's tasks
        assert server.accepted == 2  # one for the live loop, one reused by the fresh loops
        asyncio.run(pool.aclose())
        server.wait_for("closed_by_client", 2)
        other.call_soon_threadsafe(other.stop)
        thread.join(DEADLINE_S)
        other.close()
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_a_forked_child_makes_other_request_ids() -> None:
    """Request ids come from a generator seeded once per process: a forked child reseeds
    it, or it would repeat its parent's ids (and be handed the parent's leases)."""
    from ratequeue._protocol import new_request_id

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(w, new_request_id().encode())
        os._exit(0)
    os.close(w)
    mine = new_request_id()
    with os.fdopen(r) as f:
        theirs = f.read()
    os.waitpid(pid, 0)
    assert len(theirs) == len(mine) == 32 and theirs != mine


def test_a_forked_child_names_its_own_pid_as_holder() -> None:
    """The holder's host and pid are read once per process: a forked child reads its own."""
    from ratequeue._config import this_process_holder

    assert this_process_holder(None).endswith(f":{os.getpid()}")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(w, this_process_holder("job").encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        theirs = f.read()
    os.waitpid(pid, 0)
    assert theirs.startswith("job@") and theirs.endswith(f":{pid}")
