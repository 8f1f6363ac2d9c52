"""Fixtures of the integration tests: one 3-node cluster per session (see cluster.py), a
client key limited to `py-*` resources, and the environment the SDK reads.

The binary is $RATEQUEUE_BIN, else <repo>/target/debug/ratequeue; the fixture fails (it does
not skip) when it is missing.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Iterator

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cluster import Cluster  # noqa: E402


@pytest.fixture(scope="session")
def rq_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("ratequeue-cluster"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def client_key(rq_cluster: Cluster) -> str:
    """A client-role key allowed on resources named `py-*` only."""
    return rq_cluster.create_key(f"py-it-{uuid.uuid4().hex[:8]}", ["py-*"])


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, rq_cluster: Cluster, client_key: str) -> Cluster:
    """RATEQUEUE_URL / RATEQUEUE_API_KEY point at the cluster (inherited by workers)."""
    monkeypatch.setenv("RATEQUEUE_URL", rq_cluster.url_list)
    monkeypatch.setenv("RATEQUEUE_API_KEY", client_key)
    return rq_cluster


@pytest.fixture
def resource_name(request: pytest.FixtureRequest) -> str:
    base = "".join(ch if ch.isalnum() else "-" for ch in request.node.name)[:60]
    return f"py-{base}-{uuid.uuid4().hex[:6]}"
