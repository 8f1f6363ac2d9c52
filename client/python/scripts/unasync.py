#!/usr/bin/env python3
"""Generate the blocking client `src/ratequeue/_sync.py` from the asyncio one,
`src/ratequeue/_async.py`, the way httpcore does: drop `async`/`await` and rename the
flavour-specific names (`_async_backend` to `_sync_backend`, `AsyncRenewal` to
`SyncRenewal`, `aclose` to `close`, ...). The module docstring is replaced by a header
saying the file is generated.

    python client/python/scripts/unasync.py           # rewrite _sync.py
    python client/python/scripts/unasync.py --check   # exit 1 with a diff if it is stale

The unit suite runs the check (tests/test_generated.py).
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import List, Tuple

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ratequeue"
SOURCE = PACKAGE / "_async.py"
TARGET = PACKAGE / "_sync.py"

HEADER = '''"""GENERATED from `_async.py` by `client/python/scripts/unasync.py`: do not edit.

The blocking client of `ratequeue`: `Client`, `Lease`, `AcquireContext`, `acquire` and
`default_client`, for threads, Celery prefork workers and any code without an event loop.
`_async.py` says what it owns; `_sync_backend.py` holds what the blocking flavour does
differently (one pool per process and fork safety, a renewal thread per lease).
"""'''

#: (pattern, replacement), applied in order to the whole text.
SUBS: List[Tuple[str, str]] = [
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\baclose\b", "close"),
    (r"\b_async_backend\b", "_sync_backend"),
    (r"\bAsync(Connections|Renewal|AcquireMixin)\b", r"Sync\1"),
    (r"\bAsyncBaseTransport\b", "BaseTransport"),
    (r"\bAwaitable\[([^\[\]]*)\]", r"\1"),
    (r"\bAwaitable, ", ""),
    (r"\bratequeue\.aio\b", "ratequeue"),
]


def generate(source: str) -> str:
    m = re.match(r'\s*"""(.*?)"""', source, re.S)
    if m is None:
        raise SystemExit(f"{SOURCE} must open with a docstring")
    body = source[m.end() :]
    for pattern, repl in SUBS:
        body = re.sub(pattern, repl, body)
    leftover = re.compile(r"\basync (def|with|for)\b|\bawait\b|^\s*(import|from) asyncio\b")
    bad = [ln for ln in body.splitlines() if leftover.search(ln)]
    if bad:
        raise SystemExit("asyncio left in the generated code:\n" + "\n".join(bad))
    return HEADER + body


def main(argv: List[str]) -> int:
    want = generate(SOURCE.read_text())
    if "--check" in argv:
        have = TARGET.read_text() if TARGET.exists() else ""
        if have != want:
            sys.stdout.writelines(
                difflib.unified_diff(
                    have.splitlines(True), want.splitlines(True), str(TARGET), "generated from " + SOURCE.name
                )
            )
            print(f"\n{TARGET} is stale: run python client/python/scripts/unasync.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(want)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
