//! Concurrency, limits checked together, resource create/replace/delete, fencing tokens.

use ratequeue_core::config::DEFAULT_TTL_MS;
use ratequeue_core::{Command, LimitKind, Outcome, Rejection, ResourceConfig, State};

use crate::check::{check, granted, invalid, limits, loads, no_room, put, requests, TTL};

#[test]
fn concurrency_admits_n_then_waits_for_the_first_expiry() {
    let mut c = check(&[("db", ResourceConfig::concurrency(2))]);
    let a = c.lease("db", 1);
    c.at(1_000);
    let _b = c.lease("db", 1);
    assert_eq!(c.remaining("db"), vec![0]);
    // The slot frees when the earliest lease (granted at 0) expires, at TTL.
    assert_eq!(
        no_room(c.acquire("db", 1)),
        (TTL - 1_000, LimitKind::Concurrency)
    );
    assert_eq!(c.release(a, None), Outcome::Released { already: false });
    assert_eq!(c.remaining("db"), vec![1]);
    c.lease("db", 1);
    let s = c.stats("db");
    assert_eq!((s.held, s.grants_total), (2, 3));
    assert_eq!(c.state.lease_count(), 2);
}

#[test]
fn concurrency_wait_is_the_expiry_that_brings_held_below_the_limit() {
    // After lowering concurrency from 3 to 2 with 3 held, two must end before a grant:
    // the wait is the second expiry, not the first.
    let mut c = check(&[("db", ResourceConfig::concurrency(3))]);
    c.lease_ttl("db", 1, 5_000);
    c.lease_ttl("db", 1, 2_000);
    c.lease_ttl("db", 1, 9_000);
    assert_eq!(
        c.apply(put("db", ResourceConfig::concurrency(2))),
        Outcome::ResourcePut { created: false }
    );
    assert_eq!(c.remaining("db"), vec![-1], "existing leases are kept");
    assert_eq!(no_room(c.acquire("db", 1)), (5_000, LimitKind::Concurrency));
    c.at(4_999);
    assert_eq!(no_room(c.acquire("db", 1)).0, 1);
    c.at(5_000);
    c.lease("db", 1);
}

#[test]
fn all_limits_are_checked_together_and_charged_atomically() {
    let cfg = limits(Some(5), &[requests(10, 1_000), loads(100, 1_000)]);
    let mut c = check(&[("llm", cfg)]);
    c.lease("llm", 60);
    assert_eq!(c.remaining("llm"), vec![4, 9, 40]);
    // Load binds: 20 tokens missing at 100 per second = 200 ms. Nothing is charged.
    assert_eq!(no_room(c.acquire("llm", 60)), (200, LimitKind::Load));
    assert_eq!(
        c.remaining("llm"),
        vec![4, 9, 40],
        "a refusal charges nothing"
    );
    c.at(199);
    assert_eq!(no_room(c.acquire("llm", 60)), (1, LimitKind::Load));
    c.at(200);
    c.lease("llm", 60);
    // The request bucket refilled 2 (capped at 10) and was charged 1.
    assert_eq!(c.remaining("llm"), vec![3, 9, 0]);
}

#[test]
fn the_binding_limit_is_the_one_that_frees_up_last() {
    // Request bucket binds (10 s) although the load bucket also lacks room (100 ms).
    let cfg = limits(None, &[requests(1, 10_000), loads(100, 1_000)]);
    let mut c = check(&[("r", cfg)]);
    c.lease("r", 95);
    assert_eq!(no_room(c.acquire("r", 15)), (10_000, LimitKind::Request));
    // Concurrency binds over a request bucket that frees earlier.
    let cfg = limits(Some(1), &[requests(1, 1_000)]);
    let mut c = check(&[("r", cfg)]);
    c.lease_ttl("r", 1, 5_000);
    assert_eq!(no_room(c.acquire("r", 1)), (5_000, LimitKind::Concurrency));
    c.at(1_000);
    assert_eq!(no_room(c.acquire("r", 1)), (4_000, LimitKind::Concurrency));
    c.at(5_000);
    let l = c.lease("r", 1);
    assert_eq!(no_room(c.acquire("r", 1)), (TTL, LimitKind::Concurrency));
    // Once the slot is free, the request bucket is what binds.
    c.release(l, None);
    assert_eq!(no_room(c.acquire("r", 1)), (1_000, LimitKind::Request));
}

