"""deploy/Dockerfile and deploy/compose.yaml: the conventions that no engine checks here.

No Docker engine runs on the project's machines, so the image cannot be built in the
test command. hadolint (run by deploy/validate.sh) lints the Dockerfile; these tests
assert what the manifests rely on: the entrypoint, the user, the data directory and the
build command, and that the image, the StatefulSet and the compose file agree.
"""

from __future__ import annotations

import json
import re
import shlex

import yaml

from conftest import DEPLOY, rendered_overlay

BUILD = "cargo build --release --locked -p ratequeue-node -p ratequeue-client"


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            out.append([])
        if out:
            out[-1].append((instr, rest.strip()))
    return out


def final() -> list[tuple[str, str]]:
    return stages()[-1]


def args_of(stage, instr) -> list[str]:
    return [a for i, a in stage if i == instr]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for a in args_of(final(), "ENV"):
        for tok in shlex.split(a):
            k, _, v = tok.partition("=")
            env[k] = v
    return env


def sts_container():
    docs = rendered_overlay("3-nodes")
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    return sts["spec"]["template"]["spec"], sts["spec"]["template"]["spec"]["containers"][0]


def test_multi_stage_build_of_both_binaries():
    st = stages()
    assert len(st) >= 2, "multi-stage"
    build = " ".join(args_of(st[0], "RUN"))
    assert BUILD in re.sub(r"\s+", " ", build)
    assert "target/release/ratequeue " in build and "target/release/rqctl " in build
    # The runtime stage gets binaries only, never a toolchain.
    runtime_from = args_of(final(), "FROM")[0]
    assert "rust" not in runtime_from.split()[0] and "cargo" not in runtime_from
    copies = args_of(final(), "COPY")
    assert any("/usr/local/bin/ratequeue" in c or ("ratequeue" in c and c.endswith("/usr/local/bin/")) for c in copies)
    assert any("rqctl" in c for c in copies)


def test_runtime_is_minimal_and_pinned():
    base = args_of(final(), "FROM")[0].split()[0]
    assert base.startswith("gcr.io/distroless/cc-debian12"), base
    first = args_of(stages()[0], "FROM")[0].split()[0]
    assert "bookworm" in first, "build on the runtime's Debian release (same glibc)"


def test_non_root_user_owns_the_data_dir():
    users = args_of(final(), "USER")
    assert users, "USER missing"
    uid = users[-1].split(":")[0]
    assert uid not in {"0", "root"} and uid.isdigit(), "numeric non-root user (runAsNonRoot can verify it)"
    spec, _c = sts_container()
    assert int(uid) == spec["securityContext"]["runAsUser"]
    data_copies = [c for c in args_of(final(), "COPY") if c.endswith(" /var/lib/ratequeue")]
    assert data_copies and f"--chown={uid}:" in data_copies[0]


def test_entrypoint_is_ratequeue_serve_and_matches_the_statefulset():
    eps = args_of(final(), "ENTRYPOINT")
    assert eps, "ENTRYPOINT missing"
    entry = json.loads(eps[-1])
    assert entry == ["/usr/local/bin/ratequeue", "serve"], entry
    _spec, c = sts_container()
    assert c["command"] == entry


def test_image_defaults_match_the_manifests():
    env = image_env()
    assert env["RATEQUEUE_DATA_DIR"].startswith("/var/lib/ratequeue/")
    _spec, c = sts_container()
    sts_env = {e["name"]: e.get("value") for e in c["env"]}
    for k in ("RATEQUEUE_DATA_DIR", "RATEQUEUE_API_ADDR", "RATEQUEUE_PEER_ADDR"):
        assert env[k] == sts_env[k], k
    exposed = " ".join(args_of(final(), "EXPOSE")).split()
    assert exposed == ["7700", "7701"]
    assert args_of(final(), "STOPSIGNAL") == ["SIGTERM"]
    assert not any(re.search(r"TOKEN|SECRET", a) for a in args_of(final(), "ENV")), "no secret baked in"


