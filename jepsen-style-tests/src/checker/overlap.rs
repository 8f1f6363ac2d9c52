//! Checker 1: certain holders of a resource never exceed its `concurrency`.
//!
//! A lease is *certainly held* from the first `ok` that returned it until the earlier of
//! (a) the first invoke of any release of it (a release may take effect as soon as it
//! is sent) and (b) its earliest possible expiry: the first invoke of its request id
//! plus its TTL, less the stamp skew (module docs of `checker`). Leases whose outcome is
//! `info` are ignored: they may not exist, so they cannot be counted against the limit,
//! and ignoring a lease can only hide a violation, never invent one. Renewals are
//! ignored too (they only lengthen a hold). If more than `concurrency` certain holds
//! overlap at some instant, the cluster admitted too many.
//!
//! Dry-run resources grant beyond their limits by design and are left out here;
//! checker 9 applies the same count to the grants their shadows admitted.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::{grants, Config, Grant, Verdict, EXAMPLES_MAX};
use crate::history::{pairs, Op, F};

/// A certain hold `[start_ms, end_ms)` of one lease.
#[derive(Clone, Debug, PartialEq)]
pub struct Hold {
    pub lease_id: String,
    pub start_ms: f64,
    pub end_ms: f64,
}

/// Certain holds per enforced resource that has a `concurrency` limit.
pub fn certain_holds(history: &[Op], cfg: &Config) -> BTreeMap<String, Vec<Hold>> {
    let enforced = grants(history)
        .into_values()
        .filter(|g| !cfg.is_dry_run(&g.resource));
    certain_holds_of(history, cfg, enforced)
}

/// Certain holds of the grants `gs`, per resource that has a `concurrency` limit.
pub fn certain_holds_of(
    history: &[Op],
    cfg: &Config,
    gs: impl IntoIterator<Item = Grant>,
) -> BTreeMap<String, Vec<Hold>> {
    let mut release_at: HashMap<&str, f64> = HashMap::new();
    for p in pairs(history).iter().filter(|p| p.invoke.f == F::Release) {
        if let Some(l) = p.invoke.lease_id.as_deref() {
            let t = release_at.entry(l).or_insert(p.invoke.time_ms);
            *t = t.min(p.invoke.time_ms);
        }
    }
    let mut out: BTreeMap<String, Vec<Hold>> = BTreeMap::new();
    for g in gs {
        let Some(spec) = cfg.resources.get(&g.resource) else {
            continue;
        };
        if spec.concurrency.is_none() {
            continue;
        }
        let expiry = g.first_invoke_ms + g.ttl_ms as f64 - cfg.stamp_skew_ms;
        let end = release_at
            .get(g.lease_id.as_str())
            .copied()
            .unwrap_or(f64::INFINITY)
            .min(expiry);
        if end > g.first_ok_ms {
            out.entry(g.resource.clone()).or_default().push(Hold {
                lease_id: g.lease_id.clone(),
                start_ms: g.first_ok_ms,
                end_ms: end,
            });
        }
    }
    out
}

pub fn check(history: &[Op], cfg: &Config) -> Verdict {
    let holds = certain_holds(history, cfg);
    let r = over_limit(&holds, cfg);
    let checked: usize = holds.values().map(Vec::len).sum();
    let valid = r.count == 0;
    let summary = if valid {
        format!(
            "{checked} certain holds on {} resources never exceeded concurrency",
            holds.len()
        )
    } else {
        format!(
            "{} instants with more certain holders than concurrency",
            r.count
        )
    };
    Verdict::new(
        "1-concurrency",
        valid,
        summary,
        json!({"resources": r.per_resource, "violations": r.examples, "stamp_skew_ms": cfg.stamp_skew_ms}),
    )
}

/// Instants at which more holds overlap than their resource's `concurrency`.
pub(crate) struct OverLimit {
    pub count: usize,
    pub examples: Vec<serde_json::Value>,
    pub per_resource: serde_json::Map<String, serde_json::Value>,
}

