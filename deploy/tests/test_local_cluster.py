"""The manifest's container command line starts a working cluster, and the runbook's
scale 3 -> 5 -> 3 and rolling restart work under client load (rehearsal.py, on loopback).

Runs the rendered 3-node overlay's StatefulSet with the locally built `ratequeue`
binary ($RATEQUEUE_BIN, else target/debug/ratequeue), each pod on its own loopback
address and its DNS name mapped there in a private mount namespace. Needs root (for
`unshare --mount`), as the project's machines and CI are.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from conftest import DEPLOY, REPO, rendered_overlay

# A restarted node may leave clients without a completed acquire for at most this long:
# the leader's hand-off bound (10 s) plus one election (1-2 s) plus slack. A hand-off
# that works stalls clients well under a second (the report prints the measurements);
# a failed one (the retiring leader wins the election again) costs the full bound.
STALL_MAX_S = 15.0


def binary() -> Path:
    b = Path(os.environ.get("RATEQUEUE_BIN") or REPO / "target" / "debug" / "ratequeue")
    assert b.exists(), f"{b} missing: build it (cargo build -p ratequeue-node) or set RATEQUEUE_BIN"
    return b


@pytest.fixture(scope="module")
def report() -> dict:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    work = Path(tempfile.mkdtemp(prefix="ratequeue-podsim-"))
    manifest = work / "3-nodes.yaml"
    manifest.write_text(yaml.safe_dump_all(rendered_overlay("3-nodes")))
    out = work / "report.json"
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, str(DEPLOY / "tests" / "rehearsal.py"),
         "--manifest", str(manifest), "--bin", str(binary()), "--workdir", str(work), "--report", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert out.exists(), f"rehearsal crashed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    rep = json.loads(out.read_text())
    print(json.dumps({k: v for k, v in rep.items() if k != "logs"}, indent=2))
    (Path(tempfile.gettempdir()) / "ratequeue-rehearsal-report.json").write_text(json.dumps(rep, indent=2))
    assert rep["ok"], f"{rep.get('exception')}\n" + "\n".join(f"--- {k}\n{v}" for k, v in rep.get("logs", {}).items())
    shutil.rmtree(work, ignore_errors=True)
    return rep


def test_manifest_command_line_bootstraps_a_cluster(report):
    launch = report["phases"]["launch"]
    assert launch["ids"] == {"ratequeue-0": 1, "ratequeue-1": 2, "ratequeue-2": 3}, "ids from the pod ordinal"
    assert len(launch["leaders_seen"]) == 1, "every pod names the same leader"
    assert launch["voters"] == [1, 2, 3]
    assert [a for _i, a in launch["members"]] == [
        f"ratequeue-{i}.ratequeue-peers.ratequeue.svc:7701" for i in range(3)
    ], "members are the stable pod DNS names"


def test_followers_redirect_to_the_leaders_pod_dns_name(report):
    launch = report["phases"]["launch"]
    hops = launch["redirect_from_follower"]
    assert len(hops) == 2, hops
    assert hops[1].startswith(launch["leader_pod_url"] + "/v1/resources/")
    assert launch["leader_url"] == launch["leader_pod_url"]


def test_scale_out_to_five_with_the_members_api(report):
    out = report["phases"]["scale_out"]
    for pod, (healthy, ready) in out["new_pods_healthy_not_ready_before_add"].items():
        assert healthy and not ready, f"{pod} must wait, alive but not Ready, until added"
    assert out["add_status"] == {"4": 200, "5": 200}
    assert out["voters"] == [1, 2, 3, 4, 5]
    assert out["acks"] > 0, "clients were served during the scale-out"


def test_scale_in_to_three(report):
    scale_in = report["phases"]["scale_in"]
    assert scale_in["remove_status"] == {"5": 200, "4": 200}
    assert scale_in["voters"] == [1, 2, 3]
    assert report["final_voters"] == [1, 2, 3]


def test_rolling_restart_within_grace_and_bounded_unavailability(report):
    restarts = report["phases"]["rolling_restart"]
    assert [r["pod"] for r in restarts] == ["ratequeue-2", "ratequeue-1", "ratequeue-0"]
    for r in restarts:
        assert r["exit_code"] == 0 and not r["killed_after_grace"], r
        assert r["longest_client_stall_s"] <= STALL_MAX_S, r
        assert r["acks_during"] > 0, r


def test_no_acknowledged_grant_lost(report):
    assert report["held_leases_lost"] == [], "leases held across all phases must still renew"
    load = report["load"]
    assert load["lost"] == []
    assert load["acknowledged"] > 100
    assert load["released"] == load["acknowledged"]
    assert load["tokens_unique"] and load["tokens_increase_per_client"]


def test_lost_quorum_recovery_from_a_survivors_data(report):
    rec = report["phases"]["lost_quorum_recovery"]
    assert rec["survivor_healthy_without_quorum"] is True, "liveness must not restart a node without quorum"
    assert rec["survivor_ready_without_quorum"] is False, "without a leader the pod leaves the client Service"
    assert rec["survivor_stop"]["exit_code"] == 0 and not rec["survivor_stop"]["killed_after_grace"]
    assert rec["voters"] == [1, 2, 3]
    assert rec["held_leases_lost"] == [], "grants acknowledged before the loss survive the recovery"
    assert rec["acquire_after_recovery"] == 200


def test_runbook_gives_the_rehearsed_commands():
    """The runbook's commands are the ones the rehearsal runs (as HTTP calls)."""
    doc = (REPO / "docs" / "operations.md").read_text()
    for text in [
        "kubectl -n ratequeue scale statefulset ratequeue --replicas=5",
        '"peer_addr": "ratequeue-3.ratequeue-peers.ratequeue.svc:7701"',
        '"api_url": "http://ratequeue-3.ratequeue-peers.ratequeue.svc:7700"',
        '-X POST "$LEADER_URL/v1/cluster/members"',
        '-X DELETE "$LEADER_URL/v1/cluster/members/5"',
        "kubectl -n ratequeue scale statefulset ratequeue --replicas=3",
        "kubectl -n ratequeue delete pvc data-ratequeue-3 data-ratequeue-4",
        "kubectl -n ratequeue scale statefulset ratequeue --replicas=0",
        "highest `last_log_index`",
    ]:
        assert text in doc, f"docs/operations.md lost the rehearsed step: {text}"