#[test]
fn a_load_larger_than_a_load_bucket_is_rejected_at_once() {
    let cfg = limits(
        None,
        &[loads(1_000, 60_000), loads(300, 1_000), requests(5, 1)],
    );
    let mut c = check(&[("r", cfg)]);
    assert_eq!(
        c.acquire("r", 301),
        Outcome::Rejected(Rejection::LoadExceedsLimit { load_max: 300 })
    );
    // Even when the buckets are empty: it is about capacity, not room.
    c.lease("r", 300);
    assert_eq!(
        c.acquire("r", 301),
        Outcome::Rejected(Rejection::LoadExceedsLimit { load_max: 300 })
    );
    assert!(matches!(
        c.acquire("r", 300),
        Outcome::Rejected(Rejection::NoRoom { .. })
    ));
    // Request buckets and concurrency never bound the load.
    let mut c = check(&[("r", limits(Some(1), &[requests(1, 1_000)]))]);
    c.lease("r", 1_000_000);
}

#[test]
fn zero_load_passes_load_buckets_but_not_request_buckets() {
    let cfg = limits(None, &[requests(1, 1_000), loads(10, 1_000)]);
    let mut c = check(&[("r", cfg)]);
    c.lease("r", 10);
    c.at(1_000);
    c.lease("r", 0);
    assert_eq!(c.remaining("r"), vec![0, 10]);
    assert_eq!(no_room(c.acquire("r", 0)), (1_000, LimitKind::Request));
}

#[test]
fn unknown_resource_and_invalid_grants() {
    let mut c = check(&[("r", ResourceConfig::concurrency(1))]);
    assert_eq!(
        c.acquire("nope", 1),
        Outcome::Rejected(Rejection::ResourceNotFound)
    );
    let g = c.req("r", 1);
    invalid(c.grant(ratequeue_core::Grant {
        lane: "no spaces".into(),
        ..g.clone()
    }));
    invalid(c.grant(ratequeue_core::Grant {
        ttl_ms: 99,
        ..g.clone()
    }));
    invalid(c.grant(ratequeue_core::Grant {
        ttl_ms: ratequeue_core::TTL_MS_MAX + 1,
        ..g.clone()
    }));
    invalid(c.grant(ratequeue_core::Grant {
        load: ratequeue_core::LOAD_MAX + 1,
        ..g.clone()
    }));
    assert_eq!(c.state.lease_count(), 0);
    assert_eq!(c.state.next_token(), 1, "refusals consume no fencing token");
    granted(c.grant(g));
}

#[test]
fn fencing_tokens_strictly_increase_across_everything() {
    let mut c = check(&[
        ("a", ResourceConfig::concurrency(2)),
        ("b", ResourceConfig::concurrency(1)),
    ]);
    let mut last = 0;
    let mut step = |c: &mut crate::check::Check, r: &str| {
        if let Outcome::Granted { lease, .. } = c.acquire(r, 1) {
            assert!(lease.id.token > last, "{} after {last}", lease.id.token);
            last = lease.id.token;
            Some(lease.id)
        } else {
            None
        }
    };
    for i in 0..50u64 {
        c.at(i * 700);
        let a = step(&mut c, "a");
        let b = step(&mut c, "b");
        if let Some(a) = a {
            c.release(a, None);
        }
        if i % 3 == 0 {
            if let Some(b) = b {
                c.release(b, None);
            }
        }
        if i % 10 == 9 {
            c.apply(Command::DeleteResource { name: "b".into() });
            c.apply(put("b", ResourceConfig::concurrency(1)));
        }
    }
    assert!(last > 50);
    assert_eq!(c.state.next_token(), last + 1);
}

