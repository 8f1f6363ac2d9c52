#!/usr/bin/env bash
# The Python SDK beside `rqctl bench` and `limits` on Redis, in one run
# (docs/benchmarks.md, "Python SDK").
#
#   bash bench/python/run.sh [OUT_DIR]          # ~6 minutes
#   SECONDS_PER=3 bash bench/python/run.sh      # a quick pass
#   RATEQUEUE_BIN_DIR=DIR bash bench/python/run.sh   # DIR's ratequeue + rqctl, no build
#
# Starts a fresh 3-node ratequeue cluster (release build, every entry fsynced) through the
# test-cluster kit (scripts/dev-cluster.sh) and a Redis server (Debian's redis-server,
# installed if missing; no persistence, on a free loopback port), builds a venv under
# target/bench with the SDK, `limits` and the HTTP clients compared, then, each in turn
# against the same cluster:
#   1. rqctl bench --workload cycle with 1, 32, 128 and 256 clients (the Rust floor);
#   2. bench/python/transports.py: the candidate HTTP clients on raw acquire + release;
#   3. bench/python/sdk.py: the SDK (one caller sync and async, 32 tasks, 4 processes
#      x 32 tasks, 32 threads, the first call of a fresh asyncio.run);
#   4. bench/python/limits_redis.py: `limits` on Redis, one caller and 32 threads.
# Writes results.jsonl, machine.txt (with the load before and after) and report.md under
# OUT_DIR (default target/bench/python-DATE). Hold `flock /tmp/rq-bench.lock` on a
# shared machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

S=${SECONDS_PER:-10}
out=${1:-target/bench/python-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
echo "bench/python: writing to $out"

if ! command -v redis-server >/dev/null 2>&1; then
  echo "bench/python: installing redis-server"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get install -y -q -o DPkg::Lock::Timeout=600 redis-server >/dev/null 2>&1 \
    || { $sudo_ apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null \
         && $sudo_ apt-get install -y -q -o DPkg::Lock::Timeout=600 redis-server >/dev/null; }
fi

venv=target/bench/python-venv
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ./client/python \
  'limits[redis]' 'httpx[http2]' httpcore aiohttp
py="$venv/bin/python"

# RATEQUEUE_BIN_DIR: a directory holding release builds of `ratequeue` and `rqctl` to use
# instead of building them (as bench/dashboard.sh takes it).
if [ -n "${RATEQUEUE_BIN_DIR:-}" ]; then
  bin=$RATEQUEUE_BIN_DIR
else
  cargo build --release --locked -p ratequeue-node -p ratequeue-client
  bin=target/release
fi

. scripts/dev-cluster.sh
pids=()
cleanup() {
  dev_cluster_stop "$out"
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# The project's test-cluster kit: 3 release nodes on a free loopback block (fsync on).
RATEQUEUE_LOG=warn dev_cluster_start "$bin/ratequeue" 3 --serve-arg=--connections-per-source-max=4096
redis_port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --daemonize no \
  >"$out/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  if redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG; then break; fi
  sleep 0.1  # bounded wait for a child process to listen
done
urls=$DEV_URLS
key=$DEV_TOKEN

"$bin/rqctl" --url "$urls" --api-key "$key" status >/dev/null
leader=$DEV_LEADER_URL
curl -sf -o /dev/null -X PUT "$leader/v1/resources/py-bench" -H "authorization: Bearer $key" \
  -H 'content-type: application/json' -d '{"concurrency": 1000000}'

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
  echo "python: $("$py" --version 2>&1)"
  echo "redis: $(redis-server --version | head -1)"
  echo "uptime before: $(uptime)"
} >"$out/machine.txt"

tag() { "$py" -c 'import json, sys
for line in sys.stdin:
    line = line.strip()
    if line.startswith("{"):
        r = json.loads(line); r["suite"] = sys.argv[1]; print(json.dumps(r), flush=True)' "$1"; }

"$bin/rqctl" --url "$urls" --api-key "$key" bench --workload cycle --clients 1,32,128,256 \
  --duration "$S" --warmup 1 --resource rqctl-bench --json | tag rqctl | tee -a "$out/results.jsonl"
"$py" bench/python/transports.py "$leader" "$key" py-bench --seconds "$S" | tag transports | tee -a "$out/results.jsonl"
"$py" bench/python/sdk.py "$urls" "$key" py-bench --seconds "$S" | tag sdk | tee -a "$out/results.jsonl"
"$py" bench/python/limits_redis.py "redis://127.0.0.1:$redis_port" --seconds "$S" | tag limits | tee -a "$out/results.jsonl"

echo "uptime after: $(uptime)" >>"$out/machine.txt"
"$py" bench/python/report.py "$out" | tee "$out/report.md"
echo "bench/python: done; see $out/report.md"
