#!/usr/bin/env bash
# ratequeue beside etcd on this machine, in one run (docs/benchmarks.md).
#
#   bash bench/run.sh [OUT_DIR]            # the full run (~35 minutes)
#   QUICK=1 bash bench/run.sh              # a 2-second pass over every point
#   bash bench/sustained.sh [OUT_DIR]      # the 30-minute sustained run (separate)
#
# Starts a fresh 3-node ratequeue cluster (release build; every entry fsynced), a fresh
# 3-node etcd cluster (Debian's etcd-server, installed if missing; fsync on, its default)
# and a bare axum echo server answering the cycle's two requests (the HTTP ceiling), all
# on loopback; then for every workload and client count runs `rqctl bench` against each
# system in turn, swapping the order every other point so machine noise hits both (and
# the echo server after each cycle point). Then: latency at 60 % and 80 % of each
# system's measured peak (open loop, PACED_DURATION s each), acquire latency with 10 000
# resources, the 100 000-waiter memory probe and the 1 000 000-lease snapshot probe.
# Writes results.jsonl, report.md and the plots (plots/*.svg) under OUT_DIR (default
# target/bench/DATE).
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-1,16,64,256,1024}
WORKLOADS=${WORKLOADS:-cycle contended rate}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
WAITERS=${WAITERS:-100000}
# The paced (open-loop) runs at 60 % and 80 % of peak: long enough to span at least
# three snapshots of every node (one per 10 000 entries; the report counts them).
PACED_DURATION=${PACED_DURATION:-60}
if [ -n "${QUICK:-}" ]; then DURATION=2; WARMUP=0.5; WAITERS=${WAITERS_QUICK:-2000}; PACED_DURATION=2; fi
out=${1:-target/bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
echo "bench: writing to $out"

# etcd-server has the server; etcdctl (the health check below) is in etcd-client.
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  echo "bench: installing etcd-server and etcd-client"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get -o DPkg::Lock::Timeout=600 install -y -q etcd-server etcd-client >/dev/null 2>&1 \
    || { $sudo_ apt-get update -q >/dev/null && $sudo_ apt-get -o DPkg::Lock::Timeout=600 install -y -q etcd-server etcd-client >/dev/null; }
fi
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q matplotlib

cargo build --release --locked -p ratequeue-node -p ratequeue-client --bins --example echo_server
bin=target/release

# 1024 clients need 2 sockets each on the client and one on the server, plus ports.
ulimit -n "$(ulimit -Hn)"
if [ -w /proc/sys/net/ipv4/ip_local_port_range ]; then echo "1024 65535" >/proc/sys/net/ipv4/ip_local_port_range; fi

. scripts/dev-cluster.sh
data=$(mktemp -d)
pids=()
cleanup() {
  dev_cluster_stop "$out"
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

export RATEQUEUE_LOG=warn
# ratequeue: the test-cluster kit's throwaway cluster (docs/testkit.md) on a free loopback
# block, default server settings but the per-source connection cap: every load-generator
# client and the waiters probe's 782 HTTP/2 connections come from one address. Its node
# logs are copied to OUT_DIR at the end. It answers once a leader serves. SERVE_ARGS adds
# `--serve-arg=…` words (SERVE_ARGS=--serve-arg=--leader-fsync-overlap).
# shellcheck disable=SC2086 # SERVE_ARGS is a list of words
dev_cluster_start "$bin/ratequeue" 3 --serve-arg=--connections-per-source-max=4096 ${SERVE_ARGS:-}
export RATEQUEUE_ADMIN_TOKEN=$DEV_TOKEN
rq_url=$DEV_URLS

initial="e1=http://127.0.4.1:2380,e2=http://127.0.4.2:2380,e3=http://127.0.4.3:2380"
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$data/etcd$i" \
    --listen-client-urls "http://127.0.4.$i:2379" --advertise-client-urls "http://127.0.4.$i:2379" \
    --listen-peer-urls "http://127.0.4.$i:2380" --initial-advertise-peer-urls "http://127.0.4.$i:2380" \
    --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token rqbench \
    --log-level warn 2>"$out/etcd-$i.log" &
  pids+=($!)
done
etcd_url="http://127.0.4.1:2379,http://127.0.4.2:2379,http://127.0.4.3:2379"

# The HTTP ceiling: a bare axum server answering the cycle's two requests (no Raft).
echo_url="http://127.0.5.1:7700"
"$bin/examples/echo_server" 127.0.5.1:7700 2>"$out/echo.log" &
pids+=($!)
for _ in $(seq 1 100); do
  if curl -s -o /dev/null "$echo_url/"; then break; fi
  sleep 0.1
done

# etcd up: it answers its health check.
for _ in $(seq 1 100); do
  if ETCDCTL_API=3 etcdctl --endpoints "$etcd_url" endpoint health >/dev/null 2>&1; then break; fi
  sleep 0.2
done
ETCDCTL_API=3 etcdctl --endpoints "$etcd_url" endpoint health >/dev/null

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
  echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "kernel: $(uname -r)"
  echo "etcd: $(etcd --version | head -1)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.txt"

bench() { # system url workload clients [extra args...]
  local system=$1 url=$2 workload=$3 clients=$4
  shift 4
  "$bin/rqctl" --url "$url" --api-key "$RATEQUEUE_ADMIN_TOKEN" bench --system "$system" \
    --workload "$workload" --clients "$clients" --duration "$DURATION" --warmup "$WARMUP" \
    --resource "bench-$workload" --json "$@" | tee -a "$out/results.jsonl"
}

n=0
for w in $WORKLOADS; do
  for c in ${CLIENTS//,/ }; do
    if [ $((n % 2)) = 0 ]; then
      bench ratequeue "$rq_url" "$w" "$c"; bench etcd "$etcd_url" "$w" "$c"
    else
      bench etcd "$etcd_url" "$w" "$c"; bench ratequeue "$rq_url" "$w" "$c"
    fi
    # The ceiling at the same client count, right after (the cycle's requests only).
    if [ "$w" = cycle ]; then bench echo "$echo_url" cycle "$c"; fi
    n=$((n + 1))
  done
done

# Latency below saturation: 256 clients paced to 60 % and 80 % of each system's own
# cycle peak, PACED_DURATION seconds each (ratequeue's points span several snapshots).
peak() { # system
  python3 - "$out/results.jsonl" "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(max(r["ops_per_sec"] for r in rows
          if r["system"] == sys.argv[2] and r["workload"] == "cycle" and r["target_rate"] is None))
PY
}
case " $WORKLOADS " in *" cycle "*)
  for share in 0.6 0.8; do
    for system in ratequeue etcd; do
      url=$rq_url; [ "$system" = etcd ] && url=$etcd_url
      rate=$(python3 -c "print(round($share * $(peak "$system")))")
      DURATION=$PACED_DURATION bench "$system" "$url" cycle 256 --rate "$rate"
    done
  done
  ;;