pub(crate) fn over_limit(holds: &BTreeMap<String, Vec<Hold>>, cfg: &Config) -> OverLimit {
    let mut violations = Vec::new();
    let mut violation_count = 0usize;
    let mut per_resource = serde_json::Map::new();
    for (resource, hs) in holds {
        let limit = cfg
            .resources
            .get(resource)
            .and_then(|s| s.concurrency)
            .unwrap_or(u32::MAX);
        // Ends sort before starts at the same instant: holds are half-open.
        let mut events: Vec<(f64, i32, usize)> = Vec::with_capacity(hs.len() * 2);
        for (i, h) in hs.iter().enumerate() {
            events.push((h.start_ms, 1, i));
            events.push((h.end_ms, -1, i));
        }
        events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut live: BTreeMap<usize, ()> = BTreeMap::new();
        let mut max_seen = 0usize;
        let mut in_violation = false;
        for (t, d, i) in events {
            if d > 0 {
                live.insert(i, ());
            } else {
                live.remove(&i);
            }
            max_seen = max_seen.max(live.len());
            let over = live.len() > limit as usize;
            if over && !in_violation {
                violation_count += 1;
                if violations.len() < EXAMPLES_MAX {
                    let holders: Vec<_> = live
                        .keys()
                        .filter_map(|k| hs.get(*k))
                        .map(|h| json!({"lease_id": h.lease_id, "from_ms": h.start_ms, "until_ms": h.end_ms}))
                        .collect();
                    violations.push(json!({
                        "resource": resource, "at_ms": t, "limit": limit,
                        "holders": holders,
                    }));
                }
            }
            in_violation = over;
        }
        per_resource.insert(
            resource.clone(),
            json!({"limit": limit, "certain_holds": hs.len(), "max_certain_overlap": max_seen}),
        );
    }
    OverLimit {
        count: violation_count,
        examples: violations,
        per_resource,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::H;
    use crate::history::Type;
    use ratequeue_api as api;

    fn cfg() -> Config {
        let mut c = Config {
            stamp_skew_ms: 1_000.0,
            ..Config::default()
        };
        c.resources.insert(
            "sem-0".into(),
            api::ResourceSpec {
                concurrency: Some(1),
                ..Default::default()
            },
        );
        c
    }

    #[test]
    fn overlapping_certain_holds_over_the_limit_fail() {
        let c = cfg();
        let mut h = H::new();
        h.setup(&c);
        h.acquire(
            1,
            10.0,
            20.0,
            Type::Ok,
            "sem-0",
            "a",
            Some(("1-a", 1)),
            30_000,
        );
        h.acquire(
            2,
            15.0,
            30.0,
            Type::Ok,
            "sem-0",
            "b",
            Some(("2-b", 2)),
            30_000,
        );
        h.release(1, 100.0, 110.0, Type::Ok, "1-a");
        h.release(2, 120.0, 130.0, Type::Ok, "2-b");
        let v = check(&h.done(), &Config::from_history(&h.done()));
        assert!(!v.valid, "{v:?}");
        assert_eq!(v.details["violations"][0]["at_ms"], 30.0);
    }

    /// The anomaly of seed 2 (docs/consistency.md): a retried acquire is answered with a
    /// lease the leader released as orphaned, and the slot goes to someone else.
    #[test]
    fn a_retry_answered_with_a_released_lease_is_flagged() {
        let mut c = cfg();
        c.resources.insert(
            "idem-0".into(),
            api::ResourceSpec {
                concurrency: Some(1),
                ..Default::default()
            },
        );
        c.stamp_skew_ms = 15_400.0;
        let mut h = H::new();
        h.acquire(
            36,
            30_090.0,
            31_382.1,
            Type::Info,
            "idem-0",
            "idempotent-1-86",
            None,
            40_000,
        );
        h.acquire(
            38,
            31_585.8,
            32_634.1,
            Type::Ok,
            "idem-0",
            "idempotent-1-86",
            Some(("1061-5a4c3bbd7d7a7029", 1061)),
            40_000,
        );
        h.acquire(
            33,
            32_630.7,
            32_648.5,
            Type::Ok,
            "idem-0",
            "idempotent-0-87",
            Some(("1068-96373dc3ec237861", 1068)),
            40_000,
        );
        h.release(33, 32_734.4, 32_740.7, Type::Ok, "1068-96373dc3ec237861");
        h.release(38, 32_827.8, 32_836.6, Type::Ok, "1061-5a4c3bbd7d7a7029");
        let v = check(&h.done(), &c);
        assert!(!v.valid, "{v:?}");
        assert_eq!(v.details["violations"][0]["resource"], "idem-0");
    }

    #[test]
    fn dry_run_resources_are_left_to_checker_9() {
        let mut c = cfg();
        if let Some(s) = c.resources.get_mut("sem-0") {
            s.mode = Some(api::Mode::DryRun);
        }
        let mut h = H::new();
        h.setup(&c);
        h.acquire(
            1,
            10.0,
            20.0,
            Type::Ok,
            "sem-0",
            "a",
            Some(("1-a", 1)),
            30_000,
        );
        h.acquire(
            2,
            15.0,
            30.0,
            Type::Ok,
            "sem-0",
            "b",
            Some(("2-b", 2)),
            30_000,
        );
        let v = check(&h.done(), &Config::from_history(&h.done()));
        assert!(v.valid, "{v:?}");
        assert!(crate::checker::rate::check(&h.done(), &c).valid);
    }

    #[test]
    fn sequential_holds_and_unknown_grants_pass() {
        let c = cfg();
        let mut h = H::new();
        h.setup(&c);
        h.acquire(
            1,
            10.0,
            20.0,
            Type::Ok,
            "sem-0",
            "a",
            Some(("1-a", 1)),
            30_000,
        );
        // Released (invoke at 50) before the next ok (at 60): the release may have
        // taken effect at once, so no overlap is certain.
        h.release(1, 50.0, 70.0, Type::Info, "1-a");
        h.acquire(
            2,
            40.0,
            60.0,
            Type::Ok,
            "sem-0",
            "b",
            Some(("2-b", 2)),
            30_000,
        );
        // An info acquire may hold a slot, but it is not certain: not counted.
        h.acquire(3, 45.0, 5_000.0, Type::Info, "sem-0", "c", None, 30_000);
        // A lease that outlived its TTL (client paused): the next grant may overlap it.
        h.acquire(
            4,
            200.0,
            210.0,
            Type::Ok,
            "sem-0",
            "d",
            Some(("3-d", 3)),
            2_000,
        );
        h.release(2, 150.0, 160.0, Type::Ok, "2-b");
        h.acquire(
            5,
            1_300.0,
            1_310.0,
            Type::Ok,
            "sem-0",
            "e",
            Some(("4-e", 4)),
            2_000,
        );
        h.release(4, 5_000.0, 5_010.0, Type::Fail, "3-d");
        h.release(5, 5_100.0, 5_110.0, Type::Ok, "4-e");
        let v = check(&h.done(), &c);
        assert!(v.valid, "{v:?}");
    }
}
