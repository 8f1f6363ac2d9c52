#!/usr/bin/env bash
# Acquire+release from Node (@ratequeue/sdk) beside the Python SDK (ratequeue.aio), against
# one fresh 3-node cluster of the release build (docs/benchmarks.md, "SDKs").
#
#   bash bench/sdk.sh                       # PAIRS=2000 CONCURRENCY=64 SECONDS=10
#   PAIRS=200 SECONDS=2 bash bench/sdk.sh   # a quick pass
#
# Hold `flock /tmp/rq-bench.lock` while it runs on a shared machine, and record `uptime`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p ratequeue-node --bin ratequeue
(
  cd client/js
  [ -d node_modules ] || npm ci --no-audit --no-fund
  npm run --silent build
  npm run --silent build:test
)
uptime
RATEQUEUE_BIN="$PWD/target/release/ratequeue" node client/js/build/bench/sdk-bench.js
uptime
