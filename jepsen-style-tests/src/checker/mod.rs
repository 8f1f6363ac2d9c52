//! History checkers. Each one is a pure function of the history (and a `Config` read
//! from the history's set-up record), so `jepsen check history.jsonl` re-runs them.
//!
//! Soundness rule for all of them: only `ok` is evidence that something happened and
//! only `fail` is evidence that it did not; `info` (and an invoke with no completion)
//! may go either way, so a checker may use it only where either reading is harmless.
//!
//! Timing facts the bounds rely on (DESIGN.md §3, `node/server/src/admission.rs`):
//! cluster time never runs faster than the harness's monotonic clock (same machine, one
//! `CLOCK_MONOTONIC`; a new leader restarts from the log's last stamp), and a grant's
//! stamp is taken when its batch opens, which can precede the acquire's arrival by at
//! most one in-flight write (`COMMIT_TIMEOUT` = 10 s) plus the longest process pause.
//! That slack is `Config::stamp_skew_ms`.

pub mod convergence;
pub mod dry_run;
pub mod durable;
pub mod fencing;
pub mod idempotency;
pub mod liveness;
pub mod overlap;
pub mod rate;
pub mod reports;
pub mod storage;

use std::collections::{BTreeMap, BTreeSet};

use ratequeue_api as api;
use serde::Serialize;
use serde_json::Value;

use crate::history::{pairs, Op, F, HARNESS};

/// The server's bound on one replicated write (`admission::COMMIT_TIMEOUT`).
pub const COMMIT_TIMEOUT_MS: f64 = 10_000.0;

/// Bounds the checkers need, recorded by the harness in the history's `setup` record.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub resources: BTreeMap<String, api::ResourceSpec>,
    /// How long before an acquire's invoke its grant may have been stamped.
    pub stamp_skew_ms: f64,
    /// How soon after the final heal an acquire must succeed.
    pub liveness_bound_ms: f64,
    /// The workload whose grants are never released and must all survive.
    pub durable_workload: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            resources: BTreeMap::new(),
            stamp_skew_ms: COMMIT_TIMEOUT_MS,
            liveness_bound_ms: 15_000.0,
            durable_workload: "durable".to_owned(),
        }
    }
}

impl Config {
    /// Whether `resource` was created in dry-run mode.
    pub fn is_dry_run(&self, resource: &str) -> bool {
        self.resources
            .get(resource)
            .is_some_and(|s| s.mode == Some(api::Mode::DryRun))
    }

    /// The configuration the harness recorded; defaults where it is missing.
    pub fn from_history(history: &[Op]) -> Config {
        let mut c = Config::default();
        let Some(v) = history
            .iter()
            .find(|o| o.f == F::Setup)
            .and_then(|o| o.value.as_ref())
        else {
            return c;
        };
        if let Some(r) = v.get("resources") {
            if let Ok(r) = serde_json::from_value(r.clone()) {
                c.resources = r;
            }
        }
        if let Some(x) = v.get("stamp_skew_ms").and_then(Value::as_f64) {
            c.stamp_skew_ms = x;
        }
        if let Some(x) = v.get("liveness_bound_ms").and_then(Value::as_f64) {
            c.liveness_bound_ms = x;
        }
        c
    }

    /// What the harness records in the `setup` record.
    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "resources": self.resources,
            "stamp_skew_ms": self.stamp_skew_ms,
            "liveness_bound_ms": self.liveness_bound_ms,
        })
    }
}

/// One checker's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub checker: String,
    pub valid: bool,
    pub summary: String,
    pub details: Value,
}

impl Verdict {
    fn new(checker: &str, valid: bool, summary: String, details: Value) -> Verdict {
        Verdict {
            checker: checker.to_owned(),
            valid,
            summary,
            details,
        }
    }
}

/// Runs every checker.
pub fn check_all(history: &[Op], cfg: &Config) -> Vec<Verdict> {
    vec![
        overlap::check(history, cfg),
        fencing::check(history, cfg),
        rate::check(history, cfg),
        durable::check(history, cfg),
        idempotency::check(history, cfg),
        convergence::check(history, cfg),
        liveness::check(history, cfg),
        storage::check(history),
        dry_run::check(history, cfg),
        reports::check(history, cfg),
    ]
}

/// Everything the history proves about one granted lease.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub lease_id: String,
    pub resource: String,
    pub token: u64,
    pub ttl_ms: u64,
    pub load: u64,
    pub workload: Option<String>,
    /// The earliest invoke that could have produced it: the first attempt of any
    /// `request_id` it was returned for (a retry may return a lease granted earlier).
    pub first_invoke_ms: f64,
    /// The first `ok` that returned it.
    pub first_ok_ms: f64,
    pub request_ids: BTreeSet<String>,
    /// On a dry-run resource: the `shadow` of the first `ok` that returned it.
    pub shadow: Option<api::Shadow>,
}

