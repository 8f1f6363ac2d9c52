"""Rehearsal of the runbook on loopback, from the rendered 3-node overlay.

Run by test_local_cluster.py inside a private mount namespace (`unshare --mount`), where
it bind-mounts a hosts file over /etc/hosts so the pods' DNS names resolve to their
loopback addresses (see podsim.py for everything else that is emulated).

Phases, each under client load through the "client Service" (a random pod that passes
its readiness probe), with the same HTTP calls docs/operations.md gives:

1. launch: all pods of the StatefulSet at once (podManagementPolicy: Parallel); they
   bootstrap from RATEQUEUE_PEERS, agree on a leader, advertise their pod DNS names.
2. scale 3 -> 5: pods ratequeue-3/4 start (not in the initial peer list: they wait,
   /healthz ok, /readyz not); POST /v1/cluster/members adds them as learners and
   promotes them.
3. scale 5 -> 3: DELETE /v1/cluster/members/5 and /4, stop the pods (highest ordinal
   first), delete their volumes.
4. rolling restart in StatefulSet order (highest ordinal first): preStop sleep, SIGTERM,
   exit within the grace period, start again, Ready, minReadySeconds.

It checks that no acknowledged grant is lost (leases held across every phase still
renew; every acknowledged lease of the load releases without lease_not_found; fencing
tokens are unique and increase per client) and measures, per restarted node, the
longest time no client acquire completed. Writes a JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets as pysecrets
import subprocess
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from podsim import HttpError, PodSim, call, wait_until  # noqa: E402

RESOURCE = "rehearsal"
HELD = 4


class Cluster:
    def __init__(self, sim: PodSim, token: str):
        self.sim = sim
        self.token = token
        self.endpoints: set[int] = set()  # Ready, not terminating: the client Service
        self.lock = threading.Lock()

    def ready(self, o: int) -> bool:
        try:
            status, _, _ = call("GET", f"http://{self.sim.ip(o)}:7700/readyz", timeout=2, hops=0)
        except HttpError:
            return False
        return status == 200

    def healthy(self, o: int) -> bool:
        try:
            status, _, _ = call("GET", f"http://{self.sim.ip(o)}:7700/healthz", timeout=2, hops=0)
        except HttpError:
            return False
        return status == 200

    def wait_ready(self, o: int, timeout: float = 60) -> None:
        wait_until(f"{self.sim.pod_name(o)} Ready", lambda: self.ready(o), timeout)
        with self.lock:
            self.endpoints.add(o)

    def pick(self) -> int:
        with self.lock:
            eps = sorted(self.endpoints)
        if not eps:
            raise HttpError("client Service has no endpoints")
        return random.choice(eps)

    def api(self, method: str, path: str, body=None, via: int | None = None, timeout: float = 15):
        o = self.pick() if via is None else via
        return call(method, self.sim.api_url(o) + path, body, self.token, timeout=timeout)

    def status(self, o: int) -> dict:
        code, body, _ = call("GET", self.sim.api_url(o) + "/v1/cluster/status", token=self.token, hops=0)
        assert code == 200, (code, body)
        return body

    def leader_status(self) -> dict:
        def find():
            for o in sorted(self.endpoints):
                s = self.status(o)
                if s["role"] == "leader":
                    return s
            return None

        return wait_until("a leader", find, 30)

    def voters(self) -> list[int]:
        return sorted(m["id"] for m in self.leader_status()["members"] if m["voter"])


class Load:
    """Client threads: acquire (idempotent retries with one request_id), then release."""

    def __init__(self, cluster: Cluster, threads: int = 4):
        self.c = cluster
        self.stop_flag = threading.Event()
        self.acks: list[float] = []  # monotonic time of each acknowledged acquire
        self.tokens: dict[int, list[int]] = {}
        self.errors: list[str] = []
        self.lost: list[str] = []
        self.released = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=60)

    def note_error(self, what: str):
        with self.lock:
            self.errors.append(what)

    def until_ok(self, fn, deadline_s: float = 60):
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                code, body, _ = fn()
                if code in (200, 404, 410):
                    return code, body
                self.note_error(f"{code} {body}")
            except HttpError as e:
                self.note_error(str(e))
            if time.monotonic() > deadline:
                return None, None
            time.sleep(0.05)

    def run(self, i: int):
        mine = self.tokens.setdefault(i, [])
        while not self.stop_flag.is_set():
            rid = str(uuid.uuid4())
            body = {"request_id": rid, "ttl_ms": 60000, "wait_ms": 5000, "lane": f"client-{i}"}
            code, lease = self.until_ok(lambda: self.c.api("POST", f"/v1/resources/{RESOURCE}/acquire", body))
            if code != 200:
                if code is not None:
                    self.note_error(f"acquire {code} {lease}")
                continue
            with self.lock:
                self.acks.append(time.monotonic())
            mine.append(lease["fencing_token"])
            lid = lease["lease_id"]
            code, out = self.until_ok(lambda: self.c.api("POST", f"/v1/leases/{lid}/release", {}))
            if code == 200:
                with self.lock:
                    self.released += 1
            else:
                # 404 lease_not_found / 410 after an acknowledged grant: the grant was lost.
                with self.lock:
                    self.lost.append(f"release {lid}: {code} {out}")

    def longest_stall(self, t0: float, t1: float) -> float:
        with self.lock:
            ts = sorted(t for t in self.acks if t0 <= t <= t1)
        points = [t0] + ts + [t1]
        return max(b - a for a, b in zip(points, points[1:]))

    def acks_between(self, t0: float, t1: float) -> int:
        with self.lock:
            return sum(1 for t in self.acks if t0 <= t <= t1)


def hold_leases(c: Cluster) -> list[str]:
    out = []
    for _ in range(HELD):
        body = {"request_id": str(uuid.uuid4()), "ttl_ms": 600000, "lane": "held"}
        code, lease, _ = c.api("POST", f"/v1/resources/{RESOURCE}/acquire", body)
        assert code == 200, (code, lease)
        out.append(lease["lease_id"])
    return out


def held_still_live(c: Cluster, leases: list[str]) -> list[str]:
    """Renews every held lease; returns those the cluster no longer knows."""
    lost = []
    for lid in leases:
        code, body = None, None
        for _ in range(50):
            try:
                code, body, _ = c.api("POST", f"/v1/leases/{lid}/renew", {"ttl_ms": 600000})
            except HttpError:
                code = None
            if code in (200, 404, 410):
                break
            time.sleep(0.2)
        if code != 200:
            lost.append(f"{lid}: {code} {body}")
    return lost


def rehearse(args) -> dict:
    docs = [d for d in yaml.safe_load_all(Path(args.manifest).read_text()) if d]
    token = pysecrets.token_hex(24)
    secrets = {"ratequeue-secrets": {"admin-token": token, "cluster-secret": pysecrets.token_hex(24)}}
    sim = PodSim(docs, Path(args.bin), Path(args.workdir), secrets)
    n = sim.replicas
    extra = [n, n + 1]  # ordinals of the scale-out
    report: dict = {"replicas": n, "phases": {}}

    hosts = Path(args.workdir) / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text() + sim.hosts_file(range(n + 2)))
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    resolved = subprocess.run(["getent", "hosts", sim.dns(0)], capture_output=True, text=True).stdout
    assert resolved.startswith(sim.ip(0)), f"pod DNS not mapped: {resolved!r}"

    c = Cluster(sim, token)
    load = Load(c)
    try:
        # ---- 1. launch, all pods at once
        t0 = time.monotonic()
        for o in range(n):
            sim.start(o)
        for o in range(n):
            c.wait_ready(o, timeout=90)
        statuses = {o: c.status(o) for o in range(n)}
        leaders = {s["leader_id"] for s in statuses.values()}
        lead = statuses[0]["leader_id"]
        report["phases"]["launch"] = {
            "ready_after_s": round(time.monotonic() - t0, 2),
            "ids": {sim.pod_name(o): s["id"] for o, s in statuses.items()},
            "leaders_seen": sorted(leaders),
            "leader_url": statuses[0].get("leader_url"),
            "members": sorted((m["id"], m["peer_addr"]) for m in c.leader_status()["members"]),
            "voters": c.voters(),
        }
        follower = next(o for o, s in statuses.items() if s["role"] != "leader")
        code, body, visited = c.api(
            "PUT", f"/v1/resources/{RESOURCE}", {"concurrency": 10000, "max_queue": 10000}, via=follower
        )
        assert code in (200, 201), (code, body)
        report["phases"]["launch"]["redirect_from_follower"] = visited
        report["phases"]["launch"]["leader_pod_url"] = sim.api_url(lead - 1)

        held = hold_leases(c)
        load.start()
        time.sleep(2)

        # ---- 2. scale 3 -> 5: kubectl scale --replicas=5, then add each new pod
        t0 = time.monotonic()
        for o in extra:
            sim.start(o)
        for o in extra:
            wait_until(f"{sim.pod_name(o)} alive", lambda o=o: c.healthy(o), 60)
        waiting_not_ready = {sim.pod_name(o): (c.healthy(o), c.ready(o)) for o in extra}
        added = {}
        for o in extra:
            body = {
                "id": o + 1,
                "peer_addr": f"{sim.dns(o)}:{sim.port('peer')}",
                "api_url": sim.api_url(o),
            }
            code, out, _ = c.api("POST", "/v1/cluster/members", body, timeout=90)
            added[o + 1] = code
            assert code == 200, (code, out)
            c.wait_ready(o)
        report["phases"]["scale_out"] = {
            "new_pods_healthy_not_ready_before_add": waiting_not_ready,
            "add_status": added,
            "voters": c.voters(),
            "took_s": round(time.monotonic() - t0, 2),
            "acks": load.acks_between(t0, time.monotonic()),
        }

        # ---- 3. scale 5 -> 3: remove members (highest first), then shrink, delete PVCs
        t0 = time.monotonic()
        removed = {}
        for o in reversed(extra):
            code, out, _ = c.api("DELETE", f"/v1/cluster/members/{o + 1}", timeout=90)
            removed[o + 1] = code
            assert code == 200, (code, out)
        for o in reversed(extra):
            with c.lock:
                c.endpoints.discard(o)
            stop = sim.stop(o)
            assert not stop["killed_after_grace"], stop
            sim.delete_volume(o)
        report["phases"]["scale_in"] = {
            "remove_status": removed,
            "voters": c.voters(),
            "took_s": round(time.monotonic() - t0, 2),
            "acks": load.acks_between(t0, time.monotonic()),
        }

        # ---- 4. rolling restart, StatefulSet order
        restarts = []
        for o in reversed(range(n)):
            was_leader = c.leader_status()["id"] == o + 1
            t0 = time.monotonic()
            with c.lock:
                c.endpoints.discard(o)  # terminating: out of the client Service
            stop = sim.stop(o)
            sim.start(o)
            c.wait_ready(o, timeout=120)
            t_ready = time.monotonic()
            time.sleep(sim.min_ready_s)
            t1 = time.monotonic()
            restarts.append(
                {
                    "pod": sim.pod_name(o),
                    "was_leader": was_leader,
                    **stop,
                    "down_to_ready_s": round(t_ready - t0, 2),
                    "longest_client_stall_s": round(load.longest_stall(t0, t1), 3),
                    "acks_during": load.acks_between(t0, t1),
                }
            )
        report["phases"]["rolling_restart"] = restarts

        load.stop()
        report["held_leases_lost"] = held_still_live(c, held)

        # ---- 5. lost quorum: two of three nodes and their disks are gone
        # Runbook step 1: the survivor is the follower with the highest last_log_index
        # (a follower, so that losing quorum is visible on it at once).
        views = {o: c.status(o) for o in range(n)}
        survivor = max(
            (o for o, v in views.items() if v["role"] != "leader"),
            key=lambda o: views[o]["last_log_index"] or 0,
        )
        lost = [o for o in range(n) if o != survivor]
        before = views[survivor]
        for o in lost:
            with c.lock:
                c.endpoints.discard(o)
            sim.kill(o)
            sim.delete_volume(o)
        wait_until("survivor unready", lambda: not c.ready(survivor), 30)
        lost_q = {
            "survivor": sim.pod_name(survivor),
            "survivor_applied_index": before["applied_index"],
            "survivor_healthy_without_quorum": c.healthy(survivor),
            "survivor_ready_without_quorum": c.ready(survivor),
        }
        # Runbook: scale to 0, seed the lost pods' volumes from the survivor's, scale to 3.
        with c.lock:
            c.endpoints.clear()
        stop = sim.stop(survivor)
        lost_q["survivor_stop"] = stop
        for o in lost:
            sim.seed_volume(survivor, o)
        t0 = time.monotonic()
        for o in range(n):
            sim.start(o)
        for o in range(n):
            c.wait_ready(o, timeout=90)
        lost_q["recovered_after_s"] = round(time.monotonic() - t0, 2)
        lost_q["voters"] = c.voters()
        lost_q["held_leases_lost"] = held_still_live(c, held)
        code, lease, _ = c.api("POST", f"/v1/resources/{RESOURCE}/acquire", {"wait_ms": 5000})
        lost_q["acquire_after_recovery"] = code
        report["phases"]["lost_quorum_recovery"] = lost_q
        report["load"] = {
            "acknowledged": len(load.acks),
            "released": load.released,
            "lost": load.lost,
            "errors": len(load.errors),
            "error_samples": load.errors[:5],
            "tokens_increase_per_client": all(all(a < b for a, b in zip(t, t[1:])) for t in load.tokens.values()),
            "tokens_unique": len({x for t in load.tokens.values() for x in t})
            == sum(len(t) for t in load.tokens.values()),
        }
        report["final_voters"] = c.voters()
        report["ok"] = True
    except Exception:
        report["ok"] = False
        report["exception"] = traceback.format_exc()
        report["logs"] = {sim.pod_name(o): sim.log_tail(o) for o in list(sim.pods)}
    finally:
        load.stop_flag.set()
        sim.kill_all()
    return report


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--manifest", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--report", required=True)
    args = p.parse_args()
    # Refuse to touch the machine's /etc/hosts: only in a mount namespace of its own
    # (`unshare` execs this script, so the parent is the caller, outside it).
    if os.readlink("/proc/self/ns/mnt") == os.readlink(f"/proc/{os.getppid()}/ns/mnt"):
        sys.exit("rehearsal.py must run under `unshare --mount --propagation private`")
    report = rehearse(args)
    Path(args.report).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