#[test]
fn create_replace_delete() {
    let mut c = check(&[]);
    let cfg = limits(Some(2), &[requests(10, 1_000)]);
    assert_eq!(
        c.apply(put("r", cfg.clone())),
        Outcome::ResourcePut { created: true }
    );
    assert_eq!(c.state.resource("r"), Some(&cfg));
    let a = c.lease("r", 1);
    let b = c.lease("r", 1);
    let mut cfg2 = cfg.clone();
    cfg2.concurrency = Some(3);
    assert_eq!(
        c.apply(put("r", cfg2.clone())),
        Outcome::ResourcePut { created: false }
    );
    assert_eq!(c.state.resource("r"), Some(&cfg2));
    assert_eq!(
        c.remaining("r"),
        vec![1, 8],
        "leases and bucket levels carry over"
    );
    assert_eq!(c.stats("r").grants_total, 2);

    assert_eq!(
        c.apply(Command::DeleteResource { name: "r".into() }),
        Outcome::ResourceDeleted { existed: true }
    );
    assert_eq!(c.state.lease_count(), 0, "its leases end");
    assert_eq!(c.state.lease_resource(a), None);
    assert_eq!(
        c.release(a, None),
        Outcome::Rejected(Rejection::LeaseExpired),
        "the holder of a lease on a deleted resource must stop"
    );
    assert_eq!(c.renew(b, None), Outcome::Rejected(Rejection::LeaseExpired));
    assert_eq!(
        c.acquire("r", 1),
        Outcome::Rejected(Rejection::ResourceNotFound)
    );
    assert!(c.state.limits("r").is_empty());
    assert!(c.state.resource_stats("r").is_none());
    assert_eq!(
        c.apply(Command::DeleteResource { name: "r".into() }),
        Outcome::ResourceDeleted { existed: false }
    );
    // Re-created: a new resource, fresh buckets, no leases.
    c.apply(put("r", cfg));
    assert_eq!(c.remaining("r"), vec![2, 10]);
    assert_eq!(c.stats("r").grants_total, 0);
    assert_eq!(c.state.resources().count(), 1);
}

#[test]
fn invalid_resources_are_rejected_and_change_nothing() {
    let mut c = check(&[("r", ResourceConfig::concurrency(1))]);
    let before = c.state.snapshot();
    let ok = ResourceConfig::concurrency(1);
    let mut bad = Vec::new();
    bad.push(("", ok.clone()));
    bad.push(("sp ace", ok.clone()));
    bad.push(("ü", ok.clone()));
    let long = "x".repeat(129);
    bad.push((long.as_str(), ok.clone()));
    bad.push(("r", limits(None, &[])));
    bad.push(("r", ResourceConfig::concurrency(0)));
    bad.push(("r", limits(None, &[requests(0, 1_000)])));
    bad.push(("r", limits(None, &[requests(1, 0)])));
    bad.push((
        "r",
        limits(None, &[requests(1, ratequeue_core::WINDOW_MS_MAX + 1)]),
    ));
    bad.push((
        "r",
        limits(None, &[loads(ratequeue_core::LIMIT_MAX + 1, 1)]),
    ));
    bad.push(("r", limits(None, &[requests(1, 1); 9])));
    let mut lanes = ok.clone();
    lanes
        .lanes
        .insert("a".into(), ratequeue_core::LaneConfig { weight: 0 });
    bad.push(("r", lanes.clone()));
    lanes
        .lanes
        .insert("a".into(), ratequeue_core::LaneConfig { weight: 1_001 });
    bad.push(("r", lanes.clone()));
    lanes.lanes.clear();
    lanes
        .lanes
        .insert("bad lane".into(), ratequeue_core::LaneConfig { weight: 1 });
    bad.push(("r", lanes));
    let mut ttl = ok.clone();
    ttl.default_ttl_ms = 99;
    bad.push(("r", ttl));
    let mut q = ok.clone();
    q.max_queue = ratequeue_core::QUEUE_LEN_MAX + 1;
    bad.push(("r", q));
    for (name, cfg) in bad {
        invalid(c.apply(put(name, cfg.clone())));
        assert_eq!(c.state.snapshot(), before, "{name:?} {cfg:?}");
    }
    // The longest valid name and every allowed character.
    let name = format!("{}.-_:Az09", "n".repeat(120));
    assert_eq!(name.len(), 128);
    assert_eq!(
        c.apply(put(&name, ok)),
        Outcome::ResourcePut { created: true }
    );
    assert_eq!(
        ResourceConfig::concurrency(1).default_ttl_ms,
        DEFAULT_TTL_MS
    );
}

