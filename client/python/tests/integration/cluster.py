"""The integration tests' cluster harness: a real 3-node ratequeue cluster started from the
built binary, and admin helpers over plain httpx.

The binary is $RATEQUEUE_BIN, else <repo>/target/debug/ratequeue (build it with
`cargo build -p ratequeue-node`). Each node runs `ratequeue serve` on loopback ports picked
at random, with its own data directory under pytest's tmp dir; the fixture waits (with a
deadline) until every node's /readyz answers 200, and kills the nodes at the end. Node logs
are printed when the cluster fails to come up.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]

ADMIN_TOKEN = "py-integration-admin-token"
CLUSTER_SECRET = "py-integration-cluster-secret"
READY_DEADLINE_S = 60.0
LEADER_DEADLINE_S = 30.0


def binary() -> Path:
    path = Path(os.environ.get("RATEQUEUE_BIN") or REPO / "target" / "debug" / "ratequeue")
    if not path.exists():
        raise FileNotFoundError(
            f"ratequeue binary not found at {path}: build it (cargo build -p ratequeue-node) "
            "or set RATEQUEUE_BIN"
        )
    return path


def free_ports(n: int) -> List[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Node:
    def __init__(self, node_id: int, api_port: int, peer_port: int, data_dir: Path) -> None:
        self.id = node_id
        self.api_port = api_port
        self.peer_port = peer_port
        self.url = f"http://127.0.0.1:{api_port}"
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"node{node_id}.log"
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self, peers: str) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["RATEQUEUE_ADMIN_TOKEN"] = ADMIN_TOKEN
        env["RATEQUEUE_CLUSTER_SECRET"] = CLUSTER_SECRET
        env.setdefault("RATEQUEUE_LOG", "info,openraft=warn")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                str(binary()),
                "serve",
                "--id",
                str(self.id),
                "--api-addr",
                f"127.0.0.1:{self.api_port}",
                "--peer-addr",
                f"127.0.0.1:{self.peer_port}",
                "--advertise-api-url",
                self.url,
                "--peers",
                peers,
                "--data-dir",
                str(self.data_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Cluster:
    """Three nodes plus admin helpers (resources, keys, status) over plain httpx."""

    def __init__(self, root: Path) -> None:
        ports = free_ports(6)
        self.nodes = [Node(i + 1, ports[2 * i], ports[2 * i + 1], root / f"node{i + 1}") for i in range(3)]
        self.peers = ",".join(f"{n.id}=127.0.0.1:{n.peer_port}" for n in self.nodes)
        self.http = httpx.Client(timeout=10.0)

    @property
    def urls(self) -> List[str]:
        return [n.url for n in self.nodes]

    @property
    def url_list(self) -> str:
        return ",".join(self.urls)

    def start(self) -> None:
        for n in self.nodes:
            n.start(self.peers)
        self.wait_ready(self.nodes)

    def stop(self) -> None:
        for n in self.nodes:
            n.kill()
        self.http.close()

    def wait_ready(self, nodes: List[Node], deadline_s: float = READY_DEADLINE_S) -> None:
        deadline = time.monotonic() + deadline_s
        pending = list(nodes)
        while pending:
            for n in list(pending):
                if not n.running:
                    raise RuntimeError(f"node {n.id} exited:\n{n.log_tail()}")
                try:
                    if self.http.get(n.url + "/readyz", timeout=1.0).status_code == 200:
                        pending.remove(n)
                except httpx.TransportError:
                    pass
            if pending and time.monotonic() > deadline:
                logs = "\n".join(f"--- node {n.id}\n{n.log_tail()}" for n in pending)
                raise RuntimeError(f"nodes {[n.id for n in pending]} not ready in {deadline_s}s\n{logs}")
            if pending:
                time.sleep(0.1)  # polling a child process's readiness, bounded by the deadline

    def admin(self, method: str, path: str, body: Optional[Dict[str, Any]] = None, token: str = ADMIN_TOKEN) -> httpx.Response:
        """An admin request sent to the leader (following 307s, retrying no_leader)."""
        deadline = time.monotonic() + LEADER_DEADLINE_S
        headers = {"authorization": f"Bearer {token}"}
        while True:
            for n in self.nodes:
                if not n.running:
                    continue
                url = n.url + path
                try:
                    for _ in range(5):
                        r = self.http.request(method, url, json=body, headers=headers)
                        if r.status_code in (307, 308):
                            url = r.headers["location"]
                            continue
                        break
                except httpx.TransportError:
                    continue
                if r.status_code not in (307, 308, 503):
                    return r
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {path}: no leader answered in {LEADER_DEADLINE_S}s")
            time.sleep(0.1)

    def put_resource(self, name: str, spec: Dict[str, Any]) -> None:
        r = self.admin("PUT", f"/v1/resources/{name}", spec)
        assert r.status_code in (200, 201), r.text

    def resource(self, name: str) -> Dict[str, Any]:
        r = self.admin("GET", f"/v1/resources/{name}")
        assert r.status_code == 200, r.text
        data: Dict[str, Any] = r.json()
        return data

    def create_key(self, name: str, resources: List[str], role: str = "client") -> str:
        r = self.admin("POST", "/v1/keys", {"name": name, "role": role, "resources": resources})
        assert r.status_code in (200, 201), r.text
        key: str = r.json()["key"]
        return key

    def status(self, node: Node) -> Dict[str, Any]:
        r = self.http.get(node.url + "/v1/cluster/status", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 200, r.text
        data: Dict[str, Any] = r.json()
        return data

    def leader(self) -> Node:
        deadline = time.monotonic() + LEADER_DEADLINE_S
        while True:
            for n in self.nodes:
                if not n.running:
                    continue
                try:
                    s = self.status(n)
                except (httpx.TransportError, AssertionError):
                    continue
                if s.get("role") == "leader":
                    return n
            if time.monotonic() > deadline:
                raise RuntimeError("no leader elected")
            time.sleep(0.05)

    def followers(self) -> List[Node]:
        leader = self.leader()
        return [n for n in self.nodes if n is not leader and n.running]

    def restart(self, node: Node) -> None:
        node.kill()
        node.start(self.peers)
        self.wait_ready([node])
