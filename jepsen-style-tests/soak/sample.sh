#!/usr/bin/env bash
# Samples every node process of a soak run into OUT_DIR/samples.csv (appending; soak.sh
# writes the header) every SAMPLE_SECONDS until process RUN_PID exits: t_s since
# START_EPOCH, node, pid, rss_bytes, dir_bytes, open_files, threads.
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
  done
  sleep "$every"
done
