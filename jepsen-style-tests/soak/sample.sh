#!/usr/bin/env bash
# Samples every node process of a soak run into OUT_DIR/samples.csv (appending; soak.sh
# writes the header) every SAMPLE_SECONDS until process RUN_PID exits: t_s since
# START_EPOCH, node, pid, rss_bytes, dir_bytes, open_files, threads. Beside it, from each
# node's /metrics (admin token, 2 s timeout; a paused node has no row), OUT_DIR/state.csv:
# the applied state's table sizes (`ratequeue_state_entries`), the Raft log's last,
# snapshot and purged indexes, the log store's bytes and the waiters.
#
#   bash jepsen-style-tests/soak/sample.sh OUT_DIR START_EPOCH RUN_PID [SAMPLE_SECONDS]
#
# Deliberately without `set -e`/`pipefail`: node processes end at any moment under the
# faults (a kill between reading a node's cmdline and listing its fds), and a failed read
# must skip that row, not end the sampling (it did, 14 minutes into the first soak).
set -u
out=$1
start=$2
run=$3
every=${4:-10}
# The harness's admin token (jepsen-style-tests/src/run.rs, ADMIN_TOKEN).
token=${SOAK_ADMIN_TOKEN:-jepsen-admin-token-0123456789}
while kill -0 "$run" 2>/dev/null; do
  t=$(($(date +%s) - start))
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    case "$cmd" in
      *"serve --id "*"--data-dir $out/run/nodes/"*) ;;
      *) continue ;;
    esac
    pid=${p#/proc/}
    id=$(sed -n 's/.*serve --id \([0-9]*\).*/\1/p' <<<"$cmd")
    rss=$(awk '/^VmRSS:/ {print $2 * 1024}' "$p/status" 2>/dev/null)
    threads=$(awk '/^Threads:/ {print $2}' "$p/status" 2>/dev/null)
    files=$(ls "$p/fd" 2>/dev/null | wc -l)
    dir=$(du -sb "$out/run/nodes/node-$id" 2>/dev/null | cut -f1)
    # A process that ended meanwhile has no status left: skip its row.
    [ -n "$rss" ] && [ -n "$threads" ] || continue
    echo "$t,$id,$pid,$rss,${dir:-0},$files,$threads" >>"$out/samples.csv"
    url=$(sed -n 's/.*--advertise-api-url \([^ ]*\).*/\1/p' <<<"$cmd")
    [ -n "$url" ] || continue
    m=$(curl -sf --max-time 2 -H "Authorization: Bearer $token" "$url/metrics" 2>/dev/null) || continue
    row=$(awk -v t="$t" -v id="$id" -v pid="$pid" '
      /^ratequeue_state_entries\{table="/ { split($1, a, "\""); v[a[2]] = $2 }
      /^ratequeue_raft_last_log_index / { v["last"] = $2 }
      /^ratequeue_raft_snapshot_index / { v["snap"] = $2 }
      /^ratequeue_raft_purged_index / { v["purged"] = $2 }
      /^ratequeue_storage_bytes / { v["store"] = $2 }
      /^ratequeue_waiters / { v["waiters"] = $2 }
      END {
        if (!("leases" in v)) exit 1
        printf "%s,%s,%s,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d\n", t, id, pid, v["resources"], v["leases"],
          v["tombstones"], v["request_ids"], v["keys"], v["waiters"], v["last"], v["snap"],
          v["purged"], v["store"]
      }' <<<"$m") || continue
    echo "$row" >>"$out/state.csv"
  done
  sleep "$every"
done
