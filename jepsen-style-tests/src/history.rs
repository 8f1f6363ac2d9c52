//! The history: every client operation as an invoke and its completion (ok, fail or
//! info), plus nemesis and harness events, timed by the harness's one monotonic clock.
//!
//! Owns the record format (one JSON object per line, `history.jsonl`) and the pairing of
//! invokes with completions. It never interprets outcomes: that is the checkers' job.
//!
//! Jepsen semantics: `ok` happened, `fail` certainly did not happen, `info` may or may
//! not have happened (and may still happen later). A process has at most one operation
//! outstanding; after an `info` the workload continues under a fresh process id.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Process id of the nemesis in the history.
pub const NEMESIS: i64 = -1;
/// Process id of the harness itself (set-up, final reads, replica views).
pub const HARNESS: i64 = -2;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Type {
    #[default]
    Invoke,
    Ok,
    Fail,
    Info,
}

/// What an operation does.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum F {
    #[default]
    Acquire,
    Release,
    Renew,
    /// A linearizable read of one resource (`GET /v1/resources/{name}`).
    Read,
    /// A lease holder's provider report (`POST /v1/leases/{id}/report`; the body in
    /// the invoke's `value`, the answer in the completion's).
    Report,
    /// A write to the fencing demonstration's downstream register.
    FencedWrite,
    /// The harness created the resources; `value` holds their specs and checker bounds.
    Setup,
    /// Nemesis: a fault was applied (`value.fault`, `value.detail`).
    Start,
    /// Nemesis: that fault was healed.
    Stop,
    /// Nemesis: every fault healed at the end of the run (liveness is measured from here).
    HealAll,
    /// One replica's view after quiescence (`node`, `value.applied_index`, `value.view`).
    NodeView,
    /// A harness message worth seeing in the history (e.g. a failed membership change).
    Note,
}

/// One history record. Flat, with optional fields, so hand-made histories stay short.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub index: u64,
    /// Milliseconds since the harness started, from its one monotonic clock.
    pub time_ms: f64,
    pub process: i64,
    #[serde(rename = "type")]
    pub kind: Type,
    pub f: F,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing_token: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<u64>,
    /// The node that gave the final answer (after following redirects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl Op {
    pub fn new(process: i64, kind: Type, f: F) -> Op {
        Op {
            process,
            kind,
            f,
            ..Op::default()
        }
    }

    /// The completion of this invoke, carrying over what identifies the operation.
    pub fn complete(&self, kind: Type) -> Op {
        Op {
            process: self.process,
            kind,
            f: self.f,
            workload: self.workload.clone(),
            resource: self.resource.clone(),
            request_id: self.request_id.clone(),
            lease_id: self.lease_id.clone(),
            ..Op::default()
        }
    }

    pub fn is_client(&self) -> bool {
        self.process >= 0
    }
}

/// Appends records in time order: the index and the time are taken under one lock, so
/// file order, index order and time order agree.
pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    ops: Vec<Op>,
    out: Option<BufWriter<File>>,
    write_error: Option<String>,
}

impl Recorder {
    /// A recorder that also streams to `path` (JSONL) when given.
    pub fn new(path: Option<&Path>) -> anyhow::Result<Arc<Recorder>> {
        let out = match path {
            Some(p) => Some(BufWriter::new(
                File::create(p).with_context(|| format!("creating {}", p.display()))?,
            )),
            None => None,
        };
        Ok(Arc::new(Recorder {
            start: Instant::now(),
            inner: Mutex::new(Inner {
                ops: Vec::new(),
                out,
                write_error: None,
            }),
        }))
    }

    /// Milliseconds since the harness started.
    pub fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// Stamps `op` with the next index and the current time, stores and streams it.
    pub fn record(&self, mut op: Op) -> Op {
        let mut inner = self.inner.lock();
        op.index = inner.ops.len() as u64;
        op.time_ms = self.now_ms();
        if let Some(out) = inner.out.as_mut() {
            let line = serde_json::to_string(&op).unwrap_or_default();
            if let Err(e) = writeln!(out, "{line}") {
                inner.write_error.get_or_insert(e.to_string());
            }
        }
        inner.ops.push(op.clone());
        op
    }

    pub fn ops(&self) -> Vec<Op> {
        self.inner.lock().ops.clone()
    }

    pub fn flush(&self) -> anyhow::Result<()> {
        let mut inner = self.inner.lock();
        if let Some(e) = inner.write_error.take() {
            anyhow::bail!("writing the history: {e}");
        }
        if let Some(out) = inner.out.as_mut() {
            out.flush().context("flushing the history")?;
        }
        Ok(())
    }
}

