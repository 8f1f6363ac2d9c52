#!/usr/bin/env bash
# The soak of docs/consistency.md ("Soak"): one long mixed-fault run on 5 nodes (every
# fault kind, every workload and `batch`, on the failpoints build), with every node's
# resident memory, data-directory size, open files and thread count sampled every
# SAMPLE_SECONDS (default 10) and plotted. Not part of the test command.
#
#   flock /tmp/rq-iptables.lock bash jepsen-style-tests/soak.sh [OUT_DIR]   # ~62 minutes
#   MINUTES=5 bash jepsen-style-tests/soak.sh                               # a short pass
#   NEMESIS=pause,partition,clock,slow-disk bash jepsen-style-tests/soak.sh  # no restarts
#
# With every fault, nodes are restarted (kills, power cuts, rolling restarts, rebuilds)
# every minute or two, so the data directory is what the hour tests; NEMESIS with only
# faults that keep the processes alive tests one process's memory over the hour.
#
# Writes, under OUT_DIR (default target/jepsen/soak-DATE): the run's own directory
# (history, results.json, report), samples.csv (t_s, node, pid, rss_bytes, dir_bytes,
# open_files, threads), state.csv (each node's table sizes and Raft log indexes from its
# /metrics, see soak/sample.sh), soak.png (one panel per quantity, one line per node, broken where
# a fault restarted the node) and summary.txt (per node and quantity: median and max
# after warm-up, slope over the last two thirds). Flat after warm-up is the point.
# The plot needs matplotlib, which this script installs (pinned) into target/soak-venv;
# `python3 jepsen-style-tests/soak/plot.py samples.csv out.png` redraws one.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${MINUTES:-60}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-10}
SEED=${SEED:-4242}
NEMESIS=${NEMESIS:-everything}
WORKLOAD=${WORKLOAD:-all,batch}
out=${1:-target/jepsen/soak-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
echo "soak: writing to $out"

cargo build --locked -p ratequeue-node --bins --features ratequeue-node/failpoints
cp target/debug/ratequeue target/debug/ratequeue-failpoints
cargo build --locked -p ratequeue-node -p jepsen-style-tests --bins
# The run uses its own copies, so a build in this worktree during the hour (a campaign
# beside it) cannot swap the binary a fault restarts a node with.
mkdir -p "$out/bin"
cp target/debug/jepsen target/debug/ratequeue target/debug/ratequeue-failpoints "$out/bin/"

"$out/bin/jepsen" --seed "$SEED" --nodes 5 --duration "$((MINUTES * 60))s" \
  --nemesis "$NEMESIS" --workload "$WORKLOAD" --out "$out/run" &
run=$!
echo "t_s,node,pid,rss_bytes,dir_bytes,open_files,threads" > "$out/samples.csv"
echo "t_s,node,pid,resources,leases,tombstones,request_ids,keys,waiters,last_log_index,snapshot_index,purged_index,storage_bytes" > "$out/state.csv"
bash jepsen-style-tests/soak/sample.sh "$out" "$(date +%s)" "$run" "$SAMPLE_SECONDS"
rc=0
wait "$run" || rc=$?
venv=target/soak-venv
if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q matplotlib==3.11.2
fi
"$venv/bin/python" jepsen-style-tests/soak/plot.py "$out/samples.csv" "$out/soak.png" \
  "soak: seed $SEED, 5 nodes, $MINUTES min, nemesis $NEMESIS (samples every ${SAMPLE_SECONDS} s)" \
  | tee "$out/summary.txt"
echo "soak: run exit $rc; samples $out/samples.csv; plot $out/soak.png; summary $out/summary.txt"
exit "$rc"
