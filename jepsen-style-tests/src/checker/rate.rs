//! Checker 3: token buckets never admit more than capacity plus refill.
//!
//! For a bucket `{limit, window_ms}` (capacity `limit`, refill `limit / window_ms` per
//! millisecond of cluster time), the certain admits whose whole interval `[first invoke
//! of the request id, first ok]` lies inside a window `[a, b]` of the harness clock
//! were stamped inside `[a - skew, b]`; cluster time advances no faster than the harness
//! clock, so their charges total at most `limit + (b - a + skew) * limit / window_ms`.
//! Only `ok` grants are counted (an `info` grant can only add to the true total, so
//! leaving it out never invents a violation). Every window bounded by an admit's start
//! and another's end is checked.
//!
//! The details also report the worst excess over the skew-free budget: how close the
//! run came, and how much of the skew allowance it actually needed.
//!
//! Provider reports only lower a bucket or pause grants, so the bound holds with them
//! too (the `report` workload's resource is checked like any other). Dry-run resources
//! admit beyond their buckets by design and are left out; checker 9 applies the same
//! bound to the grants their shadows admitted.

use ratequeue_api as api;
use serde_json::json;

use super::{grants, Config, Grant, Verdict, EXAMPLES_MAX};
use crate::history::Op;

struct Admit {
    start: f64,
    end: f64,
    charge: u64,
    lease_id: String,
}

pub fn check(history: &[Op], cfg: &Config) -> Verdict {
    let gs = grants(history);
    let enforced: Vec<&Grant> = gs
        .values()
        .filter(|g| !cfg.is_dry_run(&g.resource))
        .collect();
    let r = over_budget(&enforced, cfg);
    let valid = r.count == 0;
    let summary = if valid {
        format!(
            "{} buckets: no window admitted more than capacity + refill",
            r.buckets.len()
        )
    } else {
        format!("{} windows admitted more than capacity + refill", r.count)
    };
    Verdict::new(
        "3-token-bucket",
        valid,
        summary,
        json!({"buckets": r.buckets, "violations": r.examples, "stamp_skew_ms": cfg.stamp_skew_ms}),
    )
}

/// Windows in which the grants `gs` charged a bucket more than capacity + refill.
pub(crate) struct OverBudget {
    pub count: usize,
    pub examples: Vec<serde_json::Value>,
    pub buckets: Vec<serde_json::Value>,
}

pub(crate) fn over_budget(gs: &[&Grant], cfg: &Config) -> OverBudget {
    let mut violations = Vec::new();
    let mut count = 0usize;
    let mut buckets = Vec::new();
    for (name, spec) in &cfg.resources {
        for (i, rate) in spec.rate.iter().enumerate() {
            let mut admits: Vec<Admit> = gs
                .iter()
                .filter(|g| &g.resource == name)
                .map(|g| Admit {
                    start: g.first_invoke_ms,
                    end: g.first_ok_ms,
                    charge: match rate.per {
                        api::Per::Request => 1,
                        api::Per::Load => g.load,
                    },
                    lease_id: g.lease_id.clone(),
                })
                .collect();
            let r = check_bucket(&mut admits, rate, cfg.stamp_skew_ms);
            count += r.violations.len();
            for v in r.violations {
                if violations.len() < EXAMPLES_MAX {
                    violations.push(json!({"resource": name, "bucket": i, "window": v}));
                }
            }
            buckets.push(json!({
                "resource": name, "bucket": i, "per": rate.per, "limit": rate.limit,
                "window_ms": rate.window_ms, "admits": admits.len(),
                "worst_excess_without_skew": r.worst_excess_no_skew,
            }));
        }
    }
    OverBudget {
        count,
        examples: violations,
        buckets,
    }
}

struct BucketResult {
    violations: Vec<serde_json::Value>,
    worst_excess_no_skew: f64,
}

fn check_bucket(admits: &mut [Admit], rate: &api::Rate, skew: f64) -> BucketResult {
    let limit = rate.limit as f64;
    let per_ms = limit / rate.window_ms.max(1) as f64;
    admits.sort_by(|a, b| b.start.total_cmp(&a.start));
    // Ends (with charges) of the admits starting at or after the current `a`, sorted.
    let mut inside: Vec<(f64, u64, usize)> = Vec::new();
    let mut violations = Vec::new();
    let mut worst = f64::NEG_INFINITY;
    for (k, adm) in admits.iter().enumerate() {
        let pos = inside.partition_point(|e| e.0 <= adm.end);
        inside.insert(pos, (adm.end, adm.charge, k));
        let a = adm.start;
        let mut total = 0u64;
        let mut reported = false;
        for (b, charge, _) in &inside {
            total += charge;
            let admitted = total as f64;
            let budget = limit + (b - a + skew).max(0.0) * per_ms;
            worst = worst.max(admitted - (limit + (b - a).max(0.0) * per_ms));
            // A small epsilon keeps float rounding from flagging an exact fit.
            if admitted > budget + 1e-6 && !reported {
                reported = true;
                let who: Vec<&str> = inside
                    .iter()
                    .take_while(|e| e.0 <= *b)
                    .filter_map(|e| admits.get(e.2))
                    .map(|x| x.lease_id.as_str())
                    .take(EXAMPLES_MAX)
                    .collect();
                violations.push(json!({
                    "from_ms": a, "to_ms": b, "admitted": total, "budget": budget.floor(),
                    "some_leases": who,
                }));
            }
        }
    }
    BucketResult {
        violations,
        worst_excess_no_skew: if worst.is_finite() { worst } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::H;
    use crate::history::Type;

    fn cfg() -> Config {
        let mut c = Config {
            stamp_skew_ms: 100.0,
            ..Config::default()
        };
        c.resources.insert(
            "rate-0".into(),
            api::ResourceSpec {
                rate: vec![api::Rate {
                    per: api::Per::Request,
                    limit: 3,
                    window_ms: 1_000,
                }],
                ..Default::default()
            },
        );
        c
    }

    #[test]
    fn a_burst_over_capacity_fails() {
        let mut h = H::new();
        for i in 0..5u64 {
            let t = 10.0 + i as f64;
            let lease = format!("{}-x", i + 1);
            h.acquire(
                i as i64,
                t,
                t + 5.0,
                Type::Ok,
                "rate-0",
                &format!("r{i}"),
                Some((&lease, i + 1)),
                1_000,
            );
        }
        let v = check(&h.done(), &cfg());
        assert!(!v.valid, "{v:?}");
        assert!(
            v.details["violations"][0]["window"]["admitted"]
                .as_u64()
                .unwrap()
                >= 4
        );
    }

    #[test]
    fn capacity_plus_refill_passes() {
        let mut h = H::new();
        // A burst of 3, then one per 1/3 s: exactly the refill rate.
        let mut t = 10.0;
        for i in 0..12u64 {
            let lease = format!("{}-x", i + 1);
            h.acquire(
                i as i64,
                t,
                t + 5.0,
                Type::Ok,
                "rate-0",
                &format!("r{i}"),
                Some((&lease, i + 1)),
                1_000,
            );
            if i >= 2 {
                t += 334.0;
            }
        }
        // Refused and unknown attempts in between do not count.
        h.acquire(100, 11.0, 12.0, Type::Fail, "rate-0", "f", None, 1_000);
        h.acquire(101, 11.0, 2_000.0, Type::Info, "rate-0", "g", None, 1_000);
        let v = check(&h.done(), &cfg());
        assert!(v.valid, "{v:?}");
    }
}
