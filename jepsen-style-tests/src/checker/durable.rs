//! Checker 4: every acknowledged durable grant is present at the end.
//!
//! The durable workload acquires leases with a long TTL and never releases them. After
//! the final heal the harness reads, through the leader, (a) each acknowledged lease by
//! renewing it (a replicated, linearizable operation: `200` = live, `410`/`404` = gone)
//! and (b) the resource's `held` count (`GET`, ReadIndex). Then:
//!
//! - every lease some client got `ok` for must renew `ok`;
//! - `held` ≥ acknowledged leases, and `held` ≤ acknowledged + request ids whose every
//!   attempt ended `info` (those may or may not exist; a `fail` certainly does not).
//!
//! A final read that could not be made leaves the verdict unknown, reported as invalid.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::{grants, harness_ops, Config, Verdict, EXAMPLES_MAX};
use crate::history::{pairs, Op, Type, F, HARNESS};

pub fn check(history: &[Op], cfg: &Config) -> Verdict {
    let gs = grants(history);
    let acked: BTreeMap<&str, &super::Grant> = gs
        .values()
        .filter(|g| g.workload.as_deref() == Some(cfg.durable_workload.as_str()))
        .map(|g| (g.lease_id.as_str(), g))
        .collect();
    let durable_resources: BTreeSet<&str> = acked.values().map(|g| g.resource.as_str()).collect();
    if acked.is_empty() {
        return Verdict::new(
            "4-durable-grants",
            true,
            "no durable grants were acknowledged (nothing to check)".into(),
            json!({}),
        );
    }

    // The last definite answer of the harness's final renew of each lease.
    let mut final_read: BTreeMap<&str, Result<(), String>> = BTreeMap::new();
    for p in pairs(history)
        .iter()
        .filter(|p| p.invoke.process == HARNESS && p.invoke.f == F::Renew)
    {
        let Some(l) = p.invoke.lease_id.as_deref() else {
            continue;
        };
        match p.kind() {
            Type::Ok => {
                final_read.insert(l, Ok(()));
            }
            Type::Fail => {
                let e = p.done.and_then(|d| d.error.clone()).unwrap_or_default();
                if e.contains("lease_expired") || e.contains("lease_not_found") {
                    final_read.insert(l, Err(e));
                }
            }
            _ => {}
        }
    }
    let mut lost = Vec::new();
    let mut unknown = Vec::new();
    for (l, g) in &acked {
        match final_read.get(l) {
            Some(Ok(())) => {}
            Some(Err(e)) => lost.push(json!({
                "lease_id": l, "request_ids": g.request_ids, "acked_ms": g.first_ok_ms, "final_read": e,
            })),
            None => unknown.push(*l),
        }
    }

    // Request ids of the durable workload that may or may not have been granted.
    let mut rid_ok: BTreeSet<&str> = BTreeSet::new();
    let mut rid_maybe: BTreeSet<&str> = BTreeSet::new();
    for p in pairs(history).iter().filter(|p| {
        p.invoke.f == F::Acquire
            && p.invoke.is_client()
            && p.invoke.workload.as_deref() == Some(cfg.durable_workload.as_str())
    }) {
        let Some(r) = p.invoke.request_id.as_deref() else {
            continue;
        };
        match p.kind() {
            Type::Ok => {
                rid_ok.insert(r);
            }
            Type::Info | Type::Invoke => {
                rid_maybe.insert(r);
            }
            Type::Fail => {}
        }
    }
    let maybe = rid_maybe.difference(&rid_ok).count() as u64;
    let mut count_problems = Vec::new();
    let mut counts = Vec::new();
    for r in &durable_resources {
        let want = acked.values().filter(|g| g.resource == *r).count() as u64;
        let held = harness_ops(history, F::Read)
            .filter(|o| o.kind == Type::Ok && o.resource.as_deref() == Some(r))
            .filter_map(|o| o.value.as_ref()?.get("held")?.as_u64())
            .last();
        counts.push(json!({"resource": r, "held": held, "acked": want, "maybe": maybe}));
        match held {
            None => unknown.push(r),
            Some(h) if h < want => count_problems
                .push(json!({"resource": r, "held": h, "acked": want, "kind": "fewer held than acknowledged"})),
            Some(h) if h > want + maybe => count_problems.push(json!({
                "resource": r, "held": h, "acked": want, "maybe": maybe,
                "kind": "more held than acknowledged + indeterminate (a failed acquire took effect)",
            })),
            Some(_) => {}
        }
    }
    let valid = lost.is_empty() && count_problems.is_empty() && unknown.is_empty();
    let summary = if valid {
        format!(
            "all {} acknowledged durable grants present in the final read",
            acked.len()
        )
    } else if !unknown.is_empty() && lost.is_empty() && count_problems.is_empty() {
        format!("unknown: {} final reads could not be made", unknown.len())
    } else {
        format!(
            "{} of {} acknowledged durable grants lost; {} count anomalies",
            lost.len(),
            acked.len(),
            count_problems.len()
        )
    };
    lost.truncate(EXAMPLES_MAX);
    unknown.truncate(EXAMPLES_MAX);
    Verdict::new(
        "4-durable-grants",
        valid,
        summary,
        json!({"acked": acked.len(), "lost": lost, "unknown": unknown, "counts": counts, "count_problems": count_problems}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::H;

    fn renew(h: &mut H, t: f64, lease: &str, kind: Type, error: Option<&str>) {
        let mut inv = Op::new(HARNESS, Type::Invoke, F::Renew);
        inv.lease_id = Some(lease.into());
        let mut d = inv.complete(kind);
        d.error = error.map(Into::into);
        h.op(t, inv);
        h.op(t + 1.0, d);
    }

    fn read(h: &mut H, t: f64, held: u64) {
        let mut r = Op::new(HARNESS, Type::Ok, F::Read);
        r.resource = Some("durable".into());
        r.value = Some(json!({"held": held}));
        h.op(t, r);
    }

    fn base() -> H {
        let mut h = H::new();
        h.acquire(
            1,
            10.0,
            20.0,
            Type::Ok,
            "durable",
            "a",
            Some(("1-a", 1)),
            3_600_000,
        );
        h.acquire(2, 30.0, 40.0, Type::Info, "durable", "b", None, 3_600_000);
        h.acquire(3, 50.0, 60.0, Type::Fail, "durable", "c", None, 3_600_000);
        h.acquire(
            4,
            70.0,
            80.0,
            Type::Ok,
            "durable",
            "d",
            Some(("3-d", 3)),
            3_600_000,
        );
        h
    }

    #[test]
    fn a_lost_grant_fails() {
        let mut h = base();
        renew(&mut h, 1_000.0, "1-a", Type::Ok, None);
        renew(&mut h, 1_010.0, "3-d", Type::Fail, Some("lease_not_found"));
        read(&mut h, 1_020.0, 1);
        let v = check(&h.done(), &Config::default());
        assert!(!v.valid, "{v:?}");
        assert_eq!(v.details["lost"][0]["lease_id"], "3-d");
    }

    #[test]
    fn a_failed_acquire_that_took_effect_fails() {
        let mut h = base();
        renew(&mut h, 1_000.0, "1-a", Type::Ok, None);
        renew(&mut h, 1_010.0, "3-d", Type::Ok, None);
        // 2 acked + 1 indeterminate, but 4 held: the failed "c" must have happened.
        read(&mut h, 1_020.0, 4);
        let v = check(&h.done(), &Config::default());
        assert!(!v.valid, "{v:?}");
    }

    #[test]
    fn all_present_passes_whatever_the_info_did() {
        for held in [2, 3] {
            let mut h = base();
            renew(&mut h, 1_000.0, "1-a", Type::Info, None);
            renew(&mut h, 1_005.0, "1-a", Type::Ok, None);
            renew(&mut h, 1_010.0, "3-d", Type::Ok, None);
            read(&mut h, 1_020.0, held);
            let v = check(&h.done(), &Config::default());
            assert!(v.valid, "{v:?}");
        }
    }
}
