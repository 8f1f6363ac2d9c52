#!/usr/bin/env bash
# The sustained run of docs/benchmarks.md: the slot cycle with 256 open-loop clients at
# 60 % of the cluster's own peak for MINUTES (default 30), reporting the acquire p99 of
# every minute, and sampling every node's resident memory and data-directory size every
# SAMPLE_SECONDS (default 10). Flat lines after the warm-up are the point: no pauses
# growing with the state, no memory or disk growing with time.
#
#   bash bench/sustained.sh [OUT_DIR]                  # ~33 minutes
#   MINUTES=3 bash bench/sustained.sh                  # a short pass
#
# Starts a fresh 3-node ratequeue cluster (release build, fsync on), measures the peak
# (`rqctl bench --clients 256`, 10 s), then paces to 60 % of it. Writes sustained.json
# (the bench report, with `intervals`), samples.csv (t_s, node, rss_bytes, dir_bytes),
# sustained.md and plots/sustained.svg under OUT_DIR (default target/bench/sustained-DATE).
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${MINUTES:-30}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-10}
SHARE=${SHARE:-0.6}
out=${1:-target/bench/sustained-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
echo "sustained: writing to $out"
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q matplotlib

cargo build --release --locked -p ratequeue-node -p ratequeue-client --bins
bin=target/release
ulimit -n "$(ulimit -Hn)"

. scripts/dev-cluster.sh
sampler=
cleanup() {
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
  dev_cluster_stop "$out"
}
trap cleanup EXIT
export RATEQUEUE_LOG=warn
dev_cluster_start "$bin/ratequeue" 3 --serve-arg=--connections-per-source-max=4096
export RATEQUEUE_ADMIN_TOKEN=$DEV_TOKEN
{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.txt"

rq() { "$bin/rqctl" --url "$DEV_URLS" --api-key "$RATEQUEUE_ADMIN_TOKEN" "$@"; }
rq bench --workload cycle --clients 256 --duration 10 --warmup 2 --resource sustained \
  --json | tee "$out/peak.json"
rate=$(python3 -c "import json; print(round($SHARE * json.load(open('$out/peak.json'))['ops_per_sec']))")
echo "sustained: $MINUTES min at $rate pairs/s ($SHARE of peak)"

# Every node's RSS and data-dir size, from the kit's status line (pids and dirs).
(
  start=$(date +%s)
  echo "t_s,node,rss_bytes,dir_bytes" >"$out/samples.csv"
  while :; do
    now=$(($(date +%s) - start))
    for node in $DEV_NODES; do
      id=${node%%:*}; rest=${node#*:}; pid=${rest%%:*}; dir=${rest#*:}
      rss=$(awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$pid/status" 2>/dev/null || echo 0)
      size=$(du -sb "$dir" 2>/dev/null | cut -f1)
      echo "$now,$id,${rss:-0},${size:-0}" >>"$out/samples.csv"
    done
    sleep "$SAMPLE_SECONDS"
  done
) &
sampler=$!

rq bench --workload cycle --clients 256 --rate "$rate" --duration $((MINUTES * 60)) --warmup 5 \
  --interval 60 --resource sustained --json | tee "$out/sustained.json"
kill "$sampler" 2>/dev/null || true
sampler=
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"
python3 bench/report.py --sustained "$out"
echo "sustained: done; see $out/sustained.md"
