#!/usr/bin/env bash
# Does an open dashboard load the leader's admission path? The slot cycle (`rqctl bench
# --workload cycle`, 256 clients) on a fresh 3-node cluster with 10 000 resources, in
# alternating rounds without and with dashboards open on a follower's /ui/ (half on the
# resources list sorted by grants/s, half on the benched resource's view, each refreshing
# every second). docs/benchmarks.md, "Dashboard".
#
#   flock /tmp/rq-bench.lock bash bench/dashboard.sh [rounds] [seconds] [tabs] [mode]
#
# mode: `browser` (headless Chromium tabs, dashboard/bench/open.mjs), `poll` (a
# non-rendering Node client making exactly the pages' calls at the pages' pace,
# dashboard/bench/poll.mjs: the server's share alone), or `both` (default: each round
# runs without, with the poll client, then with the browser). Beside each figure: the CPU
# seconds the leader, the serving follower, the other follower and the dashboard client
# (its whole process tree) used during that bench, and the load average. Modes poll and
# both first measure the idle cluster for `seconds` without and with the poll client:
# the server's CPU per dashboard call without the cycle's noise.
#
# Needs the release binaries (built here), Node.js, Chromium (browser rounds) and
# dashboard/node_modules (cd dashboard && npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-10}
tabs=${3:-4}
mode=${4:-both}
case "$mode" in browser | poll | both) ;; *) echo "mode: browser, poll or both" >&2; exit 2 ;; esac
clients=${CLIENTS:-256}
# RATEQUEUE_BIN_DIR: use the binaries there (e.g. target/debug) instead of building release.
bin=${RATEQUEUE_BIN_DIR:-}
if [ -z "$bin" ]; then
  cargo build --release --locked -p ratequeue-node -p ratequeue-client --bins >&2
  bin=target/release
fi

. scripts/dev-cluster.sh
export RATEQUEUE_LOG=warn
# As bench/run.sh: default server settings but the per-source connection cap (every
# load-generator client comes from one address; 256 clients exceed the default 256).
dev_cluster_start "$bin/ratequeue" 3 --serve-arg=--connections-per-source-max=4096
token=$DEV_TOKEN
urls=$DEV_URLS
leader=$DEV_LEADER_URL
# A follower serves the pages (it forwards their calls to the leader, as in production).
follower=$(tr ',' '\n' <<<"$urls" | grep -vx "$leader" | head -1)
resource=bench-dashboard
# Node pids in DEV_URLS order: the leader's, the serving follower's, the other one's.
read -r -a node_pids <<<"$(for n in $DEV_NODES; do cut -d: -f2 <<<"$n"; done | tr '\n' ' ')"
IFS=, read -r -a node_urls <<<"$urls"
other=
for k in "${!node_urls[@]}"; do
  case "${node_urls[$k]}" in
    "$leader") leader_pid=${node_pids[$k]} ;;
    "$follower") follower_pid=${node_pids[$k]} ;;
    *) other_pid=${node_pids[$k]} other=${node_urls[$k]} ;;
  esac
done

bench() {
  "$bin/rqctl" --url "$urls" --api-key "$token" bench --workload cycle --clients "$clients" \
    --duration "$secs" --warmup 2 --resource "$resource" --json
}
# CPU seconds (user + system) used so far by each given pid with all its descendants,
# one number per pid (0 for an empty or 0 pid), read in one pass over /proc.
cpu() {
  python3 - "$@" <<'PY'
import os, sys
procs = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            s = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2:].split()
        procs[int(d)] = (int(f[1]), int(f[11]) + int(f[12]))
for root in sys.argv[1:]:
    tree = {int(root)} if root.isdigit() and int(root) > 0 else set()
    grew = bool(tree)
    while grew:
        grew = False
        for pid, (ppid, _) in procs.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    print(sum(procs[p][1] for p in tree if p in procs) / os.sysconf("SC_CLK_TCK"))
PY
}
# One bench, reported with the CPU each party used during it: label [client pid]
measure() {
  local label=$1 client=${2:-} load c0 c1 json n0 n1
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  n0=$(calls_now)
  c0=$(cpu "$leader_pid" "$follower_pid" "$other_pid" "${client:-0}" | tr '\n' ' ')
  json=$(bench) || { echo "$label: rqctl bench failed: $json" >&2; return 1; }
  c1=$(cpu "$leader_pid" "$follower_pid" "$other_pid" "${client:-0}" | tr '\n' ' ')
  n1=$(calls_now)
  python3 - "$label" "$json" "$c0" "$c1" "$load" "${n0:-0}" "${n1:-0}" <<'PY'
import json, sys
label, r, c0, c1, load = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), sys.argv[5]
calls = int(sys.argv[7]) - int(sys.argv[6])
a = r["acquire_us"]
d = [float(y) - float(x) for x, y in zip(c0, c1)]
print(f"{label:<24} {r['ops_per_sec']:>7.0f} pairs/s  p50 {a['p50'] / 1000:5.2f} ms  p99 {a['p99'] / 1000:6.2f} ms"
      f"  | cpu s: leader {d[0]:5.1f}  follower {d[1]:5.1f}  other {d[2]:5.1f}  client {d[3]:5.1f}"
      f"{f'  | {calls} dashboard calls' if calls else ''}  | load {load}")
