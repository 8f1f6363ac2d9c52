"""Plots soak samples (samples.csv from jepsen-style-tests/soak.sh) as one SVG: four
panels (RSS, data dir, open files, threads) over time, one line per node. Standard
library only, so the soak needs no extra packages."""

import csv
import sys
from collections import defaultdict

COLS = [
    ("rss_bytes", "resident memory (MiB)", 1 / 2**20),
    ("dir_bytes", "data directory (MiB)", 1 / 2**20),
    ("open_files", "open files", 1),
    ("threads", "threads", 1),
]
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
W, H, PAD = 900, 220, 50


def main(src: str, dst: str) -> None:
    series = defaultdict(list)
    with open(src) as f:
        for row in csv.DictReader(f):
            series[int(row["node"])].append(row)
    t_max = max((float(r["t_s"]) for rows in series.values() for r in rows), default=1) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H * len(COLS)}" '
             'font-family="sans-serif" font-size="12">']
    for k, (col, title, scale) in enumerate(COLS):
        y0 = k * H
        v_max = max((float(r[col]) * scale for rows in series.values() for r in rows), default=1) or 1
        parts.append(f'<text x="{PAD}" y="{y0 + 18}">{title} (max {v_max:.1f})</text>')
        parts.append(f'<rect x="{PAD}" y="{y0 + 25}" width="{W - 2 * PAD}" height="{H - 60}" '
                     'fill="none" stroke="#999"/>')
        for i, (node, rows) in enumerate(sorted(series.items())):
            pts = " ".join(
                f"{PAD + float(r['t_s']) / t_max * (W - 2 * PAD):.1f},"
                f"{y0 + 25 + (H - 60) * (1 - float(r[col]) * scale / v_max):.1f}"
                for r in rows)
            colour = COLOURS[i % len(COLOURS)]
            parts.append(f'<polyline fill="none" stroke="{colour}" points="{pts}"/>')
            parts.append(f'<text x="{W - PAD + 5}" y="{y0 + 40 + 14 * i}" fill="{colour}">node {node}</text>')
        parts.append(f'<text x="{W - PAD}" y="{y0 + H - 20}" text-anchor="end">{t_max:.0f} s</text>')
    parts.append("</svg>")
    with open(dst, "w") as f:
        f.write("\n".join(parts))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
