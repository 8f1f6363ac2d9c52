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


def plot(path, title, xlabel, ylabel, series, xscale, marker=None):
    """One SVG line chart; `series` maps a label (starting with the system) to points."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in series.items():
        ax.plot(*zip(*pts), marker=marker, label=label, color=COLORS[label.split(",")[0]])
    ax.set_xscale(xscale[0], base=xscale[1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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

        throughput = {
            s: sorted((r["clients"], r["ops_per_sec"]) for r in closed if r["workload"] == w and r["system"] == s)
            for s in SYSTEMS
        }
        plot(plots / f"throughput-{w}.svg", f"{w}: throughput against clients", "clients", UNIT[w],
             {s: pts for s, pts in throughput.items() if pts}, xscale=("log", 2), marker="o")
        cdfs = {
            f"{r['system']}, 256 clients": [(us / 1000, q) for q, us in r["acquire_cdf_us"]]
            for r in closed
            if r["workload"] == w and r["clients"] == 256 and r["acquire_cdf_us"]
        }
        plot(plots / f"latency-cdf-{w}.svg", f"{w}: latency CDF at 256 clients", "acquire latency (ms)",
             "fraction of acquires", cdfs, xscale=("log", 10))

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
