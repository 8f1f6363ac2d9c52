"""Fixtures of the unit suite: a fake cluster and clients wired to it (no sockets)."""

from __future__ import annotations

import os
import sys
from typing import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import ratequeue  # noqa: E402
from fakecluster import FAST, URLS, FakeCluster, FakeTime  # noqa: E402

@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RATEQUEUE_URL", raising=False)
    monkeypatch.delenv("RATEQUEUE_API_KEY", raising=False)
    for name in ("RATEQUEUE_CA_FILE", "RATEQUEUE_CLIENT_CERT", "RATEQUEUE_CLIENT_KEY", "RATEQUEUE_HOLDER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    c = FakeCluster()
    yield c
    c.close()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def client(cluster: FakeCluster) -> Iterator[ratequeue.Client]:
    c = ratequeue.Client(URLS, "k3y", timing=FAST, transport=cluster.transport())
    yield c
    c.close()
