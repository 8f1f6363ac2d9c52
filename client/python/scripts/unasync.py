#!/usr/bin/env python3
"""Generate the blocking client from the asyncio one, the way httpcore does: drop
`async`/`await` and rename the flavour-specific names (`_async_backend` to `_sync_backend`,
`AsyncSocket` to `SyncSocket`, `aclose` to `close`, ...). Each generated file opens with a
header saying so.

    python client/python/scripts/unasync.py           # rewrite the generated files
    python client/python/scripts/unasync.py --check   # exit 1 with a diff if one is stale

The unit suite runs the check (tests/test_generated.py).
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import List, Tuple

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ratequeue"

#: (source, generated file, what the generated file is)
FILES = [
    (
        "_async.py",
        "_sync.py",
        "The blocking client of `ratequeue`: `Client`, `Lease`, `AcquireContext`, `acquire` and\n"
        "`default_client`, for threads, Celery prefork workers and any code without an event loop.",
    ),
    ("_async_transport.py", "_sync_transport.py", "The blocking HTTP/1.1 connection pool of the SDK."),
]

HEADER = '''"""GENERATED from `{source}` by `client/python/scripts/unasync.py`: do not edit.

{what}
`{source}` says what it owns; `_sync_backend.py` holds what the blocking flavour does
differently.
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
    (r"\bhandle_async_request\b", "handle_request"),
    (r"\b_async_(backend|transport)\b", r"_sync_\1"),
    (r"\bAsync(Renewal|AcquireMixin|ProgressWatch|Socket|SlotWaiter|ConnectionPool|Transport)\b", r"Sync\1"),
    (r"\bAwaitable\[([^\[\]]*)\]", r"\1"),
    (r"\bAwaitable, ", ""),
    (r"\bratequeue\.aio\b", "ratequeue"),
]

LEFTOVER = re.compile(r"\basync (def|with|for)\b|\bawait\b|^\s*(import|from) asyncio\b", re.M)


def generate(source_name: str, what: str, source: str) -> str:
    m = re.match(r'\s*"""(.*?)"""', source, re.S)
    if m is None:
        raise SystemExit(f"{source_name} must open with a docstring")
    body = source[m.end() :]
    for pattern, repl in SUBS:
        body = re.sub(pattern, repl, body)
    bad = [ln for ln in body.splitlines() if LEFTOVER.search(ln)]
    if bad:
        raise SystemExit(f"asyncio left in the code generated from {source_name}:\n" + "\n".join(bad))
    return HEADER.format(source=source_name, what=what) + body


def main(argv: List[str]) -> int:
    stale = 0
    for source_name, target_name, what in FILES:
        target = PACKAGE / target_name
        want = generate(source_name, what, (PACKAGE / source_name).read_text())
        if "--check" in argv:
            have = target.read_text() if target.exists() else ""
            if have != want:
                sys.stdout.writelines(
                    difflib.unified_diff(
                        have.splitlines(True), want.splitlines(True), str(target), "generated from " + source_name
                    )
                )
                print(f"\n{target} is stale: run python client/python/scripts/unasync.py", file=sys.stderr)
                stale += 1
        else:
            target.write_text(want)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
