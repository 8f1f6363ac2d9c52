//! Checker 5: no `request_id` has two leases, and no lease answers two request ids.
//!
//! Every `ok` acquire names its request id and the lease it got. Retries of one request
//! id (after `info`, with the same id) must all return the same lease id; a lease id
//! returned for two different request ids would be one slot handed to two callers.
//! Only `ok` answers carry lease ids, so `info` cannot cause a false alarm.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::{Config, Verdict, EXAMPLES_MAX};
use crate::history::{pairs, Op, F};

pub fn check(history: &[Op], _cfg: &Config) -> Verdict {
    let mut by_rid: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut by_lease: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut attempts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in pairs(history)
        .iter()
        .filter(|p| p.invoke.f == F::Acquire && p.invoke.is_client())
    {
        let Some(rid) = p.invoke.request_id.as_deref() else {
            continue;
        };
        *attempts.entry(rid).or_default() += 1;
        if !p.is_ok() {
            continue;
        }
        if let Some(l) = p.lease_id() {
            by_rid.entry(rid).or_default().insert(l);
            by_lease.entry(l).or_default().insert(rid);
        }
    }
    let mut problems = Vec::new();
    let mut count = 0usize;
    for (rid, leases) in &by_rid {
        if leases.len() > 1 {
            count += 1;
            if problems.len() < EXAMPLES_MAX {
                problems.push(json!({"kind": "request id with two leases", "request_id": rid, "lease_ids": leases}));
            }
        }
    }
    for (lease, rids) in &by_lease {
        if rids.len() > 1 {
            count += 1;
            if problems.len() < EXAMPLES_MAX {
                problems.push(json!({"kind": "lease for two request ids", "lease_id": lease, "request_ids": rids}));
            }
        }
    }
    let retried = attempts.values().filter(|n| **n > 1).count();
    let valid = count == 0;
    let summary = if valid {
        format!(
            "{} request ids ({retried} retried): each got at most one lease",
            attempts.len()
        )
    } else {
        format!("{count} request ids or leases answered twice")
    };
    Verdict::new(
        "5-idempotency",
        valid,
        summary,
        json!({"request_ids": attempts.len(), "retried": retried, "violations": problems}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::H;
    use crate::history::Type;

    #[test]
    fn a_retry_with_a_second_lease_fails() {
        let mut h = H::new();
        h.acquire(1, 10.0, 20.0, Type::Info, "idem-0", "r1", None, 30_000);
        h.acquire(
            2,
            30.0,
            40.0,
            Type::Ok,
            "idem-0",
            "r1",
            Some(("1-a", 1)),
            30_000,
        );
        h.acquire(
            3,
            50.0,
            60.0,
            Type::Ok,
            "idem-0",
            "r1",
            Some(("2-b", 2)),
            30_000,
        );
        let v = check(&h.done(), &Config::default());
        assert!(!v.valid, "{v:?}");

        let mut h = H::new();
        h.acquire(
            1,
            10.0,
            20.0,
            Type::Ok,
            "idem-0",
            "r1",
            Some(("1-a", 1)),
            30_000,
        );
        h.acquire(
            2,
            30.0,
            40.0,
            Type::Ok,
            "idem-0",
            "r2",
            Some(("1-a", 1)),
            30_000,
        );
        let v = check(&h.done(), &Config::default());
        assert!(!v.valid, "{v:?}");
    }

    #[test]
    fn retries_returning_the_same_lease_pass() {
        let mut h = H::new();
        h.acquire(1, 10.0, 20.0, Type::Info, "idem-0", "r1", None, 30_000);
        h.acquire(
            2,
            30.0,
            40.0,
            Type::Ok,
            "idem-0",
            "r1",
            Some(("1-a", 1)),
            30_000,
        );
        h.acquire(
            3,
            50.0,
            60.0,
            Type::Ok,
            "idem-0",
            "r1",
            Some(("1-a", 1)),
            30_000,
        );
        h.acquire(4, 50.0, 60.0, Type::Fail, "idem-0", "r2", None, 30_000);
        h.acquire(
            5,
            70.0,
            80.0,
            Type::Ok,
            "idem-0",
            "r2",
            Some(("2-b", 2)),
            30_000,
        );
        let v = check(&h.done(), &Config::default());
        assert!(v.valid, "{v:?}");
    }
}
