//! Leases: TTL, renew, idempotent release, expiry from cluster time, and the exact
//! answer for every way a lease id can be wrong.

use ratequeue_core::{
    Grant, HeldLease, LeaseId, Outcome, Rejection, ResourceConfig, State, TOMBSTONE_WINDOW_MS,
};

use crate::check::{check, granted, invalid};

fn expired() -> Outcome {
    Outcome::Rejected(Rejection::LeaseExpired)
}

fn not_found() -> Outcome {
    Outcome::Rejected(Rejection::LeaseNotFound)
}

#[test]
fn a_lease_lives_for_its_ttl_of_cluster_time() {
    let mut c = check(&[("r", ResourceConfig::concurrency(1))]);
    c.at(1_000);
    let l = c.lease_ttl("r", 1, 500);
    c.at(1_499);
    assert_eq!(c.state.lease_count(), 1);
    assert_eq!(c.state.lease_resource(l), Some("r"));
    c.at(1_500);
    assert_eq!(c.state.lease_count(), 0, "expired exactly at grant + ttl");
    assert_eq!(c.state.lease_resource(l), None);
    assert_eq!(c.remaining("r"), vec![1]);
    assert_eq!(c.release(l, None), expired());
    assert_eq!(c.renew(l, None), expired());
    assert_eq!(c.release(l, None), expired(), "still expired, not released");
}

#[test]
fn renew_extends_from_now_with_the_same_or_a_new_ttl() {
    let mut c = check(&[("r", ResourceConfig::concurrency(1))]);
    let l = c.lease_ttl("r", 3, 1_000);
    c.at(900);
    let o = c.renew(l, None);
    let Outcome::Renewed { lease } = o else {
        panic!("{o:?}")
    };
    assert_eq!((lease.id, lease.ttl_ms, lease.load), (l, 1_000, 3));
    assert_eq!(lease.resource, "r");
    c.at(1_899);
    assert_eq!(c.state.lease_count(), 1);
    // A new TTL replaces the old one, and may shorten the lease.
    let Outcome::Renewed { lease } = c.renew(l, Some(200)) else {
        panic!()
    };
    assert_eq!(lease.ttl_ms, 200);
    c.at(2_098);
    assert_eq!(c.state.lease_count(), 1);
    assert_eq!(
        c.renew(l, None),
        Outcome::Renewed {
            lease: ratequeue_core::LeaseView {
                ttl_ms: 200,
                ..lease.clone()
            }
        },
        "the renewed TTL becomes the lease's TTL"
    );
    c.at(2_298);
    assert_eq!(c.state.lease_count(), 0);
    assert_eq!(c.renew(l, None), expired());
}

#[test]
fn renew_with_an_out_of_range_ttl_changes_nothing() {
    let mut c = check(&[("r", ResourceConfig::concurrency(1))]);
    let l = c.lease_ttl("r", 1, 1_000);
    invalid(c.renew(l, Some(99)));
    invalid(c.renew(l, Some(ratequeue_core::TTL_MS_MAX + 1)));
    c.at(999);
    assert_eq!(c.state.lease_count(), 1);
    c.at(1_000);
    assert_eq!(c.state.lease_count(), 0);
}

#[test]
fn release_is_idempotent() {
    let mut c = check(&[("r", ResourceConfig::concurrency(1))]);
    let l = c.lease("r", 1);
    assert_eq!(c.release(l, None), Outcome::Released { already: false });
    assert_eq!(c.release(l, None), Outcome::Released { already: true });
    assert_eq!(c.release(l, Some(5)), Outcome::Released { already: true });
    assert_eq!(
        c.renew(l, None),
        Outcome::Rejected(Rejection::LeaseReleased)
    );
    // A released lease never comes back to life by time passing.
    c.at(TOMBSTONE_WINDOW_MS - 1);
    assert_eq!(c.release(l, None), Outcome::Released { already: true });
    assert_eq!(c.state.lease_count(), 0);
}

