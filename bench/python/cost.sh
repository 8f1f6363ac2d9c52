#!/usr/bin/env bash
# What the Python SDK costs per acquire+release pair on the client side, independent of
# how loaded the machine is (docs/benchmarks.md, "Python SDK"): user-space instructions
# per pair (valgrind's callgrind, the difference between a run of 20 and one of 220
# pairs, so start-up cancels out) and system calls per pair (strace -c, likewise 100
# against 600 pairs),
# for one blocking caller, one asyncio caller and 32 asyncio tasks.
#
#   bash bench/python/cost.sh URLS KEY RESOURCE [PYTHON]
#
# Needs valgrind and strace (Debian packages of those names) and a running cluster whose
# RESOURCE has ample capacity; PYTHON (default python3) must import the SDK. Set
# PYTHONPATH=<checkout>/client/python/src to measure another checkout's SDK.
set -euo pipefail
urls=$1 key=$2 res=$3 py=${4:-python3}
here=$(cd "$(dirname "$0")" && pwd)
ir() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$py" "$here/cost.py" "$urls" "$key" "$res" "$1" "$2" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
sc() {
  strace -f -c -o "/tmp/rq-cost-strace.$$" "$py" "$here/cost.py" "$urls" "$key" "$res" "$1" "$2" >/dev/null
  awk '$NF == "total" {print $4}' "/tmp/rq-cost-strace.$$"
  rm -f "/tmp/rq-cost-strace.$$"
}
for mode in sync 1 32; do
  a=$(ir "$mode" 20)
  b=$(ir "$mode" 220)
  c=$(sc "$mode" 100)
  d=$(sc "$mode" 600)
  label=$([ "$mode" = sync ] && echo "sync, 1 caller" || echo "async, $mode task(s)")
  echo "{\"bench\": \"cost\", \"caller\": \"$label\", \"instructions_per_pair\": $(( (b - a) / 200 )), \"syscalls_per_pair\": $(awk -v a="$c" -v b="$d" 'BEGIN { printf "%.1f", (b - a) / 500 }')}"
done