def test_dockerignore_keeps_build_artifacts_out():
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "**/target" in ignore and ".git" in ignore


# ---------------------------------------------------------------- compose


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_three_nodes_with_ordinal_hostnames():
    services = compose()["services"]
    assert sorted(services) == ["ratequeue-0", "ratequeue-1", "ratequeue-2"]
    for name, svc in services.items():
        assert svc["hostname"] == name, "the node id is derived from $HOSTNAME"
        env = svc["environment"]
        assert "RATEQUEUE_ID" not in env
        peers = dict(p.split("=", 1) for p in env["RATEQUEUE_PEERS"].split(","))
        assert peers == {str(i + 1): f"ratequeue-{i}:7701" for i in range(3)}
        assert env["RATEQUEUE_ADVERTISE_PEER_ADDR"] == f"{name}:7701"


def test_compose_publishes_what_it_advertises():
    for name, svc in compose()["services"].items():
        ordinal = int(name.rsplit("-", 1)[1])
        port = 7700 + 10 * ordinal
        assert svc["ports"] == [f"127.0.0.1:{port}:7700"]
        assert svc["environment"]["RATEQUEUE_ADVERTISE_API_URL"] == f"http://127.0.0.1:{port}"
        assert svc["volumes"] == [f"data-{ordinal}:/var/lib/ratequeue"]


def test_compose_hardening_and_no_inline_secrets():
    for svc in compose()["services"].values():
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
        assert svc["read_only"] is True
        assert svc["user"].split(":")[0] == "65532"
        assert svc["cap_drop"] == ["ALL"]
        assert int(svc["stop_grace_period"].rstrip("s")) >= 20
        env = svc["environment"]
        for k in ("RATEQUEUE_ADMIN_TOKEN", "RATEQUEUE_CLUSTER_SECRET"):
            assert re.fullmatch(r"\$\{" + k + r":\?[^}]*\}", env[k]), f"{k} must come from the caller's environment"


# ---------------------------------------------------------------- alert rules


def test_alert_rules_are_well_formed():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    groups = rules["groups"]
    alerts = [r for g in groups for r in g["rules"]]
    names = {r["alert"] for r in alerts}
    assert {"RatequeueNoLeader", "RatequeueNodeDown", "RatequeueApplyRejections"} <= names
    for r in alerts:
        assert r["labels"]["severity"] in {"page", "ticket"}
        assert r["annotations"]["summary"] and r["annotations"]["runbook"].startswith("docs/operations.md#")
        assert re.search(r"\b(ratequeue_|up\{|kubelet_volume_stats_)", r["expr"]), r["alert"]


def test_alert_rules_use_metrics_the_server_exports():
    """Every ratequeue_* series an alert reads is rendered by the server's source."""
    src_dir = DEPLOY.parent / "node" / "server" / "src"
    source = "\n".join(p.read_text() for p in src_dir.rglob("*.rs"))
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    used = set()
    for g in rules["groups"]:
        for r in g["rules"]:
            used |= set(re.findall(r"\bratequeue_[a-z_]+", r["expr"]))
    assert used, "no ratequeue_ metric used"
    for name in sorted(used):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert base in source, f"alert uses {name}, which the server does not export"


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def test_alert_runbook_links_resolve():
    doc = (DEPLOY.parent / "docs" / "operations.md").read_text()
    anchors = {_slug(h) for h in re.findall(r"^#{2,4} (.+)$", doc, re.M)}
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    for g in rules["groups"]:
        for r in g["rules"]:
            anchor = r["annotations"]["runbook"].split("#", 1)[1]
            assert anchor in anchors, f"{r['alert']}: docs/operations.md has no section #{anchor}"
    for link in set(re.findall(r"\]\(#([^)]+)\)", doc)):
        assert link in anchors, f"docs/operations.md links to missing #{link}"
