"""Plots soak samples (samples.csv from jepsen-style-tests/soak.sh) as one PNG: four
panels (RSS, data directory, open files, threads) over time, one line per node, a
line broken where the node's process changed (a fault restarted it), and a printed
summary per node and quantity: first, median and max after the warm-up, and the
slope of a least-squares line over the last two thirds (per 10 minutes), which is
what "flat after warm-up" is judged by. When state.csv (the nodes' /metrics, see
soak/sample.sh) lies beside samples.csv, four more panels and summary lines: the
applied state's request ids (the idempotency window), tombstones and leases, and
the Raft log entries kept (last index minus last purged).

Needs matplotlib: soak.sh installs it into target/soak-venv (pinned)."""

import csv
import os
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLS = [
    ("rss_bytes", "resident memory (MiB)", 1 / 2**20),
    ("dir_bytes", "data directory (MiB)", 1 / 2**20),
    ("open_files", "open files", 1),
    ("threads", "threads", 1),
]
# From state.csv, when there is one: (column or (column, minus column), title, scale).
STATE_COLS = [
    ("request_ids", "request ids (thousands)", 1 / 1000),
    ("tombstones", "tombstones (thousands)", 1 / 1000),
    ("leases", "leases", 1),
    (("last_log_index", "purged_index"), "Raft log entries kept", 1),
]
# Seconds excluded as warm-up from the summary's "after warm-up" figures (the slope is
# over the last two thirds either way); SOAK_WARM_UP_S overrides it.
WARM_UP_S = int(os.environ.get("SOAK_WARM_UP_S", "300"))


def value(row, col):
    if isinstance(col, tuple):
        return float(row[col[0]]) - float(row[col[1]])
    return float(row[col])


def slope_per_10min(points):
    """Least-squares slope of (t, v) points, per 600 s; 0 for fewer than 2 points."""
    if len(points) < 2:
        return 0.0
    ts = [t for t, _ in points]
    vs = [v for _, v in points]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    den = sum((t - mt) ** 2 for t in ts)
    if den == 0:
        return 0.0
    return 600 * sum((t - mt) * (v - mv) for t, v in points) / den


def load(src):
    series = defaultdict(list)
    with open(src) as f:
        for row in csv.DictReader(f):
            series[int(row["node"])].append(row)
    return series


def summary(series, t_max, cols=COLS, per_process=True):
    lines = []
    for col, title, scale in cols:
        for node, rows in sorted(series.items()):
            pts = [(float(r["t_s"]), value(r, col) * scale) for r in rows]
            warm = [p for p in pts if p[0] >= WARM_UP_S] or pts
            tail = [p for p in pts if p[0] >= t_max / 3] or pts
            vals = [v for _, v in warm]
            lines.append(
                f"{title:24} node {node}: after warm-up first {vals[0]:.1f} "
                f"median {statistics.median(vals):.1f} max {max(vals):.1f}; "
                f"slope over last 2/3 {slope_per_10min(tail):+.2f} per 10 min; "
                f"processes {len({r['pid'] for r in rows})}"
            )
    # Memory is per process: with faults that restart nodes, the longest-lived process
    # of each node is the one that can show growth.
    for node, rows in sorted(series.items() if per_process else []):
        by_pid = defaultdict(list)
        for r in rows:
            by_pid[r["pid"]].append((float(r["t_s"]), float(r["rss_bytes"]) / 2**20))
        pid, pts = max(by_pid.items(), key=lambda kv: kv[1][-1][0] - kv[1][0][0])
        life = pts[-1][0] - pts[0][0]
        warm = [p for p in pts if p[0] - pts[0][0] >= min(WARM_UP_S, life / 3)] or pts
        lines.append(
            f"longest-lived process  node {node}: pid {pid}, {life / 60:.1f} min, RSS after "
            f"its warm-up {warm[0][1]:.1f} -> {warm[-1][1]:.1f} MiB (max {max(v for _, v in warm):.1f}), "
            f"slope {slope_per_10min(warm):+.2f} MiB per 10 min"
        )
    return lines


def main(src, dst, title=""):
    series = load(src)
    state_src = os.path.join(os.path.dirname(src), "state.csv")
    state = load(state_src) if os.path.exists(state_src) else {}
    state = {n: rows for n, rows in state.items() if rows}
    panels = [(series, c) for c in COLS] + [(state, c) for c in STATE_COLS if state]
    t_max = max((float(r["t_s"]) for rows in series.values() for r in rows), default=1) or 1
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.75 * len(panels)), sharex=True)
    for ax, (data, (col, label, scale)) in zip(axes, panels):
        for i, (node, rows) in enumerate(sorted(data.items())):
            colour = f"C{i % 10}"
            # One segment per process, so a restart shows as a break, not a jump.
            seg_t, seg_v, pid = [], [], None
            first = True
            for r in rows + [None]:
                if r is None or (pid is not None and r["pid"] != pid):
                    ax.plot(seg_t, seg_v, color=colour, lw=1,
                            label=f"node {node}" if first else None)
                    first = False
                    seg_t, seg_v = [], []
                if r is not None:
                    pid = r["pid"]
                    seg_t.append(float(r["t_s"]) / 60)
                    seg_v.append(value(r, col) * scale)
        ax.axvline(WARM_UP_S / 60, color="#999", ls=":", lw=1)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", ncol=len(series), fontsize=8)
    axes[0].set_title(title or "soak: per-node samples every 10 s (dotted: end of warm-up)")
    axes[-1].set_xlabel("minutes since start")
    fig.tight_layout()
    fig.savefig(dst, dpi=80)
    lines = summary(series, t_max)
    if state:
        lines += summary(state, t_max, STATE_COLS, per_process=False)
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")