/// Reads a `history.jsonl`.
pub fn load(path: &Path) -> anyhow::Result<Vec<Op>> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut ops = Vec::new();
    for (n, line) in BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let op: Op = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: bad record", path.display(), n + 1))?;
        ops.push(op);
    }
    Ok(ops)
}

/// An invoke and its completion. `done` is `None` when the run ended first: such an
/// operation counts as `info` (it may or may not have happened).
#[derive(Clone, Copy, Debug)]
pub struct Pair<'a> {
    pub invoke: &'a Op,
    pub done: Option<&'a Op>,
}

impl<'a> Pair<'a> {
    /// The completion type, `info` when there is none.
    pub fn kind(&self) -> Type {
        self.done.map_or(Type::Info, |d| d.kind)
    }

    pub fn is_ok(&self) -> bool {
        self.kind() == Type::Ok
    }

    /// When it completed (`f64::INFINITY` if never).
    pub fn done_ms(&self) -> f64 {
        self.done.map_or(f64::INFINITY, |d| d.time_ms)
    }

    pub fn latency_ms(&self) -> Option<f64> {
        self.done.map(|d| d.time_ms - self.invoke.time_ms)
    }

    /// A field of the completion, falling back to the invoke.
    pub fn lease_id(&self) -> Option<&'a str> {
        self.done
            .and_then(|d| d.lease_id.as_deref())
            .or(self.invoke.lease_id.as_deref())
    }
}

/// Pairs each invoke with the next record of the same process. Records without an
/// invoke (nemesis events, set-up, replica views) stand alone.
pub fn pairs(history: &[Op]) -> Vec<Pair<'_>> {
    let mut open: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let mut out: Vec<Pair<'_>> = Vec::new();
    for op in history {
        if op.kind == Type::Invoke {
            // A second invoke without completion leaves the first one unanswered.
            open.insert(op.process, out.len());
            out.push(Pair {
                invoke: op,
                done: None,
            });
        } else if let Some(i) = open.remove(&op.process) {
            if let Some(p) = out.get_mut(i) {
                p.done = Some(op);
            }
        }
    }
    out
}

/// Fault periods `(start_ms, stop_ms, label)` from the nemesis records. A fault without a
/// stop lasts until the final heal (or the end of the history).
pub fn fault_periods(history: &[Op]) -> Vec<(f64, f64, String)> {
    let end = history.last().map_or(0.0, |o| o.time_ms);
    let heal = history
        .iter()
        .find(|o| o.f == F::HealAll)
        .map_or(end, |o| o.time_ms);
    let mut open: Vec<(f64, String, u64)> = Vec::new();
    let mut out = Vec::new();
    for op in history.iter().filter(|o| o.process == NEMESIS) {
        let id = op
            .value
            .as_ref()
            .and_then(|v| v.get("id"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let label = op
            .value
            .as_ref()
            .and_then(|v| v.get("fault"))
            .and_then(Value::as_str)
            .unwrap_or("fault")
            .to_owned();
        match op.f {
            F::Start => open.push((op.time_ms, label, id)),
            F::Stop => {
                if let Some(pos) = open.iter().position(|(_, _, i)| *i == id) {
                    let (s, l, _) = open.remove(pos);
                    out.push((s, op.time_ms, l));
                }
            }
            _ => {}
        }
    }
    for (s, l, _) in open {
        out.push((s, heal.max(s), l));
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The time of the final heal, if the run got that far.
pub fn heal_all_ms(history: &[Op]) -> Option<f64> {
    history
        .iter()
        .find(|o| o.f == F::HealAll)
        .map(|o| o.time_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_pair_by_process() {
        let dir = std::env::temp_dir().join(format!("rqj-hist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.jsonl");
        let rec = Recorder::new(Some(&path)).unwrap();
        let a = rec.record(Op {
            resource: Some("r".into()),
            ..Op::new(1, Type::Invoke, F::Acquire)
        });
        rec.record(Op::new(2, Type::Invoke, F::Acquire));
        let mut ok = a.complete(Type::Ok);
        ok.lease_id = Some("1-00".into());
        rec.record(ok);
        rec.flush().unwrap();
        let h = load(&path).unwrap();
        assert_eq!(h.len(), 3);
        assert!(h
            .windows(2)
            .all(|w| w[0].time_ms <= w[1].time_ms && w[0].index < w[1].index));
        let p = pairs(&h);
        assert_eq!(p.len(), 2);
        assert!(p[0].is_ok());
        assert_eq!(p[0].lease_id(), Some("1-00"));
        assert_eq!(p[1].kind(), Type::Info, "no completion counts as info");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
