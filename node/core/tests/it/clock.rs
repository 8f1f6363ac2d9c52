//! The cluster clock (DESIGN.md §3): entries are stamped by the leader, applied at
//! `max(state.now, entry.now)`, and time does not advance without a leader.

use ratequeue_core::{LeaderClock, Outcome, State};

use crate::check::{check, limits, no_room, requests};

#[test]
fn tick_takes_the_max_so_time_never_goes_back() {
    let mut s = State::new();
    assert_eq!(s.now_ms(), 0);
    s.tick(100);
    assert_eq!(s.now_ms(), 100);
    s.tick(50);
    assert_eq!(s.now_ms(), 100);
    s.apply_entry(70, &[]);
    assert_eq!(s.now_ms(), 100);
    s.apply_entry(101, &[]);
    assert_eq!(s.now_ms(), 101);
    // tick is idempotent.
    let before = s.snapshot();
    s.tick(101);
    s.tick(0);
    assert_eq!(s.snapshot(), before);
}

#[test]
fn a_stale_stamp_neither_refills_nor_unrefills() {
    let mut c = check(&[("r", limits(None, &[requests(10, 1_000)]))]);
    c.at(1_000);
    assert_eq!(c.drain("r", 1), 10);
    c.at(500);
    assert_eq!(c.remaining("r"), vec![0]);
    assert_eq!(no_room(c.acquire("r", 1)).0, 100);
}

#[test]
fn leader_stamps_start_at_base_and_are_monotonic() {
    let mut c = LeaderClock::new(10_000);
    assert_eq!(c.peek(0), 10_000);
    assert_eq!(c.stamp(0), 10_000);
    assert_eq!(c.stamp(5), 10_005);
    assert_eq!(c.stamp(5), 10_005);
    assert_eq!(
        c.stamp(3),
        10_005,
        "a late reading of elapsed never moves back"
    );
    assert_eq!(c.peek(2), 10_005);
    assert_eq!(c.peek(20), 10_020);
    assert_eq!(c.stamp(19), 10_019, "peek issues nothing");
    assert_eq!(c.elapsed_at(10_020), 20);
    assert_eq!(c.elapsed_at(9_000), 0);
    let mut far = LeaderClock::new(u64::MAX - 1);
    assert_eq!(far.stamp(10), u64::MAX);
}

#[test]
fn an_election_neither_mints_budget_nor_expires_leases_early() {
    // Leader 1 stamps entries from base 0; it dies after 2 s of elapsed time, the cluster
    // is leaderless for a long (wall-clock) time, leader 2 takes office with base = last
    // entry's stamp. Cluster time resumes where it stopped.
    let mut s = State::new();
    let mut l1 = LeaderClock::new(0);
    let cfg = limits(Some(1), &[requests(1, 60_000)]);
    s.apply_entry(l1.stamp(0), &[crate::check::put("r", cfg)]);
    let g = ratequeue_core::Grant {
        ttl_ms: 5_000,
        ..crate::check::grant_cmd("r", 1, 1)
    };
    let out = s.apply_entry(l1.stamp(2_000), &[ratequeue_core::Command::Grant(g)]);
    assert!(matches!(out[0], Outcome::Granted { .. }));
    let last = s.now_ms();
    let mut l2 = LeaderClock::new(last);
    // Leader 2's first entry, 1 s after it took office (and an hour of outage later).
    s.apply_entry(l2.stamp(1_000), &[]);
    assert_eq!(s.now_ms(), 3_000);
    assert_eq!(
        s.lease_count(),
        1,
        "the lease lost only the 1 s of cluster time"
    );
    assert_eq!(s.limits("r")[1].remaining, 0, "no burst after the outage");
    s.apply_entry(l2.stamp(4_999), &[]);
    assert_eq!(s.lease_count(), 1);
    s.apply_entry(l2.stamp(5_000), &[]);
    assert_eq!(s.lease_count(), 0);
}
