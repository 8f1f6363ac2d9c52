"""A loopback "kubelet": runs the rendered StatefulSet's container as local processes.

It builds each pod's process the way the kubelet would, from the rendered manifest
and nothing else: the container `command`, the `env` list in order with `$(VAR)`
expansion, downward-API fields (metadata.name, metadata.namespace, status.podIP),
secretKeyRef values, HOSTNAME = pod name, and the volume mounts. What differs from a
real cluster, and only that:

- every pod gets its own loopback address (127.0.9.<ordinal+1>) instead of a pod IP,
  so a listen address `0.0.0.0:PORT` becomes `<that address>:PORT` (all pods share one
  network namespace here, and 127.0.0.1 inside a pod is the pod itself);
- the pods' DNS names (`ratequeue-N.ratequeue-peers.<ns>.svc`, and the same under
  `.cluster.local`) resolve through a hosts file that the caller bind-mounts over
  /etc/hosts in a private mount namespace (`unshare --mount`), see `hosts_file`;
- mount paths (/var/lib/ratequeue, /tmp) become directories under a work dir;
- `/usr/local/bin/ratequeue` is the locally built binary.

Also a small HTTP client that follows 307 redirects the way ratequeue clients do.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

IMAGE_BINARY = "/usr/local/bin/ratequeue"
IP_PREFIX = "127.0.9."


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined variables only, `$$` escapes a `$`."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, value)


@dataclass
class Pod:
    ordinal: int
    name: str
    ip: str
    argv: list[str]
    env: dict[str, str]
    root: Path
    proc: subprocess.Popen | None = None
    log: Path | None = None
    starts: int = 0


@dataclass
class PodSim:
    docs: list[dict]
    binary: Path
    workdir: Path
    secrets: dict[str, dict[str, str]]
    pods: dict[int, Pod] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.binary = Path(self.binary).resolve()
        self.sts = next(d for d in self.docs if d["kind"] == "StatefulSet")
        self.namespace = self.sts["metadata"].get("namespace", "default")
        self.service = self.sts["spec"]["serviceName"]
        self.spec = self.sts["spec"]["template"]["spec"]
        self.container = self.spec["containers"][0]

    # ------------------------------------------------------------ manifest facts

    @property
    def replicas(self) -> int:
        return self.sts["spec"]["replicas"]

    @property
    def pre_stop_s(self) -> float:
        return float(self.container["lifecycle"]["preStop"]["sleep"]["seconds"])

    @property
    def grace_s(self) -> float:
        return float(self.spec["terminationGracePeriodSeconds"])

    @property
    def min_ready_s(self) -> float:
        return float(self.sts["spec"].get("minReadySeconds", 0))

    def port(self, name: str) -> int:
        return next(p["containerPort"] for p in self.container["ports"] if p["name"] == name)

    def pod_name(self, ordinal: int) -> str:
        return f"{self.sts['metadata']['name']}-{ordinal}"

    def dns(self, ordinal: int) -> str:
        return f"{self.pod_name(ordinal)}.{self.service}.{self.namespace}.svc"

    def ip(self, ordinal: int) -> str:
        return f"{IP_PREFIX}{ordinal + 1}"

    def api_url(self, ordinal: int) -> str:
        """What a client inside the cluster would use to reach this pod's API."""
        return f"http://{self.dns(ordinal)}:{self.port('api')}"

    def hosts_file(self, ordinals) -> str:
        lines = []
        for o in ordinals:
            d = self.dns(o)
            lines.append(f"{self.ip(o)} {d} {d}.cluster.local {self.pod_name(o)}.{self.service}")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------ the kubelet part

    def build(self, ordinal: int) -> Pod:
        name, ip = self.pod_name(ordinal), self.ip(ordinal)
        root = self.workdir / name
        mounts = {}
        for m in self.container.get("volumeMounts", []):
            local = root / "volumes" / m["name"]
            local.mkdir(parents=True, exist_ok=True)
            mounts[m["mountPath"]] = str(local)

        def localise(v: str) -> str:
            for path, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
                if v == path or v.startswith(path + "/"):
                    return local + v[len(path):]
            v = re.sub(r"^0\.0\.0\.0:", ip + ":", v)
            return v.replace("//127.0.0.1:", f"//{ip}:")

        env: dict[str, str] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOSTNAME": name}
        for e in self.container.get("env", []):
            if "value" in e:
                value = expand(e["value"], env)
            else:
                src = e["valueFrom"]
                if "fieldRef" in src:
                    value = {
                        "metadata.name": name,
                        "metadata.namespace": self.namespace,
                        "status.podIP": ip,
                    }[src["fieldRef"]["fieldPath"]]
                elif "secretKeyRef" in src:
                    ref = src["secretKeyRef"]
                    value = self.secrets[ref["name"]][ref["key"]]
                else:
                    raise ValueError(f"unsupported env source {src}")
            env[e["name"]] = localise(value)
        command = [expand(a, env) for a in self.container["command"] + self.container.get("args", [])]
        assert command[0] == IMAGE_BINARY, command
        argv = [str(self.binary)] + [localise(a) for a in command[1:]]
        return Pod(ordinal, name, ip, argv, env, root)

    def start(self, ordinal: int) -> Pod:
        pod = self.pods.get(ordinal) or self.build(ordinal)
        self.pods[ordinal] = pod
        assert pod.proc is None or pod.proc.poll() is not None, f"{pod.name} already running"
        pod.starts += 1
        pod.log = pod.root / f"log.{pod.starts}.txt"
        with open(pod.log, "wb") as out:
            pod.proc = subprocess.Popen(
                pod.argv, env=pod.env, stdout=out, stderr=subprocess.STDOUT, cwd=pod.root,
                start_new_session=True,
            )
        return pod

    def stop(self, ordinal: int, pre_stop: bool = True) -> dict:
        """Pod deletion: preStop sleep, SIGTERM, SIGKILL at the end of the grace period."""
        pod = self.pods[ordinal]
        t0 = time.monotonic()
        if pre_stop:
            time.sleep(self.pre_stop_s)
        assert pod.proc is not None
        pod.proc.send_signal(signal.SIGTERM)
        t_term = time.monotonic()
        killed = False
        try:
            pod.proc.wait(timeout=max(0.0, self.grace_s - (t_term - t0)))
        except subprocess.TimeoutExpired:
            pod.proc.kill()
            pod.proc.wait()
            killed = True
        return {
            "exit_code": pod.proc.returncode,
            "term_to_exit_s": round(time.monotonic() - t_term, 3),
            "killed_after_grace": killed,
        }

    def delete_volume(self, ordinal: int) -> None:
        """`kubectl delete pvc data-<pod>`: the next pod with this ordinal starts empty."""
        pod = self.pods.pop(ordinal)
        assert pod.proc is None or pod.proc.poll() is not None
        import shutil

        shutil.rmtree(pod.root / "volumes")

    def seed_volume(self, src: int, dst: int) -> None:
        """Restore pod `dst`'s data volume from a copy of pod `src`'s (both stopped):
        the lost-quorum recovery of docs/operations.md."""
        import shutil

        for o in (src, dst):
            pod = self.pods.get(o)
            assert pod is None or pod.proc is None or pod.proc.poll() is not None, f"{o} running"
        dst_root = self.workdir / self.pod_name(dst) / "volumes" / "data"
        if dst_root.exists():
            shutil.rmtree(dst_root)
        shutil.copytree(self.workdir / self.pod_name(src) / "volumes" / "data", dst_root)

    def kill(self, ordinal: int) -> None:
        """An involuntary failure: SIGKILL, no preStop, no grace."""
        pod = self.pods[ordinal]
        assert pod.proc is not None
        pod.proc.kill()
        pod.proc.wait()

    def kill_all(self) -> None:
        for pod in self.pods.values():
            if pod.proc and pod.proc.poll() is None:
                pod.proc.kill()
                pod.proc.wait()

    def log_tail(self, ordinal: int, lines: int = 30) -> str:
        pod = self.pods.get(ordinal)
        if not pod or not pod.log or not pod.log.exists():
            return ""
        return "\n".join(pod.log.read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------- HTTP


class HttpError(Exception):
    pass


def call(
    method: str,
    url: str,
    body: object | None = None,
    token: str | None = None,
    timeout: float = 10.0,
    hops: int = 5,
) -> tuple[int, object, list[str]]:
    """One request, following 307s (same method and body). Returns status, JSON, the URLs
    visited. Raises HttpError on connection failure."""
    visited = []
    for _ in range(hops + 1):
        visited.append(url)
        u = urlsplit(url)
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        try:
            conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as e:
            raise HttpError(f"{method} {url}: {e}") from e
        finally:
            conn.close()
        if resp.status == 307:
            url = resp.getheader("Location")
            continue
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return resp.status, payload, visited
    raise HttpError(f"too many redirects: {visited}")


def wait_until(what: str, pred, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (HttpError, OSError) as e:
            last = e
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout}s (last: {last!r})")
