#!/usr/bin/env bash
# A timeline of one paced cycle run (docs/benchmarks.md, "Pauses on a timeline"): the
# acquire p99 of every second against every node's storage events, to find what pauses.
#
#   RATE=5000 bash bench/timeline.sh [OUT_DIR]     # DURATION=60 s, 256 clients
#
# Starts a fresh 3-node cluster (release build) whose nodes log every `log flushed`,
# `log purged … took_ms` and `snapshot built … serialise_ms save_ms`, runs
# `rqctl bench --rate RATE --interval 1` while `vmstat 1` samples the CPU, then prints,
# in time order from the start of the measured run: the seconds whose p99 is above
# SPIKE_MS (default 30), flush-thread gaps above GAP_MS (default 25), snapshots (from
# the start of their serialisation) and purges. Writes result.json, vmstat.txt, t0 and
# the node logs under OUT_DIR (default target/bench/timeline-DATE).
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:?RATE: the paced rate, e.g. 60 or 80 % of the peak bench/run.sh measured}
DURATION=${DURATION:-60}
WARMUP=2
out=${1:-target/bench/timeline-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

cargo build --release --locked -p ratequeue-node -p ratequeue-client --bins
bin=target/release
ulimit -n "$(ulimit -Hn)"

. scripts/dev-cluster.sh
vm=
cleanup() {
  [ -n "$vm" ] && kill "$vm" 2>/dev/null || true
  dev_cluster_stop "$out"
}
trap cleanup EXIT
export RATEQUEUE_LOG=warn
dev_cluster_start "$bin/ratequeue" 3 --serve-arg=--connections-per-source-max=4096 \
  "--serve-arg=--log=warn,ratequeue_node::raft=info,ratequeue_node::storage=debug"
vmstat 1 >"$out/vmstat.txt" &
vm=$!
date -u +%s.%N >"$out/t0"
"$bin/rqctl" --url "$DEV_URLS" --api-key "$DEV_TOKEN" bench --workload cycle --clients 256 \
  --duration "$DURATION" --warmup "$WARMUP" --rate "$RATE" --interval 1 --json \
  --resource timeline >"$out/result.json"
cleanup
trap - EXIT

python3 - "$out" "$WARMUP" "${SPIKE_MS:-30}" "${GAP_MS:-25}" <<'PY'
import datetime, glob, json, os, re, sys

out, warmup, spike_ms, gap_ms = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
t0 = float(open(os.path.join(out, "t0")).read()) + warmup


def at(line):
    stamp = line.split(" ", 1)[0].rstrip("Z")[:26]
    t = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() - t0


events = []
for path in sorted(glob.glob(os.path.join(out, "node-*.log"))):
    node = re.search(r"node-(\d+)", path).group(1)
    last_flush = None
    for line in open(path):
        if "log flushed" in line:
            t = at(line)
            if last_flush is not None and (t - last_flush) * 1000 > gap_ms:
                events.append((last_flush, f"node {node}: no flush for {(t - last_flush) * 1000:.0f} ms"))
            last_flush = t
        elif "snapshot built" in line:
            s = int(re.search(r"serialise_ms=(\d+)", line).group(1))
            v = int(re.search(r"save_ms=(\d+)", line).group(1))
            events.append((at(line) - (s + v) / 1000, f"node {node}: snapshot, serialise {s} ms, save {v} ms"))
        elif "log purged" in line:
            took = re.search(r"took_ms=(\d+)", line)
            events.append((at(line), f"node {node}: purge, {took.group(1) if took else '?'} ms"))

r = json.load(open(os.path.join(out, "result.json")))
for i in r["intervals"]:
    p99 = i["acquire_us"]["p99"] / 1000
    if p99 > spike_ms:
        events.append((i["start_s"], f"== second {i['start_s']:.0f}: p99 {p99:.0f} ms"))
a = r["acquire_us"]
print(f"{r['ops_per_sec']:.0f} ops/s (asked {r['target_rate']:.0f}): p50 {a['p50'] / 1000:.1f} ms, "
      f"p99 {a['p99'] / 1000:.1f} ms, p999 {a['p999'] / 1000:.1f} ms, max {a['max'] / 1000:.1f} ms")
for t, what in sorted(events):
    if 0 <= t <= r["seconds"]:
        print(f"{t:7.2f}  {what}")
PY