/// Ended leases are remembered for `TOMBSTONE_WINDOW_MS` of cluster time from their
/// end; after that a release or renew is answered `lease_expired` (the holder must stop)
/// and a forged id the same (its nonce is forgotten too). Time alone does it: the
/// tombstone goes at the first entry past the window, whatever the entry carries.
#[test]
fn ended_leases_are_forgotten_after_the_window() {
    let mut c = check(&[("r", ResourceConfig::concurrency(3))]);
    c.at(1_000);
    let released = c.lease_ttl("r", 1, 10_000);
    let expiring = c.lease_ttl("r", 1, 500);
    let held = c.lease_ttl("r", 1, 3_600_000);
    c.at(1_500);
    c.at(2_000);
    assert_eq!(
        c.release(released, None),
        Outcome::Released { already: false }
    );
    // `expiring` ended at 1 500 (the entry that reached its expiry), `released` at 2 000.
    c.at(1_500 + TOMBSTONE_WINDOW_MS - 1);
    assert_eq!(c.release(expiring, None), expired());
    assert_eq!(
        c.renew(released, None),
        Outcome::Rejected(Rejection::LeaseReleased)
    );
    c.at(1_500 + TOMBSTONE_WINDOW_MS);
    assert_eq!(
        c.release(expiring, None),
        expired(),
        "forgotten: still expired"
    );
    assert_eq!(
        c.release(released, None),
        Outcome::Released { already: true }
    );
    c.at(2_000 + TOMBSTONE_WINDOW_MS);
    assert_eq!(
        c.release(released, None),
        expired(),
        "forgotten: now expired"
    );
    assert_eq!(c.renew(released, None), expired());
    let forged = LeaseId {
        token: released.token,
        nonce: released.nonce ^ 1,
    };
    assert_eq!(c.release(forged, None), expired());
    // A live lease is never forgotten, however old.
    assert_eq!(c.release(held, None), Outcome::Released { already: false });
    c.state.check_invariants().unwrap();
}

#[test]
fn wrong_nonce_or_never_issued_is_not_found() {
    let mut c = check(&[("r", ResourceConfig::concurrency(3))]);
    let live = c.lease_ttl("r", 1, 1_000);
    let released = c.lease_ttl("r", 1, 1_000);
    let expiring = c.lease_ttl("r", 1, 500);
    c.release(released, None);
    c.at(500);
    let forged = |l: LeaseId| LeaseId {
        token: l.token,
        nonce: l.nonce ^ 1,
    };
    for l in [live, released, expiring] {
        assert_eq!(c.release(forged(l), None), not_found(), "{l}");
        assert_eq!(c.renew(forged(l), None), not_found(), "{l}");
        assert_eq!(c.state.lease_resource(forged(l)), None);
    }
    // A forged id changed nothing.
    assert_eq!(c.state.lease_count(), 1);
    assert_eq!(
        c.release(released, None),
        Outcome::Released { already: true }
    );
    assert_eq!(c.release(expiring, None), expired());
    let never = LeaseId {
        token: c.state.next_token(),
        nonce: live.nonce,
    };
    assert_eq!(c.release(never, None), not_found());
    assert_eq!(c.renew(never, None), not_found());
    let zero = LeaseId { token: 0, nonce: 0 };
    assert_eq!(c.release(zero, None), not_found());
    assert_eq!(c.release(live, None), Outcome::Released { already: false });
}

#[test]
fn lease_ids_round_trip_as_text() {
    let mut c = check(&[("r", ResourceConfig::concurrency(1))]);
    let lease = granted(c.acquire("r", 1));
    let text = lease.id.to_string();
    assert_eq!(text.parse::<LeaseId>(), Ok(lease.id));
    let max = LeaseId {
        token: u64::MAX,
        nonce: u64::MAX,
    };
    assert_eq!(max.to_string().parse::<LeaseId>(), Ok(max));
    for bad in [
        "",
        "-",
        "1",
        "1-",
        "-0000000000000001",
        "x-0000000000000001",
        "1-000000000000001",
        "1-00000000000000001",
        "1-000000000000000g",
        "1-0000000000000001-",
        "18446744073709551616-0000000000000001",
    ] {
        assert!(bad.parse::<LeaseId>().is_err(), "{bad:?}");
    }
}

