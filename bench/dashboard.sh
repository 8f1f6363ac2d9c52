#!/usr/bin/env bash
# Does an open dashboard load the leader's admission path? The slot cycle (`rqctl bench
# --workload cycle`, 256 clients) on a fresh 3-node cluster with 10 000 resources,
# alternating rounds without and with open dashboards (headless Chromium tabs on a
# follower's /ui/, half on the resources list sorted by grants/s, half on the benched
# resource's view, each refreshing every second). docs/benchmarks.md, "Dashboard".
#
#   flock /tmp/rq-bench.lock bash bench/dashboard.sh [rounds] [seconds] [tabs]
#
# Needs the release binaries (built here), Node.js, Chromium and dashboard/node_modules
# (cd dashboard && npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-10}
tabs=${3:-4}
clients=${CLIENTS:-256}
# RATEQUEUE_BIN_DIR: use the binaries there (e.g. target/debug) instead of building release.
bin=${RATEQUEUE_BIN_DIR:-}
if [ -z "$bin" ]; then
  cargo build --release --locked -p ratequeue-node -p ratequeue-client --bins >&2
  bin=target/release
fi

. scripts/dev-cluster.sh
dev_cluster_start "$bin/ratequeue" 3
token=$DEV_TOKEN
urls=$DEV_URLS
leader=$DEV_LEADER_URL
# A follower serves the pages (it forwards their calls to the leader, as in production).
follower=$(tr ',' '\n' <<<"$urls" | grep -vx "$leader" | head -1)
resource=bench-dashboard

bench() {
  "$bin/rqctl" --url "$urls" --api-key "$token" bench --workload cycle --clients "$clients" \
    --duration "$secs" --warmup 2 --resource "$resource" --json
}
report() { # label json
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.loads(sys.argv[2])
a = r["acquire_us"]
print(f"{sys.argv[1]:<22} {r['ops_per_sec']:>9.0f} pairs/s   acquire p50 {a['p50'] / 1000:.2f} ms  p99 {a['p99'] / 1000:.2f} ms")
PY
}

dir=$(mktemp -d)
ui_pid=
open_ui() { # resources to create first
  node dashboard/bench/open.mjs "$follower" "$leader" "$token" "$resource" "$tabs" "$1" >"$dir/ui.out" &
  ui_pid=$!
  for _ in $(seq 1 1200); do
    grep -q '^open$' "$dir/ui.out" && return 0
    kill -0 "$ui_pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "dashboards did not open" >&2
  exit 1
}
close_ui() { kill "$ui_pid" && wait "$ui_pid" || true; ui_pid=; }
cleanup() { [ -n "$ui_pid" ] && kill "$ui_pid" 2>/dev/null; dev_cluster_stop; rm -rf "$dir"; }
trap cleanup EXIT

echo "machine: $(nproc) cores; load before: $(uptime)"
bench >/dev/null # creates the resource and warms the cluster
open_ui 10000    # and the 10 000 resources
close_ui
for r in $(seq 1 "$rounds"); do
  report "without, round $r" "$(bench)"
  open_ui 0
  report "with $tabs tabs, $r" "$(bench)"
  close_ui
done
echo "load after: $(uptime)"
