"""The blocking client `_sync.py` is generated from `_async.py` (scripts/unasync.py): the
suite fails while the checked-in file is stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "unasync.py"


def test_the_sync_client_is_generated_from_the_async_one() -> None:
    r = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
