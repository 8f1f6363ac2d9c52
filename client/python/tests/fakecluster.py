"""An in-memory stand-in for a ratequeue cluster behind `ratequeue.testing.MockTransport`,
or served on a real loopback socket (`serve`) to exercise the SDK's own transport.

It speaks the wire format of DESIGN.md §5 (acquire long-poll with concurrency, idempotent
request_id, release with actual_load, renew, 307 from followers, 503 without a leader)
and records every request, so unit tests can check what the SDK sent without a server.
Faults are injected with `hooks`: a hook sees each request first and may return a
response or raise a `ratequeue.testing.TransportError`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from urllib.parse import urlsplit
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import ratequeue
from ratequeue.testing import MockTransport, Request, Response

Hook = Callable[["Seen"], Optional[Response]]

URLS = "http://n1:7700,http://n2:7700,http://n3:7700"

#: Small but not tiny: tests wait on events with deadlines, never on these.
FAST = ratequeue.Timing(
    backoff_initial_s=0.001,
    backoff_max_s=0.01,
    retry_budget_s=5.0,
    release_budget_s=5.0,
    request_timeout_s=5.0,
    renew_interval_min_s=0.005,
)


@dataclass
class Seen:
    """One request as the fake cluster received it."""

    node: str
    method: str
    path: str
    body: Dict[str, Any]
    headers: Dict[str, str]

    @property
    def kind(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class FakeLease:
    id: str
    resource: str
    lane: str
    load: int
    token: int
    ttl_ms: int
    request_id: Optional[str]
    released: bool = False
    expired: bool = False
    actual_load: Optional[int] = None
    renewals: int = 0


@dataclass
class FakeResource:
    concurrency: Optional[int] = None
    load_max: Optional[int] = None
    held: int = 0
    max_held: int = 0


def error(status: int, code: str, message: str = "", retry_after_ms: Optional[int] = None, **extra: Any) -> Response:
    detail: Dict[str, Any] = {"code": code, "message": message or code, **extra}
    headers = {}
    if retry_after_ms is not None:
        detail["retry_after_ms"] = retry_after_ms
        headers["retry-after"] = str(max(1, -(-retry_after_ms // 1000)))
    return Response.of_json(status, {"error": detail}, headers)


class FakeCluster:
    def __init__(
        self,
        nodes: tuple[str, ...] = ("http://n1:7700", "http://n2:7700", "http://n3:7700"),
        leader: Optional[str] = "http://n1:7700",
        api_key: Optional[str] = "k3y",
    ) -> None:
        self.nodes = nodes
        self.leader = leader
        self.api_key = api_key
        self.cond = threading.Condition()
        self.resources: Dict[str, FakeResource] = {"gpt": FakeResource(concurrency=10, load_max=100_000)}
        self.leases: Dict[str, FakeLease] = {}
        self.by_request_id: Dict[str, str] = {}
        self.seen: List[Seen] = []
        self.hooks: List[Hook] = []
        self.token = 100
        self.closed = False
        self.servers: List[ThreadingHTTPServer] = []
        self.connections = 0
        self.executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="fakecluster")

    # --- helpers for tests ---------------------------------------------------------

    def transport(self) -> MockTransport:
        return MockTransport(self.handle)

    def async_transport(self) -> MockTransport:
        async def handle(request: Request) -> Response:
            # Long polls block a thread each: use a pool big enough for every waiter.
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, self.handle, request)

        return MockTransport(handle)

    def serve(self) -> str:
        """Serve this cluster as one node on a loopback socket (HTTP/1.1, keep-alive) and
        make it the leader; returns its URL. `connections` counts accepted connections."""
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with cluster.cond:
                    cluster.connections += 1

            def _any(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                url = f"http://{self.headers.get('host')}{self.path}"
                headers = {k.lower(): v for k, v in self.headers.items()}
                r = cluster.handle(Request(self.command, url, headers, body))
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_POST = do_GET = do_PUT = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        self.nodes = (url,)
        self.leader = url
        return url

    def of_kind(self, kind: str) -> List[Seen]:
        with self.cond:
            return [s for s in self.seen if s.kind == kind]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until predicate holds, with a deadline: woken by every request the cluster
        sees, and polling in short slices for state that changes on the client side (a
        lease's `lost` flag, its renewal thread ending)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.01))
            return True

    def expire(self, lease_id: str) -> None:
        with self.cond:
            lease = self.leases[lease_id]
            if not lease.expired and not lease.released:
                self.resources[lease.resource].held -= 1
            lease.expired = True
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        for server in self.servers:
            server.shutdown()
            server.server_close()
        self.executor.shutdown(wait=False)

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    # --- the server ----------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        body = json.loads(request.content) if request.content else {}
        url = urlsplit(request.url)
        node = f"{url.scheme}://{url.netloc}"
        seen = Seen(node, request.method, url.path, body, dict(request.headers))
        with self.cond:
            self.seen.append(seen)
            self.cond.notify_all()
        for hook in list(self.hooks):
            r = hook(seen)
            if r is not None:
                return r
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "unauthorized", "unknown token")
        if self.leader is None:
            return error(503, "no_leader", "no leader is known", retry_after_ms=50)
        if node != self.leader:
            return Response(307, {"location": self.leader + url.path, "x-ratequeue-leader": "1"})
        parts = url.path.strip("/").split("/")
        if request.method == "POST" and len(parts) == 4 and parts[1] == "resources" and parts[3] == "acquire":
            return self.acquire(parts[2], body)
        if request.method == "POST" and len(parts) == 4 and parts[1] == "leases" and parts[3] == "release":
            return self.release(parts[2], body)
        if request.method == "POST" and len(parts) == 4 and parts[1] == "leases" and parts[3] == "renew":
            return self.renew(parts[2], body)
        return error(400, "invalid_request", "no such endpoint")

    def _grant_json(self, lease: FakeLease) -> Dict[str, Any]:
        res = self.resources[lease.resource]
        limits = []
        if res.concurrency is not None:
            limits.append({"kind": "concurrency", "limit": res.concurrency, "remaining": res.concurrency - res.held})
        return {
            "lease_id": lease.id,
            "resource": lease.resource,
            "lane": lease.lane,
            "load": lease.load,
            "fencing_token": lease.token,
            "ttl_ms": lease.ttl_ms,
            "queued_ms": 0,
            "limits": limits,
        }

    def acquire(self, name: str, body: Dict[str, Any]) -> Response:
        unknown = set(body) - {"load", "priority", "lane", "ttl_ms", "wait_ms", "request_id", "holder"}
        if unknown:
            return error(400, "invalid_request", f"unknown field {unknown}")
        with self.cond:
            res = self.resources.get(name)
            if res is None:
                return error(404, "resource_not_found", "no such resource")
            load = body.get("load", 1)
            if res.load_max is not None and load > res.load_max:
                return error(422, "load_exceeds_limit", "load can never fit")
            rid = body.get("request_id")
            if rid is not None and rid in self.by_request_id:
                return Response.of_json(200, self._grant_json(self.leases[self.by_request_id[rid]]))
            wait_ms = body.get("wait_ms", 30_000)
            deadline = time.monotonic() + wait_ms / 1000.0
            while res.concurrency is not None and res.held >= res.concurrency:
                if wait_ms == 0:
                    return error(429, "would_block", "no room now", retry_after_ms=250)
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return error(429, "wait_timeout", "waited", retry_after_ms=250)
                self.cond.wait(left)
                if name not in self.resources:
                    return error(404, "resource_not_found", "deleted")
            self.token += 1
            lease = FakeLease(
                id=f"{self.token}-{self.token:016x}",
                resource=name,
                lane=body.get("lane", "default"),
                load=load,
                token=self.token,
                ttl_ms=body.get("ttl_ms", 30_000),
                request_id=rid,
            )
            self.leases[lease.id] = lease
            if rid is not None:
                self.by_request_id[rid] = lease.id
            res.held += 1
            res.max_held = max(res.max_held, res.held)
            self.cond.notify_all()
            return Response.of_json(200, self._grant_json(lease))

    def release(self, lease_id: str, body: Dict[str, Any]) -> Response:
        with self.cond:
            lease = self.leases.get(lease_id)
            if lease is None:
                return error(404, "lease_not_found", "no such lease")
            if lease.released:
                return Response.of_json(200, {"state": "already_released"})
            if lease.expired:
                return error(410, "lease_expired", "the lease expired")
            lease.released = True
            lease.actual_load = body.get("actual_load")
            self.resources[lease.resource].held -= 1
            self.cond.notify_all()
            return Response.of_json(200, {"state": "released"})

    def renew(self, lease_id: str, body: Dict[str, Any]) -> Response:
        with self.cond:
            lease = self.leases.get(lease_id)
            if lease is None:
                return error(404, "lease_not_found", "no such lease")
            if lease.expired or lease.released:
                return error(410, "lease_expired", "the lease expired")
            lease.renewals += 1
            if "ttl_ms" in body:
                lease.ttl_ms = body["ttl_ms"]
            self.cond.notify_all()
            return Response.of_json(200, {"lease_id": lease.id, "ttl_ms": lease.ttl_ms, "fencing_token": lease.token})


@dataclass
class FakeTime:
    """A clock that only the injected sleep moves: retries and deadlines become exact."""

    now: float = 1000.0
    sleeps: List[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
