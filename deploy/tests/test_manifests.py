"""The Kubernetes conventions of deploy/k8s, asserted on the rendered overlays.

Each `check_*` function takes the rendered objects of one overlay (and its expected
replica count) and raises AssertionError with a reason. The tests run every check on
every overlay; `test_checks_catch_mutations` breaks a copy of the manifests in the ways
that matter and asserts that the matching check fails, so none of them is vacuous.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from conftest import DEPLOY, OVERLAYS, REPO, rendered_overlay

NAMESPACE = "ratequeue"
SECRET_NAME = "ratequeue-secrets"
SECRET_ENV = {
    "RATEQUEUE_ADMIN_TOKEN": "admin-token",
    "RATEQUEUE_CLUSTER_SECRET": "cluster-secret",
    "RATEQUEUE_API_KEY": "admin-token",
}
API_PORT = 7700
PEER_PORT = 7701
METRICS_PORT = 7702
DATA_MOUNT = "/var/lib/ratequeue"
# The leadership hand-off bound of `ratequeue serve` on SIGTERM (DESIGN.md §6,
# node/server/src/node.rs HANDOFF_TIMEOUT). Read from the source when it is there.
HANDOFF_S_DOCUMENTED = 10
# After the hand-off: raft shutdown, final flush, listener drain (5 s + 2 s).
SHUTDOWN_TAIL_S = 8
STARTUP_BUDGET_S_MIN = 300


def handoff_timeout_s() -> int:
    src = REPO / "node" / "server" / "src" / "node.rs"
    if src.exists():
        m = re.search(r"HANDOFF_TIMEOUT: Duration = Duration::from_secs\((\d+)\)", src.read_text())
        if m:
            return int(m.group(1))
    return HANDOFF_S_DOCUMENTED


# ---------------------------------------------------------------- helpers


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"want exactly one {kind} {name or ''}, found {len(found)}"
    return found[0]


def statefulset(docs):
    return one(docs, "StatefulSet", "ratequeue")


def pod_spec(docs):
    return statefulset(docs)["spec"]["template"]["spec"]


def container(docs):
    cs = pod_spec(docs)["containers"]
    assert [c["name"] for c in cs] == ["ratequeue"], "one container named ratequeue"
    return cs[0]


def env_list(docs) -> list[dict]:
    return container(docs).get("env", [])


def env_value(docs, name: str) -> str:
    matches = [e for e in env_list(docs) if e["name"] == name]
    assert len(matches) == 1, f"env {name} defined {len(matches)} times"
    assert "value" in matches[0], f"env {name} has no literal value"
    return matches[0]["value"]


def container_port(docs, name_or_number) -> int:
    if isinstance(name_or_number, int):
        return name_or_number
    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    assert name_or_number in ports, f"no container port named {name_or_number}"
    return ports[name_or_number]


def selector(docs) -> dict:
    return statefulset(docs)["spec"]["selector"]["matchLabels"]


def headless(docs):
    return one(docs, "Service", statefulset(docs)["spec"]["serviceName"])


def client_service(docs):
    governing = statefulset(docs)["spec"]["serviceName"]
    services = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] != governing]
    assert len(services) == 1, "exactly one client Service besides the headless one"
    return services[0]


def parse_peers(value: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for part in value.split(","):
        ident, addr = part.split("=", 1)
        assert int(ident) not in out, f"peer id {ident} twice"
        out[int(ident)] = addr
    return out


# ---------------------------------------------------------------- checks


def check_replicas(docs, replicas):
    assert statefulset(docs)["spec"]["replicas"] == replicas


def check_parallel(docs, replicas):
    spec = statefulset(docs)["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec.get("updateStrategy", {}).get("type", "RollingUpdate") == "RollingUpdate"
    assert spec.get("minReadySeconds", 0) >= 5, "give a restarted node time to catch up"


def check_peers_match_replicas(docs, replicas):
    """RATEQUEUE_PEERS lists ids 1..N for the pods ratequeue-0..N-1, by stable DNS name."""
    sts = statefulset(docs)
    svc = sts["spec"]["serviceName"]
    name = sts["metadata"]["name"]
    peer_port = container_port(docs, "peer")
    peers = parse_peers(env_value(docs, "RATEQUEUE_PEERS"))
    n = sts["spec"]["replicas"]
    assert n == replicas, f"{n} replicas, want {replicas}"
    assert sorted(peers) == list(range(1, n + 1)), f"peer ids {sorted(peers)} for {n} replicas"
    for ident, addr in peers.items():
        assert addr == f"{name}-{ident - 1}.{svc}.$(POD_NAMESPACE).svc:{peer_port}", addr


def check_env_wiring(docs, replicas):
    """Listen on every interface, advertise the pod's DNS name, id from $HOSTNAME."""
    sts = statefulset(docs)
    svc = sts["spec"]["serviceName"]
    api, peer = container_port(docs, "api"), container_port(docs, "peer")
    assert (api, peer) == (API_PORT, PEER_PORT)
    assert env_value(docs, "RATEQUEUE_API_ADDR") == f"0.0.0.0:{api}"
    assert env_value(docs, "RATEQUEUE_PEER_ADDR") == f"0.0.0.0:{peer}"
    assert env_value(docs, "RATEQUEUE_ADVERTISE_API_URL") == f"http://$(POD_NAME).{svc}.$(POD_NAMESPACE).svc:{api}"
    assert env_value(docs, "RATEQUEUE_ADVERTISE_PEER_ADDR") == f"$(POD_NAME).{svc}.$(POD_NAMESPACE).svc:{peer}"
    names = [e["name"] for e in env_list(docs)]
    assert "RATEQUEUE_ID" not in names, "the id comes from the pod ordinal ($HOSTNAME)"
    fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in env_list(docs) if "fieldRef" in e.get("valueFrom", {})}
    assert fields.get("POD_NAME") == "metadata.name"
    assert fields.get("POD_NAMESPACE") == "metadata.namespace"
    # The kubelet expands $(VAR) only for variables defined earlier in the list.
    for i, e in enumerate(env_list(docs)):
        for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e.get("value", "")):
            assert ref in names[:i], f"{e['name']} uses $({ref}) before it is defined"
    assert container(docs)["command"] == ["/usr/local/bin/ratequeue", "serve"]
    assert pod_spec(docs).get("enableServiceLinks") is False, "Service links would inject RATEQUEUE_* variables"


