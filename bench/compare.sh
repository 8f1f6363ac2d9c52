#!/usr/bin/env bash
# Before/after on one machine in one run (docs/benchmarks.md): two builds of the server,
# each on a fresh 3-node cluster, measured by the same rqctl, alternating BEFORE, AFTER,
# AFTER, BEFORE so that machine noise hits both.
#
#   git worktree add /tmp/rq-before <commit>
#   (cd /tmp/rq-before && cargo build --release --locked -p ratequeue-node)
#   bash bench/compare.sh /tmp/rq-before/target/release [OUT_DIR]     # ~12 minutes
#
# Points per cluster: the cycle with 1 and 256 clients, the contended semaphore (8 slots)
# with 256 clients, and the cycle paced (open loop) at 80 % of that cluster's own
# 256-client peak for PACED_DURATION seconds (default 60: several snapshots). Writes
# compare.jsonl (the bench reports, each with "build": before|after) and compare.md.
set -euo pipefail
cd "$(dirname "$0")/.."
before=$(cd "$1" && pwd)
out=${2:-target/bench/compare-$(date +%Y%m%d-%H%M%S)}
DURATION=${DURATION:-10}
PACED_DURATION=${PACED_DURATION:-60}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cargo build --release --locked -p ratequeue-node -p ratequeue-client --bins
after=$(pwd)/target/release
rqctl=$after/rqctl
ulimit -n "$(ulimit -Hn)"
. scripts/dev-cluster.sh
trap 'dev_cluster_stop' EXIT
export RATEQUEUE_LOG=warn
{
  echo "date: $(date -u +%FT%TZ)"
  echo "after: $(git rev-parse --short HEAD)"
  echo "before: $(git -C "$before" rev-parse --short HEAD 2>/dev/null || echo "$before")"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.txt"

point() { # build workload clients [args...]
  local build=$1 workload=$2 clients=$3
  shift 3
  "$rqctl" --url "$DEV_URLS" --api-key "$DEV_TOKEN" bench --workload "$workload" \
    --clients "$clients" --duration "$DURATION" --warmup 2 --resource "cmp-$workload" --json "$@" \
    | python3 -c "import json,sys; [print(json.dumps({**json.loads(l), 'build': '$build'})) for l in sys.stdin]" \
    | tee -a "$out/compare.jsonl"
}

for build in before after after before; do
  dir=$before; [ "$build" = after ] && dir=$after
  dev_cluster_start "$dir/ratequeue" 3 --serve-arg=--connections-per-source-max=4096
  point "$build" cycle 1
  point "$build" cycle 256
  point "$build" contended 256
  peak=$(tail -2 "$out/compare.jsonl" | head -1 | python3 -c "import json,sys; print(json.load(sys.stdin)['ops_per_sec'])")
  DURATION=$PACED_DURATION point "$build" cycle 256 --rate "$(python3 -c "print(round(0.8 * $peak))")"
  dev_cluster_stop
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"

python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = [json.loads(l) for l in (out / "compare.jsonl").read_text().splitlines() if l]
ms = lambda us: f"{us / 1000:.2f}"
md = ["# before / after", "", "```", (out / "machine.txt").read_text().strip(), "```", "",
      "| point | build | ops/s | acquire p50 / p99 / p999 ms |", "|---|---|---:|---|"]
for r in rows:
    name = f"{r['workload']} {r['clients']}" + (f" at {r['target_rate']:,.0f}/s" if r["target_rate"] else "")
    a = r["acquire_us"]
    md.append(f"| {name} | {r['build']} | {r['ops_per_sec']:,.0f} | {ms(a['p50'])} / {ms(a['p99'])} / {ms(a['p999'])} |")
(out / "compare.md").write_text("\n".join(md) + "\n")
print("\n".join(md))
PY
