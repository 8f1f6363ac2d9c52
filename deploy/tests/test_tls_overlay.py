"""The TLS overlay (3-nodes-tls = 3-nodes + components/tls): the cert-manager-style
Secret is mounted and used, plain HTTP is no longer opted into, and nothing else moves.
"""

from __future__ import annotations

import copy

from conftest import rendered_overlay
from test_manifests import container, env_list, pod_spec, statefulset

MOUNT = "/etc/ratequeue/tls"
SECRET = "ratequeue-tls"


def env(docs) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in env_list(docs)}


def test_the_secret_is_mounted_read_only_and_used():
    docs = rendered_overlay("3-nodes-tls")
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == SECRET
    assert volumes["tls"]["secret"]["defaultMode"] == 0o440
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    assert mounts["tls"]["mountPath"] == MOUNT and mounts["tls"]["readOnly"] is True
    e = env(docs)
    assert e["RATEQUEUE_TLS_CERT"] == f"{MOUNT}/tls.crt"
    assert e["RATEQUEUE_TLS_KEY"] == f"{MOUNT}/tls.key"
    assert e["RATEQUEUE_TLS_CA"] == f"{MOUNT}/ca.crt"
    assert e["RATEQUEUE_CA_FILE"] == f"{MOUNT}/ca.crt"


def test_everything_speaks_https():
    docs = rendered_overlay("3-nodes-tls")
    e = env(docs)
    assert "RATEQUEUE_INSECURE" not in e
    assert e["RATEQUEUE_ADVERTISE_API_URL"].startswith("https://$(POD_NAME).")
    assert e["RATEQUEUE_URL"] == "https://localhost:7700"
    c = container(docs)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["scheme"] == "HTTPS", probe
    annotations = statefulset(docs)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scheme"] == "https"


def test_the_plain_overlay_opts_into_plain_http():
    assert env(rendered_overlay("3-nodes"))["RATEQUEUE_INSECURE"] == "true"


def test_env_order_keeps_expansions_working():
    """$(POD_NAME) and $(POD_NAMESPACE) expand only from variables defined earlier."""
    names = [e["name"] for e in env_list(rendered_overlay("3-nodes-tls"))]
    assert names[:2] == ["POD_NAME", "POD_NAMESPACE"]


def test_only_tls_settings_differ_from_the_plain_overlay():
    def normalise(docs, tls):
        out = copy.deepcopy(docs)
        sts = statefulset(out)
        spec = sts["spec"]["template"]["spec"]
        sts["spec"]["template"]["metadata"]["annotations"].pop("prometheus.io/scheme", None)
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "tls"]
        c = container(out)
        c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "tls"]
        tls_env = {"RATEQUEUE_TLS_CERT", "RATEQUEUE_TLS_KEY", "RATEQUEUE_TLS_CA", "RATEQUEUE_CA_FILE", "RATEQUEUE_INSECURE"}
        c["env"] = [e for e in c["env"] if e["name"] not in tls_env]
        for e in c["env"]:
            if e["name"] in ("RATEQUEUE_ADVERTISE_API_URL", "RATEQUEUE_URL"):
                e["value"] = e["value"].replace("https://", "http://").replace("localhost", "127.0.0.1")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            c[probe]["httpGet"].pop("scheme", None)
        return out

    assert normalise(rendered_overlay("3-nodes-tls"), True) == normalise(rendered_overlay("3-nodes"), False)