esac

# Acquire latency with 10 000 resources: create them (concurrency 100 and a request
# bucket each), then the cycle on one of them.
leader=$DEV_LEADER_URL
seq 1 "${RESOURCES:-10000}" | xargs -P 32 -I{} curl -sf -o /dev/null -X PUT "$leader/v1/resources/many-{}" \
  -H "authorization: Bearer $RATEQUEUE_ADMIN_TOKEN" -H 'content-type: application/json' \
  -d '{"concurrency": 100, "rate": [{"per": "request", "limit": 1000, "window_ms": 1000}]}'
"$bin/rqctl" --url "$rq_url" --api-key "$RATEQUEUE_ADMIN_TOKEN" bench --workload cycle \
  --clients 1,64 --duration "$DURATION" --warmup "$WARMUP" --resource many-5000 --json \
  | tee "$out/many-resources.jsonl"

"$bin/rqctl" --url "$rq_url" --api-key "$RATEQUEUE_ADMIN_TOKEN" bench --workload waiters \
  --waiters "$WAITERS" --resource bench-waiters --json | tee "$out/waiters.json"
cargo run --release --locked -q -p ratequeue-core --example snapshot_scale | tee "$out/snapshot.txt"

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"
python3 bench/report.py "$out"
echo "bench: done; see $out/report.md"
