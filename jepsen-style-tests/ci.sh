#!/usr/bin/env bash
# The fault-injection step of the test command (scripts/test-all): builds the server and
# the harness, makes sure iptables is there (as root; without it the partition nemeses
# are skipped and the run says so), then runs `jepsen --ci`: a mixed-fault run of 3 nodes
# with every nemesis and workload that must pass, and a sabotaged run that must be caught.
# Extra arguments go to the harness (e.g. --seed N to reproduce a CI run).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v iptables >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing iptables"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q iptables >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iptables >/dev/null 2>&1; } \
    || echo "could not install iptables: partitions will be skipped"
fi

# The same build as the test command's (whole workspace), so nothing is rebuilt with other features.
cargo build --locked --workspace --bins
exec ./target/debug/jepsen --ci "$@"