def check_services(docs, replicas):
    peers = headless(docs)["spec"]
    assert peers.get("clusterIP") == "None", "the governing Service is headless"
    assert peers.get("publishNotReadyAddresses") is True, "peers must resolve before any pod is Ready"
    assert {p["name"]: p["port"] for p in peers["ports"]} == {"api": API_PORT, "peer": PEER_PORT}
    client = client_service(docs)["spec"]
    assert client.get("clusterIP") != "None"
    assert client.get("publishNotReadyAddresses", False) is False, "clients see only Ready pods"
    assert [(p["port"], p["targetPort"]) for p in client["ports"]] == [(API_PORT, "api")], "no peer port for clients"


def check_selectors_match(docs, replicas):
    sel = selector(docs)
    assert sel, "empty StatefulSet selector"
    labels = statefulset(docs)["spec"]["template"]["metadata"]["labels"]
    assert sel.items() <= labels.items(), "StatefulSet selector does not select its own pods"
    assert headless(docs)["spec"]["selector"] == sel
    assert client_service(docs)["spec"]["selector"] == sel
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"] == {"matchLabels": sel}
    assert one(docs, "NetworkPolicy")["spec"]["podSelector"] == {"matchLabels": sel}
    spec = pod_spec(docs)
    for term in spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]:
        assert term["labelSelector"] == {"matchLabels": sel}
    for c in spec["topologySpreadConstraints"]:
        assert c["labelSelector"] == {"matchLabels": sel}


def check_probes(docs, replicas):
    c = container(docs)
    api = container_port(docs, "api")

    def http(probe_name):
        probe = c.get(probe_name)
        assert probe, f"{probe_name} missing"
        get = probe["httpGet"]
        assert container_port(docs, get["port"]) == api, f"{probe_name} must use the API port"
        return probe, get["path"]

    readiness, rpath = http("readinessProbe")
    liveness, lpath = http("livenessProbe")
    startup, spath = http("startupProbe")
    assert rpath == "/readyz", "readiness: serving and knows a leader"
    assert lpath == "/healthz", "liveness must never need quorum"
    assert spath == "/healthz"
    budget = startup.get("failureThreshold", 3) * startup.get("periodSeconds", 10)
    assert budget >= STARTUP_BUDGET_S_MIN, f"startup probe allows only {budget}s for log replay"
    live_budget = liveness.get("failureThreshold", 3) * liveness.get("periodSeconds", 10)
    assert live_budget >= 30, "liveness must not kill a node on a short stall"


def check_pdb(docs, replicas):
    spec = one(docs, "PodDisruptionBudget")["spec"]
    assert spec.get("maxUnavailable") == 1
    assert "minAvailable" not in spec


