"""The integration tests' cluster: a real 3-node ratequeue cluster run by
`ratequeue dev --ephemeral --json` (the project's test-cluster kit, docs/testkit.md), and
admin helpers over plain httpx.

The binary is $RATEQUEUE_BIN, else <repo>/target/debug/ratequeue (build it with
`cargo build -p ratequeue-node`). The kit starts three `ratequeue serve` processes on a free
loopback block with a temporary data dir, waits for a serving leader and prints the
cluster as one JSON line; this module then drives it with line commands (`kill 2`,
`start 2`, ...) and waits (with a deadline) until every node's /readyz answers 200. When the
session ends, `quit` (or, if this process dies, the kit itself) kills the nodes and removes
their data. The kit's output is printed when the cluster fails to come up.
"""

from __future__ import annotations

import json
import os
import queue
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Sequence

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]

READY_DEADLINE_S = 60.0
# An election after a leader kill on a busy 2-core machine: as long as the tests' DEADLINE.
LEADER_DEADLINE_S = 60.0
# Bound on one answer of the kit (starting the cluster included) on a busy machine.
ANSWER_DEADLINE_S = 120.0


def binary() -> Path:
    path = Path(os.environ.get("RATEQUEUE_BIN") or REPO / "target" / "debug" / "ratequeue")
    if not path.exists():
        raise FileNotFoundError(
            f"ratequeue binary not found at {path}: build it (cargo build -p ratequeue-node) "
            "or set RATEQUEUE_BIN"
        )
    return path


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Dev:
    """The `ratequeue dev --ephemeral --json` process: one JSON line per command."""

    def __init__(self, root: Path, args: Sequence[str] = ()) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "dev.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(binary()), "dev", "--ephemeral", "--json", "--nodes", "3", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        log.close()
        self._lines: "queue.Queue[Optional[bytes]]" = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        self.first = self._answer()
        if not self.first.get("ok"):
            self.close()
            raise RuntimeError(f"ratequeue dev: {self.first.get('error')}\n{_tail(self.log_path)}")

    def _read(self, out: IO[bytes]) -> None:
        for line in out:
            self._lines.put(line)
        self._lines.put(None)

    def _answer(self) -> Dict[str, Any]:
        try:
            line = self._lines.get(timeout=ANSWER_DEADLINE_S)
        except queue.Empty:
            raise RuntimeError(f"ratequeue dev did not answer in {ANSWER_DEADLINE_S}s\n{_tail(self.log_path)}")
        if line is None:
            raise RuntimeError(f"ratequeue dev exited ({self.proc.poll()})\n{_tail(self.log_path)}")
        answer: Dict[str, Any] = json.loads(line)
        return answer

    def command(self, line: str) -> Dict[str, Any]:
        """Sends one command; returns its answer, raising if it is not ok."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        answer = self._answer()
        if not answer.get("ok"):
            raise RuntimeError(f"ratequeue dev {line!r}: {answer.get('error')}")
        return answer

    def close(self) -> None:
        """`quit`: the kit kills every node and removes their data, then exits."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.close()
                self.proc.wait(ANSWER_DEADLINE_S)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)


class Node:
    def __init__(self, dev: Dev, info: Dict[str, Any]) -> None:
        self.dev = dev
        self.id: int = info["id"]
        self.url: str = info["api_url"]
        self.peer_addr: str = info["peer_addr"]
        self.data_dir = Path(info["data_dir"])
        self.log_path = Path(info["log"])
        self.pid: Optional[int] = info["pid"]

    def kill(self) -> None:
        """SIGKILL, through the kit."""
        if self.running:
            self.pid = self.dev.command(f"kill {self.id}")["pid"]

    def start(self) -> None:
        """Starts the node again with the same data dir and flags."""
        self.pid = self.dev.command(f"start {self.id}")["pid"]

    @property
    def running(self) -> bool:
        return self.pid is not None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)


class Cluster:
    """Three nodes plus admin helpers (resources, keys, status) over plain httpx.

    `tls=True`: the nodes speak TLS and require client certificates (`ratequeue dev --tls
    --tls-client-auth`, certificates made by the kit at start); `tls_files` then names the
    CA bundle and the client certificate and key, which the admin helpers use too."""

    def __init__(self, root: Path, tls: bool = False) -> None:
        self.root = root
        self.tls = tls
        self.tls_files: Dict[str, str] = {}
        self.dev: Optional[Dev] = None
        self.nodes: List[Node] = []
        self.admin_token = ""
        self.http = httpx.Client(timeout=10.0)

    @property
    def urls(self) -> List[str]:
        return [n.url for n in self.nodes]

    @property
    def url_list(self) -> str:
        return ",".join(self.urls)

    def start(self) -> None:
        self.dev = Dev(self.root, ["--tls", "--tls-client-auth"] if self.tls else [])
        self.admin_token = self.dev.first["admin_token"]
        if self.tls:
            self.tls_files = self.dev.first["tls"]
            ctx = ssl.create_default_context(cafile=self.tls_files["ca_file"])
            ctx.load_cert_chain(self.tls_files["client_cert"], self.tls_files["client_key"])
            self.http.close()
            self.http = httpx.Client(timeout=10.0, verify=ctx)
        self.nodes = [Node(self.dev, info) for info in self.dev.first["nodes"]]
        self.wait_ready(self.nodes)

    def stop(self) -> None:
        if self.dev is not None:
            self.dev.close()
        self.http.close()

    def wait_ready(self, nodes: List[Node], deadline_s: float = READY_DEADLINE_S) -> None:
        deadline = time.monotonic() + deadline_s
        pending = list(nodes)
        while pending:
            for n in list(pending):
                try:
                    if self.http.get(n.url + "/readyz", timeout=1.0).status_code == 200:
                        pending.remove(n)
                except httpx.TransportError:
                    pass
            if pending and time.monotonic() > deadline:
                logs = "\n".join(f"--- node {n.id}\n{n.log_tail()}" for n in pending)
                raise RuntimeError(f"nodes {[n.id for n in pending]} not ready in {deadline_s}s\n{logs}")
            if pending:
                time.sleep(0.1)  # polling the nodes' readiness, bounded by the deadline

    def admin(self, method: str, path: str, body: Optional[Dict[str, Any]] = None, token: Optional[str] = None) -> httpx.Response:
        """An admin request sent to the leader (following 307s, retrying no_leader)."""
        deadline = time.monotonic() + LEADER_DEADLINE_S
        headers = {"authorization": f"Bearer {token or self.admin_token}"}
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
        r = self.http.get(node.url + "/v1/cluster/status", headers={"authorization": f"Bearer {self.admin_token}"})
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
        node.start()
        self.wait_ready([node])
