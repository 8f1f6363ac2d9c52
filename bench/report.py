"""Tables and plots of a bench/run.sh output directory: report.md and plots/*.svg."""

import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SYSTEMS = ["ratequeue", "etcd"]
COLORS = {"ratequeue": "#1f6feb", "etcd": "#d1242f"}
UNIT = {"cycle": "pairs/s", "contended": "pairs/s", "rate": "checks/s"}


def ms(us):
    return f"{us / 1000:.2f}"


def main(out: pathlib.Path) -> None:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line]
    closed = [r for r in rows if r["target_rate"] is None]
    paced = [r for r in rows if r["target_rate"] is not None]
    workloads = list(dict.fromkeys(r["workload"] for r in closed))
    plots = out / "plots"
    plots.mkdir(exist_ok=True)

    md = ["# ratequeue beside etcd", "", "```", (out / "machine.txt").read_text().strip(), "```", ""]
    for w in workloads:
        md += [
            f"## {w} ({UNIT[w]})",
            "",
            "| clients | ratequeue ops/s | etcd ops/s | ratio | ratequeue p50 / p99 / p999 ms | etcd p50 / p99 / p999 ms |",
            "|---:|---:|---:|---:|---|---|",
        ]
        by = {(r["system"], r["clients"]): r for r in closed if r["workload"] == w}
        for c in sorted({c for (_, c) in by}):
            rq, et = by.get(("ratequeue", c)), by.get(("etcd", c))
            if not rq or not et:
                continue
            lat = lambda r: " / ".join(ms(r["acquire_us"][k]) for k in ("p50", "p99", "p999"))
            ratio = rq["ops_per_sec"] / et["ops_per_sec"] if et["ops_per_sec"] else float("inf")
            md.append(
                f"| {c} | {rq['ops_per_sec']:,.0f} | {et['ops_per_sec']:,.0f} | {ratio:.1f}x | {lat(rq)} | {lat(et)} |"
            )
        md.append("")

        fig, ax = plt.subplots(figsize=(6, 4))
        for s in SYSTEMS:
            pts = sorted((r["clients"], r["ops_per_sec"]) for r in closed if r["workload"] == w and r["system"] == s)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=s, color=COLORS[s])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("clients")
        ax.set_ylabel(UNIT[w])
        ax.set_title(f"{w}: throughput against clients")
        ax.grid(True, alpha=0.3)
        if ax.get_lines():
            ax.legend()
        fig.tight_layout()
        fig.savefig(plots / f"throughput-{w}.svg")
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(6, 4))
        for s in SYSTEMS:
            for r in closed:
                if r["workload"] == w and r["system"] == s and r["clients"] == 256 and r["acquire_cdf_us"]:
                    q, us = zip(*r["acquire_cdf_us"])
                    ax.plot([u / 1000 for u in us], q, label=f"{s}, 256 clients", color=COLORS[s])
        ax.set_xscale("log")
        ax.set_xlabel("acquire latency (ms)")
        ax.set_ylabel("fraction of acquires")
        ax.set_title(f"{w}: latency CDF at 256 clients")
        ax.grid(True, alpha=0.3)
        if ax.get_lines():
            ax.legend()
        fig.tight_layout()
        fig.savefig(plots / f"latency-cdf-{w}.svg")
        plt.close(fig)

    if paced:
        md += [
            "## cycle at 80 % of each system's peak (256 clients, open loop)",
            "",
            "| system | asked ops/s | done ops/s | p50 ms | p99 ms | p999 ms |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in paced:
            a = r["acquire_us"]
            md.append(
                f"| {r['system']} | {r['target_rate']:,.0f} | {r['ops_per_sec']:,.0f} | {ms(a['p50'])} | {ms(a['p99'])} | {ms(a['p999'])} |"
            )
        md.append("")
    many = out / "many-resources.jsonl"
    if many.exists():
        md += [
            "## cycle on one of 10 000 resources (ratequeue)",
            "",
            "| clients | pairs/s | p50 ms | p99 ms | p999 ms |",
            "|---:|---:|---:|---:|---:|",
        ]
        for line in many.read_text().splitlines():
            r = json.loads(line)
            a = r["acquire_us"]
            md.append(f"| {r['clients']} | {r['ops_per_sec']:,.0f} | {ms(a['p50'])} | {ms(a['p99'])} | {ms(a['p999'])} |")
        md.append("")
    waiters = out / "waiters.json"
    if waiters.exists():
        w = json.loads(waiters.read_text())
        md += [
            "## waiters",
            "",
            f"{w['waiters']:,} parked acquires: leader RSS {w['rss_bytes'] / 2**20:.1f} MiB "
            f"(before {w['rss_before_bytes'] / 2**20:.1f} MiB, {w['bytes_per_waiter']:,} B per waiter); "
            f"parked in {w['park_seconds']:.1f} s, all cancelled {w['cancel_seconds']:.1f} s after the clients let go.",
            "",
        ]
    snap = out / "snapshot.txt"
    if snap.exists():
        md += ["## snapshot", "", "```", snap.read_text().strip(), "```", ""]
    (out / "report.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