#[test]
fn expiry_follows_cluster_time_which_never_goes_back() {
    let mut c = check(&[("r", ResourceConfig::concurrency(1))]);
    c.at(5_000);
    // An entry stamped earlier (a stale stamp) applies at 5 000, not 1 000.
    let g = crate::check::grant_cmd("r", 1, 77);
    let g = ratequeue_core::Grant { ttl_ms: 1_000, ..g };
    let l = granted(c.apply_at(1_000, ratequeue_core::Command::Grant(g))).id;
    assert_eq!(c.now(), 5_000);
    c.at(5_999);
    assert_eq!(c.state.lease_count(), 1);
    c.at(3_000);
    assert_eq!(c.now(), 5_999);
    c.at(6_000);
    assert_eq!(c.release(l, None), expired());
}

#[test]
fn expiry_frees_concurrency_in_the_same_entry() {
    // The entry that reaches the expiry time also grants: tick happens before commands.
    let mut c = check(&[("r", ResourceConfig::concurrency(1))]);
    c.lease_ttl("r", 1, 1_000);
    let g = crate::check::grant_cmd("r", 1, 99);
    let out = c
        .state
        .apply_entry(1_000, &[ratequeue_core::Command::Grant(g)]);
    granted(out[0].clone());
}

#[test]
fn a_lease_keeps_its_holder_label_and_grant_time_through_renewals_and_snapshots() {
    let mut c = check(&[("r", ResourceConfig::concurrency(3))]);
    c.at(1_000);
    let g = Grant {
        holder: Some("celery@worker-3 pid 41".into()),
        owner: Some("workers".into()),
        ttl_ms: 5_000,
        ..c.req("r", 7)
    };
    let a = granted(c.grant(g)).id;
    c.at(2_000);
    let b = c.lease_ttl("r", 1, 1_000);
    c.at(2_500);
    assert!(matches!(c.renew(a, Some(10_000)), Outcome::Renewed { .. }));
    let held: Vec<HeldLease> = c.state.held("r").collect();
    assert_eq!(
        held,
        vec![
            HeldLease {
                token: b.token,
                lane: "default".into(),
                load: 1,
                holder: None,
                owner: None,
                granted_at_ms: 2_000,
                expires_at_ms: 3_000,
            },
            HeldLease {
                token: a.token,
                lane: "default".into(),
                load: 7,
                holder: Some("celery@worker-3 pid 41".into()),
                owner: Some("workers".into()),
                granted_at_ms: 1_000,
                expires_at_ms: 12_500,
            },
        ],
        "soonest expiry first; a renewal moves only the expiry"
    );
    let back = State::restore(&c.state.snapshot()).unwrap();
    assert_eq!(back.held("r").collect::<Vec<_>>(), held);
    assert_eq!(c.state.held("nope").count(), 0);
    assert_eq!(c.release(b, None), Outcome::Released { already: false });
    assert_eq!(c.state.held("r").count(), 1);
}

#[test]
fn a_holder_label_must_be_short_printable_ascii() {
    let mut c = check(&[("r", ResourceConfig::concurrency(10))]);
    for bad in [
        String::new(),
        "x".repeat(ratequeue_core::HOLDER_LEN_MAX + 1),
        "tab\there".into(),
        "new\nline".into(),
        "caf\u{e9}".into(),
        "\u{202e}reversed".into(),
    ] {
        let g = Grant {
            holder: Some(bad.clone()),
            ..c.req("r", 1)
        };
        invalid(c.grant(g));
    }
    assert_eq!(c.state.lease_count(), 0);
    assert_eq!(c.state.next_token(), 1, "refusals consume no fencing token");
    for good in [
        "x".repeat(ratequeue_core::HOLDER_LEN_MAX),
        " ~!@#$%^&*()".into(),
    ] {
        let g = Grant {
            holder: Some(good),
            ..c.req("r", 1)
        };
        granted(c.grant(g));
    }
}
