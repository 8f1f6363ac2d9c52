//! Checker 2: fencing tokens are unique and strictly increase in grant order.
//!
//! Uniqueness: one lease id has one token, and one token belongs to one lease id (across
//! acquires and renewals; idempotent retries return the same lease and token). A lease
//! id's text starts with its token.
//!
//! Order: a lease was granted somewhere inside `[first invoke of its request id, first
//! ok]`. If lease A's first ok precedes lease B's earliest invoke, A's grant is earlier in
//! the log than B's, so A's token must be smaller. Overlapping intervals prove nothing
//! and are not compared. Only `ok` acquires carry tokens, so `info` plays no part.

use std::collections::BTreeMap;

use serde_json::json;

use super::{grants, Config, Verdict, EXAMPLES_MAX};
use crate::history::{pairs, Op, F};

pub fn check(history: &[Op], _cfg: &Config) -> Verdict {
    let gs = grants(history);
    let mut problems = Vec::new();
    let mut count = 0usize;
    let mut note = |v: serde_json::Value| {
        count += 1;
        if problems.len() < EXAMPLES_MAX {
            problems.push(v);
        }
    };

    // One token per lease id, including what renewals reported.
    let mut token_of: BTreeMap<&str, u64> = BTreeMap::new();
    for g in gs.values() {
        token_of.insert(g.lease_id.as_str(), g.token);
        let prefix = g
            .lease_id
            .split('-')
            .next()
            .and_then(|t| t.parse::<u64>().ok());
        if prefix != Some(g.token) {
            note(
                json!({"kind": "lease id does not carry its token", "lease_id": g.lease_id, "token": g.token}),
            );
        }
    }
    for p in pairs(history).iter().filter(|p| p.is_ok()) {
        let (Some(d), Some(l)) = (p.done, p.lease_id()) else {
            continue;
        };
        let Some(tok) = d.fencing_token else {
            continue;
        };
        if p.invoke.f == F::Renew {
            if let Some(t) = token_of.get(l) {
                if *t != tok {
                    note(
                        json!({"kind": "renewal changed the token", "lease_id": l, "granted": t, "renewed": tok}),
                    );
                }
            }
        }
    }
    // Also a second acquire answer for the same lease id with another token.
    for p in pairs(history)
        .iter()
        .filter(|p| p.is_ok() && p.invoke.f == F::Acquire)
    {
        let (Some(d), Some(l)) = (p.done, p.lease_id()) else {
            continue;
        };
        if let (Some(t), Some(tok)) = (token_of.get(l), d.fencing_token) {
            if *t != tok {
                note(
                    json!({"kind": "one lease id, two tokens", "lease_id": l, "tokens": [t, tok]}),
                );
            }
        }
    }
    let mut owner: BTreeMap<u64, &str> = BTreeMap::new();
    for g in gs.values() {
        if let Some(other) = owner.insert(g.token, g.lease_id.as_str()) {
            if other != g.lease_id {
                note(
                    json!({"kind": "token reused", "token": g.token, "lease_ids": [other, g.lease_id]}),
                );
            }
        }
    }

    // Real-time order: sweep leases by earliest invoke, keeping the largest token among
    // leases whose first ok came strictly before.
    let mut by_ok: Vec<_> = gs.values().collect();
    by_ok.sort_by(|a, b| a.first_ok_ms.total_cmp(&b.first_ok_ms));
    let mut by_invoke: Vec<_> = gs.values().collect();
    by_invoke.sort_by(|a, b| a.first_invoke_ms.total_cmp(&b.first_invoke_ms));
    let mut k = 0usize;
    let mut best: Option<&super::Grant> = None;
    let mut ordered = 0usize;
    for b in by_invoke {
        while let Some(a) = by_ok.get(k) {
            if a.first_ok_ms >= b.first_invoke_ms {
                break;
            }
            if best.is_none_or(|x| x.token < a.token) {
                best = Some(a);
            }
            k += 1;
        }
        if let Some(a) = best {
            ordered += 1;
            if a.token >= b.token && a.lease_id != b.lease_id {
                note(json!({
                    "kind": "token not increasing in grant order",
                    "earlier": {"lease_id": a.lease_id, "token": a.token, "ok_ms": a.first_ok_ms},
                    "later": {"lease_id": b.lease_id, "token": b.token, "invoke_ms": b.first_invoke_ms},
                }));
            }
        }
    }
    let valid = count == 0;
    let summary = if valid {
        format!(
            "{} leases: tokens unique; {ordered} ordered pairs increasing",
            gs.len()
        )
    } else {
        format!("{count} fencing-token violations among {} leases", gs.len())
    };
    Verdict::new(
        "2-fencing-tokens",
        valid,
        summary,
        json!({"leases": gs.len(), "violations": problems}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::H;
    use crate::history::Type;

    #[test]
    fn token_reuse_and_decrease_fail() {
        let mut h = H::new();
        h.acquire(
            1,
            10.0,
            20.0,
            Type::Ok,
            "sem-0",
            "a",
            Some(("5-aa", 5)),
            30_000,
        );
        // Invoked after a's ok, but a smaller token: a lost grant was re-issued.
        h.acquire(
            2,
            30.0,
            40.0,
            Type::Ok,
            "sem-0",
            "b",
            Some(("4-bb", 4)),
            30_000,
        );
        let v = check(&h.done(), &Config::default());
        assert!(!v.valid, "{v:?}");
        assert_eq!(
            v.details["violations"][0]["kind"],
            "token not increasing in grant order"
        );

        let mut h = H::new();
        h.acquire(
            1,
            10.0,
            20.0,
            Type::Ok,
            "sem-0",
            "a",
            Some(("5-aa", 5)),
            30_000,
        );
        h.acquire(
            2,
            12.0,
            25.0,
            Type::Ok,
            "sem-1",
            "b",
            Some(("5-bb", 5)),
            30_000,
        );
        let v = check(&h.done(), &Config::default());
        assert!(!v.valid, "{v:?}");
        assert_eq!(v.details["violations"][0]["kind"], "token reused");
    }

    #[test]
    fn concurrent_grants_and_idempotent_retries_pass() {
        let mut h = H::new();
        // Overlapping intervals may be granted in either order.
        h.acquire(
            1,
            10.0,
            50.0,
            Type::Ok,
            "sem-0",
            "a",
            Some(("7-aa", 7)),
            30_000,
        );
        h.acquire(
            2,
            20.0,
            40.0,
            Type::Ok,
            "sem-1",
            "b",
            Some(("6-bb", 6)),
            30_000,
        );
        // A retry of "c" (first sent at 30) returns the lease granted then, after later
        // grants were acknowledged: not a decrease.
        h.acquire(3, 30.0, 35.0, Type::Info, "sem-0", "c", None, 30_000);
        h.acquire(
            4,
            60.0,
            70.0,
            Type::Ok,
            "sem-0",
            "d",
            Some(("9-dd", 9)),
            30_000,
        );
        h.acquire(
            5,
            80.0,
            90.0,
            Type::Ok,
            "sem-0",
            "c",
            Some(("8-cc", 8)),
            30_000,
        );
        h.acquire(6, 95.0, 99.0, Type::Fail, "sem-0", "e", None, 30_000);
        h.acquire(
            7,
            100.0,
            110.0,
            Type::Ok,
            "sem-0",
            "f",
            Some(("10-ff", 10)),
            30_000,
        );
        let v = check(&h.done(), &Config::default());
        assert!(v.valid, "{v:?}");
    }
}
