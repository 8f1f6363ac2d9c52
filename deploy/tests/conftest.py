"""Shared fixtures for the deploy/ tests: rendered overlays and repository paths.

The overlays are rendered with `kubectl kustomize` ($KUBECTL, default `kubectl`);
deploy/validate.sh installs a kubectl with kustomize v5 when the machine has none.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent
REPO = DEPLOY.parent
OVERLAYS = {"3-nodes": 3, "5-nodes": 5}


def kubectl() -> str:
    return os.environ.get("KUBECTL", "kubectl")


def render(path: Path) -> list[dict]:
    """`kubectl kustomize PATH`, parsed into a list of objects."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


_cache: dict[str, list[dict]] = {}


def rendered_overlay(name: str) -> list[dict]:
    if name not in _cache:
        _cache[name] = render(DEPLOY / "k8s" / "overlays" / name)
    return _cache[name]


@pytest.fixture(params=sorted(OVERLAYS))
def overlay(request) -> tuple[str, int, list[dict]]:
    """(overlay name, expected replicas, rendered objects) for every overlay."""
    name = request.param
    return name, OVERLAYS[name], rendered_overlay(name)
