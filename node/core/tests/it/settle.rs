//! Reserve, then settle: a release's `actual_load` refunds (capped at capacity) or debits
//! (possibly into debt) every `per: load` bucket, and nothing else.

use ratequeue_core::{LimitKind, Outcome, Rejection};

use crate::check::{check, invalid, limits, loads, no_room, requests};

#[test]
fn a_smaller_actual_load_refunds_the_difference() {
    let mut c = check(&[("llm", limits(None, &[loads(1_000, 1_000)]))]);
    let l = c.lease("llm", 600);
    assert_eq!(c.remaining("llm"), vec![400]);
    assert_eq!(
        c.release(l, Some(100)),
        Outcome::Released { already: false }
    );
    assert_eq!(c.remaining("llm"), vec![900]);
}

#[test]
fn refunds_are_capped_at_capacity() {
    let mut c = check(&[("llm", limits(None, &[loads(1_000, 1_000)]))]);
    let l = c.lease("llm", 100);
    c.at(60); // 60 refilled: 960
    assert_eq!(c.remaining("llm"), vec![960]);
    c.release(l, Some(0));
    assert_eq!(c.remaining("llm"), vec![1_000], "not 1 060");
    assert_eq!(
        c.drain("llm", 1_000),
        1,
        "and the burst is still only capacity"
    );
    assert_eq!(c.remaining("llm"), vec![0]);
}

#[test]
fn a_larger_actual_load_debits_into_debt_and_delays_later_grants() {
    // 1 token per ms.
    let mut c = check(&[("llm", limits(None, &[loads(1_000, 1_000)]))]);
    let l = c.lease("llm", 500);
    c.release(l, Some(1_500));
    assert_eq!(c.remaining("llm"), vec![-500]);
    // Even a load of 1 waits until the debt is paid and a token is back.
    assert_eq!(no_room(c.acquire("llm", 1)), (501, LimitKind::Load));
    // A zero load waits for the debt only.
    assert_eq!(no_room(c.acquire("llm", 0)), (500, LimitKind::Load));
    c.at(500);
    c.lease("llm", 0);
    c.at(501);
    c.lease("llm", 1);
    assert_eq!(c.remaining("llm"), vec![0]);
}

#[test]
fn settle_touches_load_buckets_only_and_all_of_them() {
    let cfg = limits(
        Some(2),
        &[requests(10, 1_000), loads(100, 1_000), loads(50, 10_000)],
    );
    let mut c = check(&[("llm", cfg)]);
    let l = c.lease("llm", 10);
    c.release(l, Some(10));
    assert_eq!(
        c.remaining("llm"),
        vec![2, 9, 90, 40],
        "equal actual changes nothing"
    );
    // Without actual_load the reservation stands.
    let l = c.lease("llm", 0);
    c.release(l, None);
    assert_eq!(c.remaining("llm"), vec![2, 8, 90, 40]);
    let l = c.lease("llm", 40);
    assert_eq!(c.remaining("llm"), vec![1, 7, 50, 0]);
    c.release(l, Some(70));
    assert_eq!(c.remaining("llm"), vec![2, 7, 20, -30]);
}

#[test]
fn settle_happens_once_and_only_for_live_leases() {
    let mut c = check(&[("llm", limits(None, &[loads(100, 100_000)]))]);
    let a = c.lease("llm", 50);
    c.release(a, Some(0));
    assert_eq!(c.remaining("llm"), vec![100]);
    assert_eq!(c.release(a, Some(0)), Outcome::Released { already: true });
    assert_eq!(
        c.release(a, Some(1_000)),
        Outcome::Released { already: true }
    );
    assert_eq!(
        c.remaining("llm"),
        vec![100],
        "a repeated release settles nothing"
    );
    let b = c.lease_ttl("llm", 50, 1_000);
    c.at(1_000);
    assert_eq!(
        c.release(b, Some(0)),
        Outcome::Rejected(Rejection::LeaseExpired)
    );
    assert_eq!(
        c.remaining("llm"),
        vec![51],
        "an expired lease settles nothing (1 token refilled)"
    );
    let d = c.lease("llm", 10);
    invalid(c.release(d, Some(ratequeue_core::LOAD_MAX + 1)));
    assert_eq!(
        c.state.lease_count(),
        1,
        "an invalid settle does not release"
    );
    c.release(d, Some(ratequeue_core::LOAD_MAX));
    assert!(c.remaining("llm")[0] < -900_000_000_000);
}
