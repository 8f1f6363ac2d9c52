//! The run's report: `results.json` (verdicts, counts, availability, recovery times,
//! the fencing demonstration), `report.txt` (the one-screen summary, also printed),
//! `plot.svg` and `report.html` (latency over time coloured by outcome and holders over
//! time against the limit, fault periods shaded). The SVG is written by hand.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::checker::liveness::recovery_ms;
use crate::checker::overlap::certain_holds;
use crate::checker::{grants, Config, Verdict};
use crate::history::{fault_periods, heal_all_ms, pairs, Op, Pair, Type, F};

pub struct Meta {
    pub seed: u64,
    pub nodes: u64,
    pub duration_s: f64,
    pub nemesis: String,
    pub workloads: Vec<String>,
    pub command: String,
}

/// Counts of completions per operation.
fn counts(ps: &[Pair<'_>]) -> BTreeMap<String, BTreeMap<&'static str, u64>> {
    let mut out: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    for p in ps.iter().filter(|p| p.invoke.is_client()) {
        let k = match p.kind() {
            Type::Ok => "ok",
            Type::Fail => "fail",
            _ => "info",
        };
        let f = serde_json::to_value(p.invoke.f)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *out.entry(f).or_default().entry(k).or_default() += 1;
    }
    out
}

/// Acquires invoked inside `[a, b)`: (ok, total).
fn acquire_success(ps: &[Pair<'_>], a: f64, b: f64) -> (u64, u64) {
    let mut ok = 0;
    let mut n = 0;
    for p in ps
        .iter()
        .filter(|p| p.invoke.f == F::Acquire && p.invoke.is_client())
    {
        if p.invoke.time_ms >= a && p.invoke.time_ms < b {
            n += 1;
            if p.is_ok() {
                ok += 1;
            }
        }
    }
    (ok, n)
}

fn ratio(ok: u64, n: u64) -> Value {
    if n == 0 {
        Value::Null
    } else {
        json!((ok as f64 / n as f64 * 1000.0).round() / 1000.0)
    }
}

/// The fencing demonstration: client-side holds (from the acquire's ok to the write's
/// invoke) that overlapped in real time, and what the fenced register made of them.
pub fn fencing_demo(ops: &[Op]) -> Value {
    let ps = pairs(ops);
    let gs = grants(ops);
    let mut holds: Vec<(f64, f64, u64, bool)> = Vec::new();
    for p in ps.iter().filter(|p| p.invoke.f == F::FencedWrite) {
        let Some(l) = p.invoke.lease_id.as_deref() else {
            continue;
        };
        if let Some(g) = gs.get(l) {
            holds.push((g.first_ok_ms, p.invoke.time_ms, g.token, p.is_ok()));
        }
    }
    let mut overlaps = 0u64;
    let mut overlapping_stale_rejected = 0u64;
    for (i, a) in holds.iter().enumerate() {
        for b in holds.iter().skip(i + 1) {
            if a.0 < b.1 && b.0 < a.1 {
                overlaps += 1;
                let stale = if a.2 < b.2 { a } else { b };
                if !stale.3 {
                    overlapping_stale_rejected += 1;
                }
            }
        }
    }
    let rejected = holds.iter().filter(|h| !h.3).count();
    json!({
        "writes": holds.len(),
        "rejected_stale_writes": rejected,
        "client_side_exclusion_violations": overlaps,
        "violations_whose_stale_write_was_rejected": overlapping_stale_rejected,
        "note": "a client-side hold runs from the acquire's ok to the write; a holder that stalls past its TTL overlaps the next holder. Not a server failure: the fencing token lets the downstream register reject the stale write",
    })
}

/// Acquires answered `ok` whose lease the holder's very first release found already
/// released: the cluster handed out a lease it had ended (or ended it right after).
pub fn dead_grants(ops: &[Op]) -> Value {
    let ps = pairs(ops);
    let gs = grants(ops);
    let mut first_release: BTreeMap<&str, &Pair<'_>> = BTreeMap::new();
    for p in ps
        .iter()
        .filter(|p| p.invoke.f == F::Release && p.invoke.is_client())
    {
        if let Some(l) = p.invoke.lease_id.as_deref() {
            first_release.entry(l).or_insert(p);
        }
    }
    let mut out = Vec::new();
    for (l, p) in first_release {
        let already = p.is_ok()
            && p.done
                .and_then(|d| d.value.as_ref())
                .and_then(Value::as_str)
                == Some("already_released");
        if let (true, Some(g)) = (already, gs.get(l)) {
            out.push(
                json!({"lease_id": l, "request_ids": g.request_ids, "acked_ms": g.first_ok_ms,
                            "released_found_ms": p.done_ms()}),
            );
        }
    }
    json!(out)
}

pub fn write(
    out: &Path,
    meta: &Meta,
    ops: &[Op],
    verdicts: &[Verdict],
    cfg: &Config,
    extra: Value,
) -> anyhow::Result<String> {
    let ps = pairs(ops);
    let faults = fault_periods(ops);
    let end = ops.last().map_or(0.0, |o| o.time_ms);
    let heal = heal_all_ms(ops);
    let mut fault_rows = Vec::new();
    let mut in_fault = (0u64, 0u64);
    for (s, e, label) in &faults {
        let (ok, n) = acquire_success(&ps, *s, *e);
        in_fault.0 += ok;
        in_fault.1 += n;
        let detail = ops
            .iter()
            .find(|o| o.f == F::Start && (o.time_ms - s).abs() < 1e-9)
            .and_then(|o| o.value.as_ref()?.get("detail").cloned());
        fault_rows.push(json!({
            "fault": label, "start_s": s / 1000.0, "stop_s": e / 1000.0,
            "acquires": n, "acquire_ok_ratio": ratio(ok, n),
            "recovery_ms_after_stop": recovery_ms(ops, *e).map(|r| r.round()),
            "detail": detail,
        }));
    }
    let (all_ok, all_n) = acquire_success(&ps, 0.0, heal.unwrap_or(end));
    let outside = (
        all_ok.saturating_sub(in_fault.0),
        all_n.saturating_sub(in_fault.1),
    );
    let valid = verdicts.iter().all(|v| v.valid);
    let results = json!({
        "valid": valid,
        "seed": meta.seed,
        "nodes": meta.nodes,
        "duration_s": meta.duration_s,
        "nemesis": meta.nemesis,
        "workloads": meta.workloads,
        "reproduce": meta.command,
        "verdicts": verdicts,
        "counts": counts(&ps),
        "history_records": ops.len(),
        "availability": {
            "acquire_ok_ratio_during_faults": ratio(in_fault.0, in_fault.1),
            "acquire_ok_ratio_outside_faults": ratio(outside.0, outside.1),
            "acquires_during_faults": in_fault.1,
            "acquires_outside_faults": outside.1,
        },
        "recovery_ms_after_final_heal": heal.and_then(|h| recovery_ms(ops, h)).map(f64::round),
        "faults": fault_rows,
        "fencing_demo": fencing_demo(ops),
        "dead_grants": dead_grants(ops),
        "environment": extra,
    });
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;

    let mut s = String::new();
    let _ = writeln!(
        s,
        "==== jepsen: {} ====",
        if valid { "VALID" } else { "INVALID" }
    );
    let _ = writeln!(
        s,
        "seed {}  nodes {}  duration {:.0}s  nemesis {}  workloads {}",
        meta.seed,
        meta.nodes,
        meta.duration_s,
        meta.nemesis,
        meta.workloads.join(",")
    );
    let _ = writeln!(s, "reproduce: {}", meta.command);
    for (f, c) in counts(&ps) {
        let _ = writeln!(
            s,
            "  {f:<13} ok {:>6}  fail {:>6}  info {:>5}",
            c.get("ok").unwrap_or(&0),
            c.get("fail").unwrap_or(&0),
            c.get("info").unwrap_or(&0)
        );
    }
    let _ = writeln!(
        s,
        "faults: {}  acquire ok ratio during faults {}  outside {}  recovery after final heal {} ms",
        faults.len(),
        ratio(in_fault.0, in_fault.1),
        ratio(outside.0, outside.1),
        results["recovery_ms_after_final_heal"]
    );
    let demo = &results["fencing_demo"];
    let _ = writeln!(
        s,
        "fencing demo: {} client-side exclusion violations, {} stale writes rejected by the fenced register",
        demo["client_side_exclusion_violations"], demo["rejected_stale_writes"]
    );
    if let Some(why) = results["environment"]["partitions_skipped"].as_str() {
        let _ = writeln!(s, "!!! partitions were SKIPPED: {why}");
    }
    if let Some(d) = results["dead_grants"].as_array().filter(|d| !d.is_empty()) {
        let _ = writeln!(
            s,
            "!!! {} acknowledged leases were already released at their holder's first release",
            d.len()
        );
    }
    if results["environment"]["node_panics"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        let _ = writeln!(
            s,
            "!!! node panics: {}",
            results["environment"]["node_panics"]
        );
    }
    for v in verdicts {
        let _ = writeln!(
            s,
            "  [{}] {:<18} {}",
            if v.valid { " ok " } else { "FAIL" },
            v.checker,
            v.summary
        );
    }
    let _ = writeln!(s, "report: {}", out.join("report.html").display());
    std::fs::write(out.join("report.txt"), &s)?;

    let svg = plot(ops, &ps, cfg, &faults, end);
    std::fs::write(out.join("plot.svg"), &svg)?;
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>jepsen seed {}</title>\
         <style>body{{font-family:sans-serif;margin:20px}} pre{{background:#f6f6f6;padding:10px}}</style>\
         </head><body><h1>ratequeue jepsen run, seed {}</h1><pre>{}</pre>{}\
         <h2>results.json</h2><pre>{}</pre></body></html>",
        meta.seed,
        meta.seed,
        escape(&s),
        svg,
        escape(&serde_json::to_string_pretty(&results)?)
    );
    std::fs::write(out.join("report.html"), html)?;
    Ok(s)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const W: f64 = 1200.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const LAT_H: f64 = 280.0;
const HOLD_H: f64 = 60.0;
const GAP: f64 = 30.0;
const POINTS_MAX: usize = 40_000;

/// Latency over time (log scale, coloured by outcome) and certain holders over time for
/// every resource with a concurrency limit, with the fault periods shaded.
fn plot(
    ops: &[Op],
    ps: &[Pair<'_>],
    cfg: &Config,
    faults: &[(f64, f64, String)],
    end: f64,
) -> String {
    // Resources whose limit is a real bound (not the durable workload's huge one).
    let holds: BTreeMap<String, _> = certain_holds(ops, cfg)
        .into_iter()
        .filter(|(r, _)| {
            cfg.resources
                .get(r)
                .and_then(|s| s.concurrency)
                .is_some_and(|c| c <= 100)
        })
        .collect();
    let height = 40.0 + LAT_H + GAP + holds.len() as f64 * (HOLD_H + GAP) + 30.0;
    let span = end.max(1.0);
    let x = |t: f64| LEFT + (t / span) * (W - LEFT - RIGHT);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let _ = write!(
        s,
        "<rect width=\"{W}\" height=\"{height}\" fill=\"white\"/>"
    );
    // Fault shading across every panel, labelled at the top.
    let palette = [
        "#f4cccc", "#d9d2e9", "#cfe2f3", "#fff2cc", "#d9ead3", "#fce5cd",
    ];
    let mut kinds: Vec<&str> = faults.iter().map(|f| f.2.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    for (a, b, label) in faults {
        let i = kinds.iter().position(|k| *k == label.as_str()).unwrap_or(0);
        let colour = palette[i % palette.len()];
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"30\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\" opacity=\"0.7\"><title>{label}</title></rect>\
             <text x=\"{:.1}\" y=\"26\" font-size=\"9\">{label}</text>",
            x(*a),
            (x(*b) - x(*a)).max(1.0),
            height - 60.0,
            x(*a)
        );
    }
    if let Some(h) = heal_all_ms(ops) {
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"30\" y2=\"{1:.1}\" stroke=\"black\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{0:.1}\" y=\"14\">final heal</text>",
            x(h),
            height - 30.0
        );
    }
    // Latency panel.
    let top = 40.0;
    let (lo, hi) = (0.0_f64, 5.0_f64); // log10 ms: 1 ms .. 100 s
    let y =
        |ms: f64| top + LAT_H - ((ms.max(1.0).log10() - lo) / (hi - lo)).clamp(0.0, 1.0) * LAT_H;
    let _ = write!(
        s,
        "<text x=\"{LEFT}\" y=\"{:.1}\" font-weight=\"bold\">latency (ms, log) of client operations: ok green, fail red, info orange</text>",
        top - 2.0 + LAT_H + 14.0
    );
    for e in 0..=5 {
        let v = 10f64.powi(e);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{x2:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/><text x=\"4\" y=\"{ty:.1}\">{v}</text>",
            x2 = W - RIGHT,
            yy = y(v),
            ty = y(v) + 4.0,
        );
    }
    let client: Vec<&Pair<'_>> = ps.iter().filter(|p| p.invoke.is_client()).collect();
    let step = (client.len() / POINTS_MAX).max(1);
    for p in client.iter().step_by(step) {
        let lat = p.latency_ms().unwrap_or(end - p.invoke.time_ms);
        let colour = match p.kind() {
            Type::Ok => "#2a9d2a",
            Type::Fail => "#d62728",
            _ => "#ff9900",
        };
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.4\" fill=\"{colour}\"/>",
            x(p.invoke.time_ms),
            y(lat)
        );
    }
    // Holders panels.
    let mut top = top + LAT_H + GAP;
    for (resource, hs) in &holds {
        let limit = cfg
            .resources
            .get(resource)
            .and_then(|r| r.concurrency)
            .unwrap_or(1) as f64;
        let ymax = (limit + 1.0).max(2.0);
        let yh = |n: f64| top + HOLD_H - (n / ymax) * HOLD_H;
        let mut ev: Vec<(f64, i32)> = hs
            .iter()
            .flat_map(|h| [(h.start_ms, 1), (h.end_ms.min(end), -1)])
            .collect();
        ev.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut path = format!("M{:.1},{:.1}", x(0.0), yh(0.0));
        let mut n = 0i32;
        for (t, d) in ev {
            let _ = write!(path, " L{:.1},{:.1}", x(t), yh(f64::from(n)));
            n += d;
            let _ = write!(path, " L{:.1},{:.1}", x(t), yh(f64::from(n)));
        }
        let _ = write!(path, " L{:.1},{:.1}", x(end), yh(f64::from(n)));
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{x2:.1}\" y1=\"{yl:.1}\" y2=\"{yl:.1}\" stroke=\"#d62728\" stroke-dasharray=\"5 3\"/>\
             <path d=\"{path}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1\"/>\
             <text x=\"4\" y=\"{ym:.1}\">{resource}</text>\
             <text x=\"{LEFT}\" y=\"{yt:.1}\">certain holders of {resource} (blue) vs concurrency {limit} (red)</text>",
            x2 = W - RIGHT,
            yl = yh(limit),
            ym = top + HOLD_H / 2.0,
            yt = top + HOLD_H + 12.0
        );
        top += HOLD_H + GAP;
    }
    // Time axis.
    let ticks = 10;
    for i in 0..=ticks {
        let t = span * f64::from(i) / f64::from(ticks);
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\">{:.0}s</text>",
            x(t) - 8.0,
            height - 8.0,
            t / 1000.0
        );
    }
    s.push_str("</svg>");
    s
}

/// A markdown table of the runs under `dir` (one `results.json` per subdirectory).
pub fn summarize(dir: &Path) -> anyhow::Result<String> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path().join("results.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            rows.push(serde_json::from_str::<Value>(&text)?);
        }
    }
    rows.sort_by_key(|r| r["seed"].as_u64().unwrap_or(0));
    let mut s = String::from(
        "| seed | nodes | s | nemesis | faults | acquires ok/fail/info | ok ratio in faults / outside | \
         max recovery after a fault (ms) | after final heal (ms) | dead grants | failed checkers |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let (mut valid, mut ok_total, mut faults_total) = (0u64, 0u64, 0usize);
    for r in &rows {
        let acq = &r["counts"]["acquire"];
        let max_recovery = r["faults"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|x| x["recovery_ms_after_stop"].as_f64())
                    .fold(0.0, f64::max)
            })
            .unwrap_or(0.0);
        let failed: Vec<&str> = r["verdicts"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter(|x| x["valid"] == false)
                    .filter_map(|x| x["checker"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        valid += u64::from(failed.is_empty());
        ok_total += acq["ok"].as_u64().unwrap_or(0);
        faults_total += r["faults"].as_array().map_or(0, Vec::len);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {}/{}/{} | {} / {} | {:.0} | {} | {} | {} |",
            r["seed"],
            r["nodes"],
            r["duration_s"],
            r["nemesis"].as_str().unwrap_or(""),
            r["faults"].as_array().map_or(0, Vec::len),
            acq["ok"].as_u64().unwrap_or(0),
            acq["fail"].as_u64().unwrap_or(0),
            acq["info"].as_u64().unwrap_or(0),
            r["availability"]["acquire_ok_ratio_during_faults"],
            r["availability"]["acquire_ok_ratio_outside_faults"],
            max_recovery,
            r["recovery_ms_after_final_heal"],
            r["dead_grants"].as_array().map_or(0, Vec::len),
            if failed.is_empty() {
                "none".to_owned()
            } else {
                failed.join(", ")
            },
        );
    }
    let _ = writeln!(
        s,
        "\n{} runs, {valid} valid; {faults_total} faults; {ok_total} acquires ok.\n",
        rows.len()
    );
    s.push_str(&by_fault(&rows));
    Ok(s)
}

/// Availability and recovery per kind of fault, over every fault of every run: the
/// share of acquires invoked during the fault that succeeded (weighted by acquires),
/// and the time from the fault's end to the next successful acquire.
fn by_fault(rows: &[Value]) -> String {
    let mut kinds: BTreeMap<String, (u64, f64, f64, Vec<f64>)> = BTreeMap::new();
    for f in rows.iter().filter_map(|r| r["faults"].as_array()).flatten() {
        let Some(kind) = f["fault"].as_str() else {
            continue;
        };
        let k = kinds.entry(kind.to_owned()).or_default();
        let acquires = f["acquires"].as_f64().unwrap_or(0.0);
        k.0 += 1;
        k.1 += acquires;
        k.2 += acquires * f["acquire_ok_ratio"].as_f64().unwrap_or(0.0);
        if let Some(ms) = f["recovery_ms_after_stop"].as_f64() {
            k.3.push(ms);
        }
    }
    let mut s = String::from(
        "| fault | times | acquires during | ok ratio during | recovery after it, median / max (ms) |\n\
         |---|---|---|---|---|\n",
    );
    for (kind, (times, acquires, ok, mut recovery)) in kinds {
        recovery.sort_by(f64::total_cmp);
        let median = recovery.get(recovery.len() / 2).copied().unwrap_or(0.0);
        let max = recovery.last().copied().unwrap_or(0.0);
        let ratio = if acquires > 0.0 { ok / acquires } else { 0.0 };
        let _ = writeln!(
            s,
            "| {kind} | {times} | {acquires:.0} | {ratio:.2} | {median:.0} / {max:.0} |"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_fault_weights_availability_by_acquires_and_takes_recovery_extremes() {
        let run = |faults: Value| json!({ "faults": faults });
        let rows = [
            run(json!([
                {"fault": "kill-leader", "acquires": 100, "acquire_ok_ratio": 0.5,
                 "recovery_ms_after_stop": 200.0},
                {"fault": "pause-random", "acquires": 10, "acquire_ok_ratio": 1.0,
                 "recovery_ms_after_stop": 5.0},
            ])),
            run(json!([
                {"fault": "kill-leader", "acquires": 300, "acquire_ok_ratio": 0.0,
                 "recovery_ms_after_stop": 900.0},
                {"fault": "kill-leader", "acquires": 0, "acquire_ok_ratio": 0.0,
                 "recovery_ms_after_stop": 10.0},
            ])),
        ];
        let table = by_fault(&rows);
        assert!(
            table.contains("| kill-leader | 3 | 400 | 0.12 | 200 / 900 |"),
            "{table}"
        );
        assert!(
            table.contains("| pause-random | 1 | 10 | 1.00 | 5 / 5 |"),
            "{table}"
        );
    }
}
