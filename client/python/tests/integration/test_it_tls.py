"""TLS against a real cluster that speaks only TLS and requires client certificates
(`ratequeue dev --ephemeral --json --tls --tls-client-auth`: the kit makes a CA, node
certificates and a client certificate at start; no key is committed): the CA bundle and
client certificate from arguments and from RATEQUEUE_CA_FILE / RATEQUEUE_CLIENT_CERT /
RATEQUEUE_CLIENT_KEY, redirects between https nodes, and every misconfiguration failing at
once with the file or the cause named."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Dict, Iterator

import pytest

import ratequeue
import ratequeue.aio as rq
from cluster import Cluster

TLS_ENV = ("RATEQUEUE_CA_FILE", "RATEQUEUE_CLIENT_CERT", "RATEQUEUE_CLIENT_KEY")


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("ratequeue-tls-cluster"), tls=True)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def tls_key(tls_cluster: Cluster) -> str:
    return tls_cluster.create_key(f"py-tls-{uuid.uuid4().hex[:8]}", ["py-*"])


@pytest.fixture
def no_tls_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TLS_ENV:
        monkeypatch.delenv(name, raising=False)


def files(c: Cluster) -> Dict[str, str]:
    return {
        "ca_file": c.tls_files["ca_file"],
        "client_cert": c.tls_files["client_cert"],
        "client_key": c.tls_files["client_key"],
    }


def test_the_cluster_speaks_only_tls(tls_cluster: Cluster) -> None:
    assert all(url.startswith("https://") for url in tls_cluster.urls)


def test_sync_client_with_files_as_arguments(
    tls_cluster: Cluster, tls_key: str, resource_name: str, no_tls_env: None
) -> None:
    tls_cluster.put_resource(resource_name, {"concurrency": 1})
    with ratequeue.Client(tls_cluster.urls, tls_key, **files(tls_cluster)) as c:
        assert c.tls == ratequeue.TLSFiles(**files(tls_cluster))
        with c.acquire(resource_name, load=1) as lease:
            assert lease.fencing_token > 0
            with pytest.raises(ratequeue.WouldBlock):
                with c.acquire(resource_name, timeout=0):
                    pass
        assert lease.released


async def test_async_client_from_the_environment_through_a_follower(
    tls_cluster: Cluster, tls_key: str, resource_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in zip(TLS_ENV, files(tls_cluster).values()):
        monkeypatch.setenv(name, value)
    tls_cluster.put_resource(resource_name, {"concurrency": 2})
    follower = tls_cluster.followers()[0]
    # Only a follower's URL: the acquire is redirected to the leader's https URL.
    async with rq.Client(follower.url, tls_key) as c:
        assert c.tls.ca_file == tls_cluster.tls_files["ca_file"]
        async with c.acquire(resource_name, ttl=2) as lease:
            assert lease.fencing_token > 0
        assert c.leader is not None and c.leader.startswith("https://") and c.leader != follower.url
    # The module-level calls read the same variables.
    async with rq.acquire(resource_name, url=tls_cluster.url_list, api_key=tls_key) as lease:
        assert lease.fencing_token > 0


def test_a_node_certificate_the_trusted_cas_do_not_vouch_for_is_refused_at_once(
    tls_cluster: Cluster, tls_key: str, resource_name: str, no_tls_env: None
) -> None:
    # No CA bundle: the system's trust store, which does not know the cluster's CA.
    f = files(tls_cluster)
    with ratequeue.Client(tls_cluster.urls, tls_key, client_cert=f["client_cert"], client_key=f["client_key"]) as c:
        with pytest.raises(ratequeue.Misconfigured) as ei:
            c.acquire_lease(resource_name, timeout=0)
    assert ei.value.code == "tls_error", ei.value
    assert "CERTIFICATE_VERIFY_FAILED" in str(ei.value), ei.value


def test_without_a_client_certificate_the_node_refuses_the_connection(
    tls_cluster: Cluster, tls_key: str, resource_name: str, no_tls_env: None
) -> None:
    with ratequeue.Client(tls_cluster.urls, tls_key, ca_file=tls_cluster.tls_files["ca_file"]) as c:
        with pytest.raises(ratequeue.Misconfigured) as ei:
            c.acquire_lease(resource_name, timeout=0)
    assert ei.value.code == "tls_error", ei.value
    assert "CERTIFICATE_REQUIRED" in str(ei.value).upper(), ei.value


def test_unusable_tls_files_fail_when_the_client_is_made(
    tls_cluster: Cluster, tmp_path: Path, no_tls_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = files(tls_cluster)
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ValueError, match=f"CA bundle {missing}: no such file"):
        ratequeue.Client(tls_cluster.urls, ca_file=missing)
    # A key is PEM, but not a certificate.
    with pytest.raises(ValueError, match=r"CA bundle .*: not PEM"):
        ratequeue.Client(tls_cluster.urls, ca_file=f["client_key"])
    # The CA's certificate with the client's key.
    with pytest.raises(ValueError, match="the key does not belong to the certificate"):
        ratequeue.Client(tls_cluster.urls, client_cert=f["ca_file"], client_key=f["client_key"])
    with pytest.raises(ValueError, match="needs both its certificate and its key"):
        ratequeue.Client(tls_cluster.urls, client_cert=f["client_cert"])
    monkeypatch.setenv("RATEQUEUE_CLIENT_KEY", f["client_key"])
    with pytest.raises(ValueError, match="RATEQUEUE_CLIENT_CERT and RATEQUEUE_CLIENT_KEY"):
        ratequeue.Client(tls_cluster.urls)
    with pytest.raises(ValueError, match="no such file"):
        rq.Client(tls_cluster.urls, client_cert=missing, client_key=f["client_key"])