/// Every lease some client acquire returned `ok`, by lease id.
pub fn grants(history: &[Op]) -> BTreeMap<String, Grant> {
    let ps = pairs(history);
    let mut first_attempt: BTreeMap<&str, f64> = BTreeMap::new();
    for p in ps
        .iter()
        .filter(|p| p.invoke.f == F::Acquire && p.invoke.is_client())
    {
        if let Some(rid) = p.invoke.request_id.as_deref() {
            let t = first_attempt.entry(rid).or_insert(p.invoke.time_ms);
            *t = t.min(p.invoke.time_ms);
        }
    }
    let mut out: BTreeMap<String, Grant> = BTreeMap::new();
    for p in ps
        .iter()
        .filter(|p| p.invoke.f == F::Acquire && p.invoke.is_client() && p.is_ok())
    {
        let (Some(done), Some(lease_id)) = (p.done, p.lease_id()) else {
            continue;
        };
        let rid = p.invoke.request_id.as_deref();
        let invoke = rid
            .and_then(|r| first_attempt.get(r).copied())
            .unwrap_or(p.invoke.time_ms);
        let g = out.entry(lease_id.to_owned()).or_insert_with(|| Grant {
            lease_id: lease_id.to_owned(),
            resource: done
                .resource
                .clone()
                .or(p.invoke.resource.clone())
                .unwrap_or_default(),
            token: done.fencing_token.unwrap_or(0),
            ttl_ms: done.ttl_ms.or(p.invoke.ttl_ms).unwrap_or(0),
            load: done.load.or(p.invoke.load).unwrap_or(1),
            workload: p.invoke.workload.clone(),
            first_invoke_ms: invoke,
            first_ok_ms: done.time_ms,
            request_ids: BTreeSet::new(),
            shadow: shadow_of(done),
        });
        g.first_invoke_ms = g.first_invoke_ms.min(invoke);
        g.first_ok_ms = g.first_ok_ms.min(done.time_ms);
        if let Some(r) = rid {
            g.request_ids.insert(r.to_owned());
        }
    }
    out
}

/// The `shadow` an acquire's `ok` recorded (dry-run resources).
pub fn shadow_of(done: &Op) -> Option<api::Shadow> {
    let v = done.value.as_ref()?.get("shadow")?;
    serde_json::from_value(v.clone()).ok()
}

/// A harness-process record (final reads, replica views).
pub(crate) fn harness_ops(history: &[Op], f: F) -> impl Iterator<Item = &Op> {
    history
        .iter()
        .filter(move |o| o.process == HARNESS && o.f == f)
}

/// Keeps at most this many examples of a violation in a verdict.
pub(crate) const EXAMPLES_MAX: usize = 10;

#[cfg(test)]
pub(crate) mod testing {
    //! Small builders for hand-made histories.
    use crate::history::{Op, Type, F};

    pub struct H {
        pub ops: Vec<Op>,
    }

    impl H {
        pub fn new() -> H {
            H { ops: Vec::new() }
        }

        fn push(&mut self, t: f64, mut op: Op) -> &mut Op {
            op.index = self.ops.len() as u64;
            op.time_ms = t;
            self.ops.push(op);
            self.ops.last_mut().unwrap()
        }

        pub fn setup(&mut self, cfg: &super::Config) {
            let v = cfg.to_value();
            self.push(0.0, Op::new(crate::history::HARNESS, Type::Info, F::Setup))
                .value = Some(v);
        }

        /// An acquire invoked at `t0` that completed at `t1` with `kind`.
        #[allow(clippy::too_many_arguments)]
        pub fn acquire(
            &mut self,
            p: i64,
            t0: f64,
            t1: f64,
            kind: Type,
            resource: &str,
            rid: &str,
            lease: Option<(&str, u64)>,
            ttl_ms: u64,
        ) {
            let mut inv = Op::new(p, Type::Invoke, F::Acquire);
            inv.resource = Some(resource.into());
            inv.request_id = Some(rid.into());
            inv.ttl_ms = Some(ttl_ms);
            inv.workload = Some(workload_of(resource).into());
            let done = {
                let mut d = inv.complete(kind);
                if let Some((id, tok)) = lease {
                    d.lease_id = Some(id.into());
                    d.fencing_token = Some(tok);
                    d.ttl_ms = Some(ttl_ms);
                }
                d
            };
            self.push(t0, inv);
            self.push(t1, done);
        }

        pub fn release(&mut self, p: i64, t0: f64, t1: f64, kind: Type, lease: &str) {
            let mut inv = Op::new(p, Type::Invoke, F::Release);
            inv.lease_id = Some(lease.into());
            let done = inv.complete(kind);
            self.push(t0, inv);
            self.push(t1, done);
        }

        pub fn op(&mut self, t: f64, op: Op) {
            self.push(t, op);
        }

        /// Sorts by time (as the recorder would have written them) and re-indexes.
        pub fn done(&mut self) -> Vec<Op> {
            let mut ops = self.ops.clone();
            ops.sort_by(|a, b| a.time_ms.total_cmp(&b.time_ms));
            for (i, o) in ops.iter_mut().enumerate() {
                o.index = i as u64;
            }
            ops
        }
    }

    fn workload_of(resource: &str) -> &str {
        resource.split('-').next().unwrap_or(resource)
    }
}
