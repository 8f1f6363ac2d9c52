"""Tables and plots of a bench/run.sh output directory (report.md, plots/*.svg), or with
--sustained of a bench/sustained.sh one (sustained.md, plots/sustained.svg)."""

import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SYSTEMS = ["ratequeue", "etcd", "echo"]
COLORS = {"ratequeue": "#1f6feb", "etcd": "#d1242f", "echo": "#8c959f"}
# Entries between snapshots (RaftTuning::snapshot_every in node/server/src/node.rs).
SNAPSHOT_EVERY = 10_000
UNIT = {"cycle": "pairs/s", "contended": "pairs/s", "rate": "checks/s"}


def ms(us):
    return f"{us / 1000:.2f}"


def plot(path, title, xlabel, ylabel, series, xscale, marker=None):
    """One SVG line chart; `series` maps a label (starting with the system) to points."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in series.items():
        system = label.split(",")[0].split(" ")[0]
        style = "--" if system == "echo" else "-"
        ax.plot(*zip(*pts), style, marker=marker, label=label, color=COLORS[system])
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
        echo = {c: r for (sy, c), r in by.items() if sy == "echo"}
        if echo:
            md += [
                "The ceiling: a bare axum server answering the same two requests (no Raft, no state),",
                "measured right after each point (`node/server/examples/echo_server.rs`).",
                "",
                "| clients | echo pairs/s | ratequeue / echo | echo p50 / p99 ms |",
                "|---:|---:|---:|---|",
            ]
            for c in sorted(echo):
                e, rq = echo[c], by.get(("ratequeue", c))
                share = f"{rq['ops_per_sec'] / e['ops_per_sec']:.2f}" if rq and e["ops_per_sec"] else "-"
                md.append(
                    f"| {c} | {e['ops_per_sec']:,.0f} | {share} | {ms(e['acquire_us']['p50'])} / {ms(e['acquire_us']['p99'])} |"
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

    by_w = lambda w, sy: {r["clients"]: r for r in closed if r["workload"] == w and r["system"] == sy}
    if {"cycle", "contended"} <= set(workloads):
        md += [
            "## contended (8 slots) against uncontended (cycle), same run",
            "",
            "| clients | ratequeue contended / cycle | etcd contended / cycle | ratequeue contended / etcd contended |",
            "|---:|---:|---:|---:|",
        ]
        rc, ru, ec, eu = by_w("contended", "ratequeue"), by_w("cycle", "ratequeue"), by_w("contended", "etcd"), by_w("cycle", "etcd")
        for c in sorted(set(rc) & set(ru)):
            f = lambda a, b: f"{a['ops_per_sec'] / b['ops_per_sec']:.2f}" if a and b and b["ops_per_sec"] else "-"
            md.append(f"| {c} | {f(rc[c], ru[c])} | {f(ec.get(c), eu.get(c))} | {f(rc[c], ec.get(c))} |")
        md.append("")

    if paced:
        peak = {sy: max((r["ops_per_sec"] for r in closed if r["system"] == sy and r["workload"] == "cycle"), default=0)
                for sy in SYSTEMS}
        md += [
            "## cycle at 60 % and 80 % of each system's peak (256 clients, open loop)",
            "",
            "`snapshots`: how many times every ratequeue node snapshotted during the point (one per "
            f"{SNAPSHOT_EVERY:,} Raft entries; from the leader's log index before and after).",
            "",
            "| system | share of peak | asked ops/s | done ops/s | seconds | snapshots | p50 ms | p99 ms | p999 ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in paced:
            a = r["acquire_us"]
            share = r["target_rate"] / peak[r["system"]] if peak.get(r["system"]) else 0
            snaps = "-"
            if r.get("log_index"):
                before, after = r["log_index"]
                snaps = str(after // SNAPSHOT_EVERY - before // SNAPSHOT_EVERY)
            md.append(
                f"| {r['system']} | {share:.0%} | {r['target_rate']:,.0f} | {r['ops_per_sec']:,.0f} | {r['seconds']:.0f} | {snaps} | {ms(a['p50'])} | {ms(a['p99'])} | {ms(a['p999'])} |"
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


def sustained(out: pathlib.Path) -> None:
    """sustained.md and plots/sustained.svg (and .png): p99 per minute, RSS and data-dir size."""
    import csv

    r = json.loads((out / "sustained.json").read_text().splitlines()[-1])
    samples = list(csv.DictReader((out / "samples.csv").open()))
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    fig, axes = plt.subplots(3, 1, figsize=(7, 9), sharex=True)
    minutes = [(i["start_s"] + 30) / 60 for i in r["intervals"]]
    axes[0].plot(minutes, [i["acquire_us"]["p99"] / 1000 for i in r["intervals"]], marker="o", label="p99")
    axes[0].plot(minutes, [i["acquire_us"]["p999"] / 1000 for i in r["intervals"]], marker=".", label="p999")
    axes[0].set_ylabel("acquire latency per minute (ms)")
    axes[0].legend()
    nodes = sorted({s["node"] for s in samples})
    for n in nodes:
        pts = [(int(s["t_s"]) / 60, int(s["rss_bytes"]) / 2**20, int(s["dir_bytes"]) / 2**20) for s in samples if s["node"] == n]
        axes[1].plot([p[0] for p in pts], [p[1] for p in pts], label=f"node {n}")
        axes[2].plot([p[0] for p in pts], [p[2] for p in pts], label=f"node {n}")
    axes[1].set_ylabel("RSS (MiB)")
    axes[2].set_ylabel("data dir (MiB)")
    axes[2].set_xlabel("minutes")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    axes[1].legend()
    axes[0].set_title(f"cycle, 256 clients at {r['target_rate']:,.0f} pairs/s for {r['seconds'] / 60:.0f} min")
    fig.tight_layout()
    fig.savefig(plots / "sustained.svg")
    fig.savefig(plots / "sustained.png", dpi=80)  # for docs/, which keep PNGs
    plt.close(fig)

    md = ["# sustained cycle", "", "```", (out / "machine.txt").read_text().strip(), "```", "",
          f"256 open-loop clients asking {r['target_rate']:,.0f} pairs/s for {r['seconds']:.0f} s; "
          f"done {r['ops_per_sec']:,.0f}/s; whole run p50 {ms(r['acquire_us']['p50'])} ms, "
          f"p99 {ms(r['acquire_us']['p99'])} ms, p999 {ms(r['acquire_us']['p999'])} ms.", ""]
    if r.get("log_index"):
        before, after = r["log_index"]
        md += [f"Raft entries written: {after - before:,} ({after // SNAPSHOT_EVERY - before // SNAPSHOT_EVERY} snapshots per node).", ""]
    md += ["| minute | pairs | p50 ms | p99 ms | p999 ms | max ms |", "|---:|---:|---:|---:|---:|---:|"]
    for i in r["intervals"]:
        a = i["acquire_us"]
        md.append(f"| {i['start_s'] / 60:.0f} | {i['ops']:,} | {ms(a['p50'])} | {ms(a['p99'])} | {ms(a['p999'])} | {ms(a['max'])} |")
    md.append("")
    last = {}
    first = {}
    for s in samples:
        first.setdefault(s["node"], s)
        last[s["node"]] = s
    md += ["| node | RSS first / last MiB | data dir first / last MiB |", "|---:|---|---|"]
    for n in nodes:
        f, l = first[n], last[n]
        md.append(f"| {n} | {int(f['rss_bytes']) / 2**20:.0f} / {int(l['rss_bytes']) / 2**20:.0f} | "
                  f"{int(f['dir_bytes']) / 2**20:.0f} / {int(l['dir_bytes']) / 2**20:.0f} |")
    md += ["", "![sustained](plots/sustained.svg)", ""]
    (out / "sustained.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    if sys.argv[1] == "--sustained":
        sustained(pathlib.Path(sys.argv[2]))
    else:
        main(pathlib.Path(sys.argv[1]))