#[test]
fn replacing_never_mints_budget_and_keeps_debt() {
    // Drained to 0: a larger limit does not refill it, it only refills faster.
    let mut c = check(&[("r", limits(None, &[requests(10, 1_000)]))]);
    assert_eq!(c.drain("r", 1), 10);
    c.apply(put("r", limits(None, &[requests(20, 1_000)])));
    assert_eq!(c.remaining("r"), vec![0]);
    c.at(49);
    assert_eq!(c.remaining("r"), vec![0]);
    c.at(50);
    assert_eq!(c.remaining("r"), vec![1], "new rate: 20 per second");

    // A smaller capacity caps the level.
    let mut c = check(&[("r", limits(None, &[loads(100, 1_000)]))]);
    c.apply(put("r", limits(None, &[loads(30, 1_000)])));
    assert_eq!(c.remaining("r"), vec![30]);

    // A bucket in debt stays in debt.
    let mut c = check(&[("r", limits(None, &[loads(100, 1_000)]))]);
    let l = c.lease("r", 100);
    c.release(l, Some(150));
    assert_eq!(c.remaining("r"), vec![-50]);
    c.apply(put("r", limits(None, &[loads(200, 1_000)])));
    assert_eq!(c.remaining("r"), vec![-50]);

    // Changing a window converts the tokens held, not the fraction of the window.
    let mut c = check(&[("r", limits(None, &[requests(10, 1_000)]))]);
    assert_eq!(c.drain("r", 1), 10);
    c.at(500); // 5 tokens back
    c.apply(put("r", limits(None, &[requests(10, 60_000)])));
    assert_eq!(c.remaining("r"), vec![5]);
}

#[test]
fn replacing_with_reordered_buckets_mints_nothing() {
    // Same limits, listed in another order: every bucket keeps its level.
    let before = limits(Some(4), &[requests(10, 1_000), loads(100, 1_000)]);
    let after = limits(Some(4), &[loads(100, 1_000), requests(10, 1_000)]);
    let mut c = check(&[("r", before)]);
    c.lease("r", 100);
    assert_eq!(c.remaining("r"), vec![3, 9, 0]);
    c.apply(put("r", after));
    assert_eq!(c.remaining("r"), vec![3, 0, 9]);
    assert!(matches!(
        c.acquire("r", 1),
        Outcome::Rejected(Rejection::NoRoom {
            binding: LimitKind::Load,
            ..
        })
    ));
    // Two request buckets swapped: the per-minute bucket does not inherit the per-second level.
    let before = limits(None, &[requests(5, 1_000), requests(60, 60_000)]);
    let after = limits(None, &[requests(60, 60_000), requests(5, 1_000)]);
    let mut c = check(&[("r", before)]);
    assert_eq!(c.drain("r", 1), 5);
    c.at(1_000);
    assert_eq!(c.remaining("r"), vec![5, 56]);
    c.apply(put("r", after));
    assert_eq!(c.remaining("r"), vec![56, 5]);
}

#[test]
fn putting_the_same_config_again_changes_nothing() {
    // A slow bucket (1 per second) half refilled: a periodic idempotent PUT (what a
    // config-management tool does) must not throw the partial refill away, or a PUT
    // every 600 ms would starve the resource forever.
    let cfg = limits(None, &[requests(1, 1_000), loads(7, 3_000)]);
    let mut c = check(&[("r", cfg.clone())]);
    c.lease("r", 7);
    let mut s = State::new();
    s.apply_entry(0, &[put("r", cfg.clone())]);
    s.apply_entry(0, &[Command::Grant(c.req("r", 7))]);
    for t in [300, 600, 900] {
        c.at(t);
        assert_eq!(
            c.apply(put("r", cfg.clone())),
            Outcome::ResourcePut { created: false }
        );
    }
    assert_eq!(no_room(c.acquire("r", 1)), (100, LimitKind::Request));
    // The same levels as a state that never saw the PUTs.
    c.at(1_000);
    s.tick(1_000);
    assert_eq!(c.state.limits("r"), s.limits("r"));
    assert_eq!(c.remaining("r"), vec![1, 2]);
    c.lease("r", 1);
}