def check_storage(docs, replicas):
    spec = statefulset(docs)["spec"]
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    templates = spec["volumeClaimTemplates"]
    assert [t["metadata"]["name"] for t in templates] == ["data"]
    assert templates[0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in container(docs)["volumeMounts"]}
    assert mounts.get("data") == DATA_MOUNT
    data_dir = env_value(docs, "RATEQUEUE_DATA_DIR")
    # A fresh ext4 volume holds lost+found: the data dir must be a subdirectory, or
    # the node would never see an empty dir and never bootstrap.
    assert data_dir.startswith(DATA_MOUNT + "/") and data_dir != DATA_MOUNT + "/", data_dir


def check_security_context(docs, replicas):
    pod = pod_spec(docs)
    psc = pod["securityContext"]
    assert psc.get("runAsNonRoot") is True
    assert psc.get("runAsUser", 0) != 0
    assert psc.get("fsGroup") == psc.get("runAsGroup"), "the volume must be writable by the runtime group"
    assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    csc = container(docs)["securityContext"]
    assert csc.get("runAsNonRoot") is True
    assert csc.get("readOnlyRootFilesystem") is True
    assert csc.get("allowPrivilegeEscalation") is False
    assert csc.get("privileged", False) is False
    assert csc.get("capabilities", {}).get("drop") == ["ALL"]
    assert not csc.get("capabilities", {}).get("add")
    assert pod.get("automountServiceAccountToken") is False
    assert not pod.get("hostNetwork") and not pod.get("hostPID")


def check_scheduling(docs, replicas):
    spec = pod_spec(docs)
    terms = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert [t["topologyKey"] for t in terms] == ["kubernetes.io/hostname"], "one voter per node"
    zones = [c for c in spec["topologySpreadConstraints"] if c["topologyKey"] == "topology.kubernetes.io/zone"]
    assert len(zones) == 1 and zones[0]["maxSkew"] == 1


