"""Tables for docs/benchmarks.md ("Python SDK") from one run of bench/python/run.sh.

    python3 bench/python/report.py OUT_DIR    # reads results.jsonl and machine.txt
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List


def main() -> None:
    out = Path(sys.argv[1])
    rows: List[Dict[str, Any]] = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    print("# Python SDK beside rqctl bench and limits on Redis\n")
    print("```\n" + (out / "machine.txt").read_text().strip() + "\n```\n")

    rqctl = {r["clients"]: r for r in rows if r["suite"] == "rqctl"}
    print("## rqctl bench (Rust, raw HTTP), cycle workload\n")
    print("| clients | pairs/s | acquire p50 | pair p50 | pair p99 |\n|---|---|---|---|---|")
    for c, r in sorted(rqctl.items()):
        print(f"| {c} | {r['ops_per_sec']:.0f} | {r['acquire_us']['p50'] / 1000:.2f} ms | "
              f"{r['pair_us']['p50'] / 1000:.2f} ms | {r['pair_us']['p99'] / 1000:.2f} ms |")

    print("\n## HTTP clients on raw acquire + release (bench/python/transports.py)\n")
    print("| client | acquire p50 | pair p50 | concurrent | pairs/s |\n|---|---|---|---|---|")
    for r in rows:
        if r["suite"] == "transports":
            print(f"| {r['client']} | {r['acquire_p50_ms']:.2f} ms | {r['pair_p50_ms']:.2f} ms | "
                  f"{r['concurrent']} | {r['pairs_per_sec']} |")

    sdk = {r["bench"]: r for r in rows if r["suite"] == "sdk"}
    print("\n## The SDK (bench/python/sdk.py)\n")
    print("| caller | acquire p50 | release p50 | pair p50 | pair p99 |\n|---|---|---|---|---|")
    for name in ("sync-1", "async-1"):
        r = sdk.get(name)
        if r:
            print(f"| {name} | {r['acquire_p50_ms']:.2f} ms | {r['release_p50_ms']:.2f} ms | "
                  f"{r['pair_p50_ms']:.2f} ms | {r['pair_p99_ms']:.2f} ms |")
    print("\n| load | pairs/s |\n|---|---|")
    procs = sdk.get("async-procs", {})
    for name, label in (("async-tasks", "1 process, 32 async tasks"),
                        ("async-procs", f"{procs.get('procs')} processes x {procs.get('tasks')} async tasks"),
                        ("sync-threads", "1 process, 32 threads")):
        r = sdk.get(name)
        if r:
            cpu = f" ({r['cpu_us_per_pair']} µs of CPU per pair)" if "cpu_us_per_pair" in r else ""
            print(f"| {label} | {r['pairs_per_sec']}{cpu} |")
    fl = sdk.get("fresh-loop")
    if fl:
        print(f"\nFirst call in a fresh `asyncio.run`: p50 {fl['fresh_first_call_p50_ms']:.2f} ms against "
              f"{fl['warm_call_p50_ms']:.2f} ms in a warm loop (+{fl['extra_ms']:.2f} ms); "
              f"ResourceWarnings: {fl['resource_warnings']}.")

    lim = {r["bench"]: r for r in rows if r["suite"] == "limits"}
    print("\n## limits on Redis (bench/python/limits_redis.py)\n")
    if "limits-redis-1" in lim:
        r = lim["limits-redis-1"]
        print(f"One caller: {r['hits_per_sec']} hits/s (p50 {r['hit_p50_ms']:.2f} ms); ", end="")
    if "limits-redis-threads" in lim:
        print(f"32 threads: {lim['limits-redis-threads']['hits_per_sec']} hits/s.")

    print("\n## Targets\n")
    peak = max((r["ops_per_sec"] for r in rqctl.values()), default=0)
    checks = []
    for name in ("sync-1", "async-1"):
        r = sdk.get(name)
        if r:
            checks.append((f"{name}: acquire p50 and release p50 <= 2 ms",
                           f"{r['acquire_p50_ms']:.2f} / {r['release_p50_ms']:.2f} ms",
                           r["acquire_p50_ms"] <= 2 and r["release_p50_ms"] <= 2))
    if "async-tasks" in sdk:
        v = sdk["async-tasks"]["pairs_per_sec"]
        checks.append(("32 async tasks >= 2 000 pairs/s", str(v), v >= 2000))
    if "async-procs" in sdk and peak:
        v = sdk["async-procs"]["pairs_per_sec"]
        checks.append((f"4 processes >= 50 % of rqctl's peak ({peak:.0f})", f"{v} ({100 * v / peak:.0f} %)", v >= peak / 2))
    if fl:
        checks.append(("fresh asyncio.run <= 5 ms over warm, no ResourceWarning",
                       f"+{fl['extra_ms']:.2f} ms, {fl['resource_warnings']} warnings",
                       fl["extra_ms"] <= 5 and fl["resource_warnings"] == 0))
    print("| target | measured | met |\n|---|---|---|")
    for what, got, ok in checks:
        print(f"| {what} | {got} | {'yes' if ok else 'no'} |")


if __name__ == "__main__":
    main()
