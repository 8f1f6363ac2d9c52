#!/usr/bin/env bash
# One acquire, step by step (docs/benchmarks.md): a fresh 3-node cluster logging the
# debug events of every write step (JSON, microsecond timestamps, one clock: all nodes
# are on this machine), ROUNDS warm-up acquire+release pairs, then TRACES traced single
# acquires on an idle cluster; prints each step's time from the moment the client sent
# the request, and the median over the traces.
#
#   bash bench/trace.sh            # ~1 minute after the build
#   SERVE_ARGS=--serve-arg=--leader-fsync-overlap bash bench/trace.sh   # with the overlap
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-200}
TRACES=${TRACES:-21}
cargo build --release --locked -p ratequeue-node --bins
. scripts/dev-cluster.sh
trap 'dev_cluster_stop' EXIT
# shellcheck disable=SC2086 # SERVE_ARGS is a list of words
dev_cluster_start target/release/ratequeue 3 \
  --serve-arg=--log=warn,ratequeue_node=debug --serve-arg=--log-format=json ${SERVE_ARGS:-}
python3 - "$DEV_LEADER_URL" "$DEV_TOKEN" "$DEV_DIR" "$ROUNDS" "$TRACES" <<'PY'
import datetime, http.client, json, pathlib, statistics, sys, time, urllib.parse

leader, token, cluster_dir, rounds, traces = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
u = urllib.parse.urlparse(leader)
conn = http.client.HTTPConnection(u.hostname, u.port)
auth = {"authorization": f"Bearer {token}", "content-type": "application/json"}

def call(method, path, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=auth)
    r = conn.getresponse()
    data = r.read()
    return r.status, json.loads(data) if data else None

assert call("PUT", "/v1/resources/trace", {"concurrency": 1000})[0] in (200, 201)
for _ in range(rounds):
    s, lease = call("POST", "/v1/resources/trace/acquire", {})
    assert s == 200, lease
    call("POST", f"/v1/leases/{lease['lease_id']}/release")

def ts(line):
    t = line["timestamp"].rstrip("Z")
    return datetime.datetime.fromisoformat(t).replace(tzinfo=datetime.timezone.utc).timestamp()

windows = []
for _ in range(traces):
    time.sleep(0.4)  # between heartbeats, on an idle cluster
    t0 = time.time()
    s, lease = call("POST", "/v1/resources/trace/acquire", {})
    t1 = time.time()
    assert s == 200, lease
    windows.append((t0, t1))
    call("POST", f"/v1/leases/{lease['lease_id']}/release")
time.sleep(0.5)

events = []
for log in sorted(cluster_dir.glob("node-*.log")):
    node = log.stem.split("-")[1]
    for raw in log.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        msg = line.get("fields", {}).get("message")
        if msg:
            events.append((ts(line), node, msg))
events.sort()

steps = {}
for t0, t1 in windows:
    seen = {}
    for t, node, msg in events:
        if t0 <= t <= t1 + 0.0005:
            seen.setdefault((node, msg), t)
    for (node, msg), t in seen.items():
        steps.setdefault((node, msg), []).append((t - t0) * 1e6)
    steps.setdefault(("client", "answer received"), []).append((t1 - t0) * 1e6)

rows = sorted(((statistics.median(v), k, len(v)) for k, v in steps.items()))
print(f"{'us from send (median of %d)' % traces:>28}  node  step")
for med, (node, msg), n in rows:
    print(f"{med:>28.0f}  {node:>4}  {msg}" + ("" if n == traces else f"  (in {n} of {traces})"))
PY