def check_termination(docs, replicas):
    spec = pod_spec(docs)
    pre_stop = container(docs)["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        delay = pre_stop["sleep"]["seconds"]
    else:
        cmd = pre_stop["exec"]["command"]
        assert cmd[-2:-1] == ["sleep"] or cmd[0] == "sleep", cmd
        delay = int(cmd[-1])
    assert delay >= 3, "let endpoints drop the pod before the node stops accepting"
    need = delay + handoff_timeout_s() + SHUTDOWN_TAIL_S
    grace = spec["terminationGracePeriodSeconds"]
    assert grace >= need, f"terminationGracePeriodSeconds {grace} < preStop {delay} + hand-off + tail = {need}"


def check_network_policy(docs, replicas):
    policy = one(docs, "NetworkPolicy")["spec"]
    assert "Ingress" in policy["policyTypes"]
    sel = selector(docs)
    peer, api = container_port(docs, "peer"), container_port(docs, "api")
    admits_api = False
    peer_rules = 0
    for rule in policy.get("ingress", []):
        ports = [container_port(docs, p["port"]) for p in rule.get("ports", [])]
        sources = rule.get("from")
        if not ports or peer in ports:
            # Any rule that opens the peer port (a rule without ports opens all of them)
            # must admit only this cluster's pods, from this namespace.
            assert sources, "the peer port is open to everyone"
            for src in sources:
                assert set(src) == {"podSelector"}, f"peer port admits {sorted(src)}"
                assert src["podSelector"] == {"matchLabels": sel}, "peer port admits other pods"
            peer_rules += 1
        if api in ports:
            admits_api = True
    assert peer_rules >= 1, "no rule admits the peer port from the cluster's own pods"
    assert admits_api, "the API port (clients, probes) must be reachable"


def check_metrics(docs, replicas):
    """Prometheus scrapes the metrics listener (no token), which only the monitoring
    namespace may reach; /metrics on the API port needs a monitor key."""
    metrics = container_port(docs, "metrics")
    assert metrics == METRICS_PORT
    assert env_value(docs, "RATEQUEUE_METRICS_ADDR") == f"0.0.0.0:{metrics}"
    ann = statefulset(docs)["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/port"] == str(metrics), "scrape the metrics listener"
    assert ann["prometheus.io/path"] == "/metrics"
    policy = one(docs, "NetworkPolicy")["spec"]
    rules = [r for r in policy["ingress"] if metrics in [container_port(docs, p["port"]) for p in r.get("ports", [])]]
    assert rules, "no rule admits the metrics port"
    for r in rules:
        assert r.get("from"), "the unauthenticated metrics port is open to everyone"
        for src in r["from"]:
            assert src.get("namespaceSelector", {}).get("matchLabels"), "the metrics port admits any namespace"
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "scrape.yaml").read_text())
    job = next(j for j in scrape["scrape_configs"] if j["job_name"] == "ratequeue")
    kept = {tuple(r["source_labels"]): r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"}
    assert kept[("__meta_kubernetes_pod_container_port_name",)] in {
        p["name"] for p in container(docs)["ports"] if p["containerPort"] == metrics
    }, "the scrape job must keep the metrics port"


def check_secrets(docs, replicas):
    assert not [d for d in docs if d["kind"] == "Secret"], "a Secret is rendered into plain manifests"
    for name, key in SECRET_ENV.items():
        entries = [e for e in env_list(docs) if e["name"] == name]
        assert len(entries) == 1, f"{name} missing"
        e = entries[0]
        assert "value" not in e, f"{name} inlined"
        assert e["valueFrom"]["secretKeyRef"] == {"name": SECRET_NAME, "key": key}
    c = container(docs)
    for arg in c.get("command", []) + c.get("args", []):
        assert not re.match(r"--(admin-token|cluster-secret)(=|$)", arg), "secret on the command line"
    for e in env_list(docs):
        assert not re.search(r"(TOKEN|SECRET|KEY)$", e["name"]) or "valueFrom" in e, f"{e['name']} inlined"


def check_resources(docs, replicas):
    res = container(docs)["resources"]
    for kind in ("cpu", "memory"):
        assert kind in res["requests"] and kind in res["limits"], f"{kind} requests and limits"
    assert _mem(res["limits"]["memory"]) >= _mem(res["requests"]["memory"])
    assert _mem(res["limits"]["memory"]) >= 1024**3, "100k waiters need up to 1 GiB (DESIGN.md §8)"


def _mem(q: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    for u, f in units.items():
        if q.endswith(u):
            return int(q[: -len(u)]) * f
    return int(q)


def check_namespace(docs, replicas):
    ns = one(docs, "Namespace")
    assert ns["metadata"]["name"] == NAMESPACE
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == NAMESPACE, f"{d['kind']} outside {NAMESPACE}"


def check_image(docs, replicas):
    image = container(docs)["image"]
    assert ":" in image.rsplit("/", 1)[-1], f"image {image} has no tag"
    assert not image.endswith(":latest")


CHECKS = [
    check_replicas,
    check_parallel,
    check_peers_match_replicas,
    check_env_wiring,
    check_services,
    check_selectors_match,
    check_probes,
    check_pdb,
    check_storage,
    check_security_context,
    check_scheduling,
    check_termination,
    check_network_policy,
    check_metrics,
    check_secrets,
    check_resources,
    check_namespace,
    check_image,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_convention(overlay, check):
    _name, replicas, docs = overlay
    check(docs, replicas)


def test_overlays_differ_only_in_size():
    """Both overlays render the same objects; only replicas and the peer list differ."""

    def normalise(docs):
        out = copy.deepcopy(docs)
        sts = statefulset(out)
        del sts["spec"]["replicas"]
        for e in container(out)["env"]:
            if e["name"] == "RATEQUEUE_PEERS":
                e["value"] = "<peers>"
        return out

    assert normalise(rendered_overlay("3-nodes")) == normalise(rendered_overlay("5-nodes"))


def test_handoff_timeout_known():
    assert handoff_timeout_s() >= HANDOFF_S_DOCUMENTED


# ---------------------------------------------------------------- the checks can fail


def _env(docs, name):
    return next(e for e in container(docs)["env"] if e["name"] == name)


def _mut_peers(docs):
    _env(docs, "RATEQUEUE_PEERS")["value"] = _env(docs, "RATEQUEUE_PEERS")["value"].rsplit(",", 1)[0]


def _mut_replicas(docs):
    statefulset(docs)["spec"]["replicas"] += 2


def _mut_ordered(docs):
    statefulset(docs)["spec"]["podManagementPolicy"] = "OrderedReady"


def _mut_not_ready(docs):
    headless(docs)["spec"]["publishNotReadyAddresses"] = False


def _mut_readiness_is_leader(docs):
    container(docs)["readinessProbe"]["httpGet"]["path"] = "/v1/cluster/status"


def _mut_liveness_quorum(docs):
    container(docs)["livenessProbe"]["httpGet"]["path"] = "/readyz"


def _mut_probe_port(docs):
    container(docs)["readinessProbe"]["httpGet"]["port"] = "peer"


def _mut_pdb(docs):
    one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] = 2


def _mut_pdb_selector(docs):
    one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "other"


def _mut_retention(docs):
    statefulset(docs)["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] = "Delete"


def _mut_root(docs):
    container(docs)["securityContext"]["readOnlyRootFilesystem"] = False


def _mut_grace(docs):
    pod_spec(docs)["terminationGracePeriodSeconds"] = 10


def _mut_prestop(docs):
    del container(docs)["lifecycle"]["preStop"]


def _mut_netpol(docs):
    rules = one(docs, "NetworkPolicy")["spec"]["ingress"]
    rules[0]["from"].append({"namespaceSelector": {}})


def _mut_netpol_open(docs):
    del one(docs, "NetworkPolicy")["spec"]["ingress"][0]["from"]


def _mut_metrics_open(docs):
    rules = one(docs, "NetworkPolicy")["spec"]["ingress"]
    del next(r for r in rules if r["ports"][0]["port"] == "metrics")["from"]


def _mut_scrape_api(docs):
    statefulset(docs)["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] = "7700"


def _mut_secret_inline(docs):
    e = _env(docs, "RATEQUEUE_CLUSTER_SECRET")
    e.pop("valueFrom")
    e["value"] = "hunter2hunter2"


def _mut_secret_object(docs):
    docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET_NAME}, "stringData": {}})


def _mut_antiaffinity(docs):
    del pod_spec(docs)["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]


def _mut_data_dir(docs):
    _env(docs, "RATEQUEUE_DATA_DIR")["value"] = DATA_MOUNT


def _mut_advertise(docs):
    _env(docs, "RATEQUEUE_ADVERTISE_API_URL")["value"] = "http://ratequeue:7700"


MUTATIONS = [
    (_mut_peers, check_peers_match_replicas),
    (_mut_replicas, check_peers_match_replicas),
    (_mut_ordered, check_parallel),
    (_mut_not_ready, check_services),
    (_mut_readiness_is_leader, check_probes),
    (_mut_liveness_quorum, check_probes),
    (_mut_probe_port, check_probes),
    (_mut_pdb, check_pdb),
    (_mut_pdb_selector, check_selectors_match),
    (_mut_retention, check_storage),
    (_mut_root, check_security_context),
    (_mut_grace, check_termination),
    (_mut_prestop, check_termination),
    (_mut_netpol, check_network_policy),
    (_mut_netpol_open, check_network_policy),
    (_mut_metrics_open, check_metrics),
    (_mut_scrape_api, check_metrics),
    (_mut_secret_inline, check_secrets),
    (_mut_secret_object, check_secrets),
    (_mut_antiaffinity, check_scheduling),
    (_mut_data_dir, check_storage),
    (_mut_advertise, check_env_wiring),
]


@pytest.mark.parametrize("mutate,check", MUTATIONS, ids=lambda x: x.__name__.strip("_"))
def test_checks_catch_mutations(mutate, check):
    docs = copy.deepcopy(rendered_overlay("5-nodes"))
    check(docs, OVERLAYS["5-nodes"])  # passes before
    mutate(docs)
    with pytest.raises((AssertionError, KeyError)):
        check(docs, OVERLAYS["5-nodes"])


# ---------------------------------------------------------------- sources


def test_kustomize_replicas_and_peers_stay_together():
    """Each overlay sets replicas and the peer list in its own files, both to N."""
    for name, replicas in OVERLAYS.items():
        d = DEPLOY / "k8s" / "overlays" / name
        k = yaml.safe_load((d / "kustomization.yaml").read_text())
        assert k["replicas"] == [{"name": "ratequeue", "count": replicas}]
        assert k["namespace"] == NAMESPACE
        patch = (d / "initial-voters.yaml").read_text()
        assert patch.count("ratequeue-peers.$(POD_NAMESPACE).svc:7701") == replicas


def test_no_secret_material_in_deploy():
    """Nothing under deploy/ carries a literal token: only references and placeholders."""
    for path in sorted(Path(DEPLOY).rglob("*")):
        if path.is_dir() or ".venv" in path.parts or "__pycache__" in path.parts:
            continue
        if path.suffix not in {".yaml", ".yml", ""} and path.name != "Dockerfile":
            continue
        text = path.read_text(errors="replace")
        assert not re.search(r"^\s*(stringData|data):", text, re.M) or path.suffix not in {".yaml", ".yml"}, path
        assert not re.search(r"(TOKEN|SECRET)[\"']?\s*[:=]\s*[\"']?[A-Fa-f0-9]{16,}", text), path
