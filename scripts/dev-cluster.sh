# A throwaway ratequeue cluster for shell scripts (bench/run.sh, scripts/bench-smoke): the
# project's test-cluster kit, `ratequeue dev --ephemeral --json` (docs/testkit.md), run as
# a coprocess. Source this file, then:
#
#   dev_cluster_start BIN [NODES [EXTRA_DEV_ARGS...]]
#       starts NODES (default 3) `BIN serve` processes on a free loopback block, waits for
#       a serving leader, and sets DEV_URLS (comma-separated API URLs), DEV_TOKEN (the
#       admin token), DEV_LEADER_URL, DEV_DIR (data and node logs) and DEV_NODES (one
#       `id:pid:data_dir` word per node, for samplers).
#   dev_cluster_stop [LOG_DIR]
#       copies the node logs into LOG_DIR (if given), then `quit`: the kit kills the nodes
#       and removes DEV_DIR. Safe to call twice (e.g. from an EXIT trap).
#
# If the script dies without stopping it, the kit notices its parent is gone and cleans
# up by itself.

dev_cluster_start() {
  local bin=$1 nodes=${2:-3}
  shift $(($# < 2 ? $# : 2))
  coproc DEV_CLUSTER { exec "$bin" dev --ephemeral --json --nodes "$nodes" "$@"; }
  DEV_CLUSTER_OUT=${DEV_CLUSTER[0]} DEV_CLUSTER_IN=${DEV_CLUSTER[1]} DEV_CLUSTER_KIT=$DEV_CLUSTER_PID
  local line vars
  if ! read -r -t 300 line <&"$DEV_CLUSTER_OUT"; then
    echo "dev cluster: ratequeue dev printed nothing" >&2
    return 1
  fi
  vars=$(python3 - "$line" <<'PY'
import json, shlex, sys
d = json.loads(sys.argv[1])
if not d.get("ok"):
    sys.exit("dev cluster: " + d.get("error", "failed"))
urls = ",".join(n["api_url"] for n in d["nodes"])
leader = next(n["api_url"] for n in d["nodes"] if n["id"] == d["leader_id"])
nodes = " ".join(f"{n['id']}:{n['pid']}:{n['data_dir']}" for n in d["nodes"])
for k, v in [("DEV_URLS", urls), ("DEV_TOKEN", d["admin_token"]), ("DEV_LEADER_URL", leader), ("DEV_DIR", d["dir"]), ("DEV_NODES", nodes)]:
    print(f"{k}={shlex.quote(v)}")
PY
  ) || return 1
  eval "$vars"
}

dev_cluster_stop() {
  [ -n "${DEV_CLUSTER_KIT:-}" ] || return 0
  if [ -n "${1:-}" ] && [ -n "${DEV_DIR:-}" ]; then
    cp "$DEV_DIR"/node-*.log "$1"/ 2>/dev/null || true
  fi
  echo quit >&"$DEV_CLUSTER_IN" 2>/dev/null || true
  wait "$DEV_CLUSTER_KIT" 2>/dev/null || true
  DEV_CLUSTER_KIT=
}
