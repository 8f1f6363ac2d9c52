#!/usr/bin/env bash
# The fault-injection step of the test command (scripts/test-all): builds the server and
# the harness, makes sure iptables is there (as root; without it the partition nemeses
# are skipped and the run says so), then runs `jepsen --ci`: a mixed-fault run of 3 nodes
# with every nemesis and workload, and a run of the storage, disk and clock faults (on
# the `failpoints` build), that must pass; and eight sabotaged runs that must be caught
# (every disk lost mid-run; a broken build whose followers grant locally; the failpoints
# build with a lying fsync, ignoring disk errors, repairing a damaged log tail,
# stamping cluster time from the wall clock, charging no dry-run grant, and ignoring a
# reported 429).
# Extra arguments go to the harness (e.g. --seed N to reproduce a CI run).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v iptables >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing iptables"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q iptables >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iptables >/dev/null 2>&1; } \
    || echo "could not install iptables: partitions will be skipped"
fi

# The deliberately broken server (followers grant without Raft) for the negative control,
# kept aside as ratequeue-sabotaged. Then the same build as the test command's (whole
# workspace), which puts the real server back in place: only ratequeue-node differs
# between the two, so the second build only relinks.
cargo build --locked --workspace --bins --features ratequeue-node/sabotage-follower-grants
cp target/debug/ratequeue target/debug/ratequeue-sabotaged
# The storage failpoints build (node/server/src/storage/failpoint.rs, clock.rs): the
# storage, disk and clock faults run on it, and its broken settings are six controls.
cargo build --locked --workspace --bins --features ratequeue-node/failpoints
cp target/debug/ratequeue target/debug/ratequeue-failpoints
# The failpoint layer's own unit tests (undo journal, power cut, tails, disk and clock
# faults) exist only with the feature.
cargo test --locked -p ratequeue-node --features ratequeue-node/failpoints --lib -- failpoint clock
cargo build --locked --workspace --bins
exec ./target/debug/jepsen --ci "$@"