PY
}

# The poll client's calls so far (it prints `calls N` on SIGUSR1); empty for no client or
# the browser. Polls its output with a deadline.
calls_now() {
  [ "$ui_kind" = poll ] && [ -n "$ui_pid" ] || return 0
  local before after
  before=$(grep -c '^calls ' "$dir/ui.out" || true)
  kill -USR1 "$ui_pid"
  for _ in $(seq 1 200); do
    after=$(grep -c '^calls ' "$dir/ui.out" || true)
    [ "$after" -gt "$before" ] && break
    sleep 0.05
  done
  grep '^calls ' "$dir/ui.out" | tail -1 | cut -d' ' -f2
}
# No bench: what the cluster spends in $secs seconds of only the dashboard client (or of
# nothing): the server's cost per dashboard call, without the cycle's noise.
measure_idle() { # label [client pid]
  local label=$1 client=${2:-} load c0 c1 n0 n1
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  n0=$(calls_now)
  c0=$(cpu "$leader_pid" "$follower_pid" "$other_pid" "${client:-0}" | tr '\n' ' ')
  sleep "$secs" # the measured window (a sample of CPU counters, not a synchronisation)
  c1=$(cpu "$leader_pid" "$follower_pid" "$other_pid" "${client:-0}" | tr '\n' ' ')
  n1=$(calls_now)
  python3 - "$label" "$c0" "$c1" "$load" "$secs" "${n0:-0}" "${n1:-0}" <<'PY'
import sys
label, c0, c1, load, secs = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4], float(sys.argv[5])
calls = int(sys.argv[7]) - int(sys.argv[6])
d = [float(y) - float(x) for x, y in zip(c0, c1)]
print(f"{label:<24} idle {secs:.0f} s{'':>31}  | cpu s: leader {d[0]:5.2f}  follower {d[1]:5.2f}  other {d[2]:5.2f}  client {d[3]:5.2f}"
      f"{f'  | {calls} dashboard calls' if calls else ''}  | load {load}")
PY
}

dir=$(mktemp -d)
ui_pid=
ui_kind=
open_ui() { # kind (browser | poll), resources to create first
  local script=open.mjs
  [ "$1" = poll ] && script=poll.mjs
  ui_kind=$1
  POLL_VIEW=${poll_view:-} node "dashboard/bench/$script" "$follower" "$leader" "$token" "$resource" "$tabs" "$2" >"$dir/ui.out" &
  ui_pid=$!
  for _ in $(seq 1 1200); do
    grep -q '^open$' "$dir/ui.out" && return 0
    kill -0 "$ui_pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "dashboards did not open" >&2
  exit 1
}
close_ui() {
  kill "$ui_pid" && wait "$ui_pid" || true
  ui_pid= ui_kind=
  # The poll client's own account of its calls (count, failures, latency).
  grep '^{' "$dir/ui.out" | sed 's/^/    dashboard calls: /' || true
}
cleanup() { [ -n "$ui_pid" ] && kill "$ui_pid" 2>/dev/null; dev_cluster_stop; rm -rf "$dir"; }
trap cleanup EXIT

echo "machine: $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg); $tabs tabs; mode $mode"
echo "leader $leader (pid $leader_pid), pages on $follower (pid $follower_pid), other $other (pid $other_pid)"
bench >/dev/null # creates the resource and warms the cluster
open_ui poll "${RESOURCES:-10000}" # and the 10 000 resources (RESOURCES: fewer, for a smoke run)
close_ui
if [ "$mode" != browser ]; then
  measure_idle "idle, no dashboards"
  # The rounds' mix (half list, half resource view), then each view alone.
  for poll_view in mixed list resource; do
    open_ui poll 0
    measure_idle "idle, poll $tabs ($poll_view)" "$ui_pid"
    close_ui
  done
  poll_view=mixed
fi
for r in $(seq 1 "$rounds"); do
  measure "without, round $r"
  if [ "$mode" != browser ]; then
    open_ui poll 0
    measure "poll $tabs tabs, $r" "$ui_pid"
    close_ui
  fi
  if [ "$mode" != poll ]; then
    open_ui browser 0
    measure "browser $tabs tabs, $r" "$ui_pid"
    close_ui
  fi
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
