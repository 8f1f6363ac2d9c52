"""Fixtures of the unit suite: a fake cluster and clients wired to it (no sockets)."""

from __future__ import annotations

import os
import sys
from typing import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import ratequeue  # noqa: E402
from fakecluster import FakeCluster, FakeTime  # noqa: E402

URLS = "http://n1:7700,http://n2:7700,http://n3:7700"

#: Small but not tiny: tests wait on events with deadlines, never on these.
FAST = ratequeue.Timing(
    backoff_initial_s=0.001,
    backoff_max_s=0.01,
    retry_budget_s=5.0,
    release_budget_s=5.0,
    request_timeout_s=5.0,
    renew_interval_min_s=0.005,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RATEQUEUE_URL", raising=False)
    monkeypatch.delenv("RATEQUEUE_API_KEY", raising=False)


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
