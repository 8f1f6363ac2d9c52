//! The bounded idempotency window: a granted `request_id` answers with the same lease.

use ratequeue_core::{
    Command, Grant, Outcome, Rejection, RequestKey, ResourceConfig, IDEMPOTENCY_WINDOW_MS,
    TOMBSTONE_WINDOW_MS, TTL_MS_MAX,
};

use crate::check::{check, granted, invalid, Check};

/// The admin token's `request_id` on resource `r`.
fn rk(id: &str) -> RequestKey {
    RequestKey {
        owner: None,
        resource: "r".into(),
        request_id: id.into(),
    }
}

fn with_id(c: &mut Check, id: &str) -> Grant {
    Grant {
        request_id: Some(id.into()),
        ..c.req("r", 1)
    }
}

#[test]
fn a_duplicate_request_id_returns_the_same_lease_and_grants_nothing() {
    let mut c = check(&[("r", ResourceConfig::concurrency(2))]);
    let g = with_id(&mut c, "req-1");
    let first = granted(c.grant(g.clone()));
    let tokens = c.state.next_token();
    // Retried with another nonce (the shell drew a new one): still the first lease.
    let retry = Grant {
        nonce: g.nonce + 1,
        ..g.clone()
    };
    let Outcome::Granted {
        lease,
        duplicate,
        limits,
        shadow: None,
    } = c.grant(retry)
    else {
        panic!()
    };
    assert!(duplicate);
    assert_eq!(lease, first);
    assert_eq!(limits, c.state.limits("r"));
    assert_eq!(c.state.lease_count(), 1);
    assert_eq!(c.state.next_token(), tokens);
    assert_eq!(c.remaining("r"), vec![1]);
    assert_eq!(c.state.granted_request(&rk("req-1")), Some(&first));
    // Even when the resource is full, the duplicate is answered, not refused.
    c.lease("r", 1);
    assert!(matches!(
        c.grant(g.clone()),
        Outcome::Granted {
            duplicate: true,
            ..
        }
    ));
    // After the lease ended (here released; in the cluster, say, by the leader because
    // the first attempt's client went away), a retry must not be told it holds it, and
    // must not get a second lease either.
    c.release(first.id, None);
    assert_eq!(c.grant(g), Outcome::Rejected(Rejection::GrantEnded));
    assert_eq!(c.state.lease_count(), 1);
}

#[test]
fn the_window_is_ten_minutes_of_cluster_time() {
    let mut c = check(&[("r", ResourceConfig::concurrency(10))]);
    c.at(1_000);
    let g = Grant {
        ttl_ms: TTL_MS_MAX,
        ..with_id(&mut c, "req-1")
    };
    let first = granted(c.grant(g.clone()));
    c.at(1_000 + IDEMPOTENCY_WINDOW_MS - 1);
    assert!(matches!(
        c.grant(g.clone()),
        Outcome::Granted {
            duplicate: true,
            ..
        }
    ));
    c.at(1_000 + IDEMPOTENCY_WINDOW_MS);
    assert_eq!(c.state.granted_request(&rk("req-1")), None);
    let Outcome::Granted {
        lease, duplicate, ..
    } = c.grant(g)
    else {
        panic!()
    };
    assert!(!duplicate);
    assert!(lease.id.token > first.id.token);
}

#[test]
fn duplicates_inside_one_entry() {
    let mut c = check(&[("r", ResourceConfig::concurrency(10))]);
    let g = with_id(&mut c, "x");
    let out = c
        .state
        .apply_entry(0, &[Command::Grant(g.clone()), Command::Grant(g)]);
    let a = granted(out[0].clone());
    assert!(matches!(&out[1], Outcome::Granted { lease, duplicate: true, .. } if *lease == a));
    assert_eq!(c.state.lease_count(), 1);
}

#[test]
fn refused_requests_are_not_remembered() {
    let mut c = check(&[("r", ResourceConfig::concurrency(1))]);
    c.lease("r", 1);
    let g = with_id(&mut c, "x");
    assert!(matches!(
        c.grant(g.clone()),
        Outcome::Rejected(Rejection::NoRoom { .. })
    ));
    assert_eq!(c.state.granted_request(&rk("x")), None);
}

#[test]
fn request_ids_are_bounded() {
    let mut c = check(&[("r", ResourceConfig::concurrency(10))]);
    let empty = with_id(&mut c, "");
    invalid(c.grant(empty));
    let long = with_id(&mut c, &"x".repeat(129));
    invalid(c.grant(long));
    let ok = with_id(&mut c, &"x".repeat(128));
    granted(c.grant(ok));
}

/// Issue 15, observation 1: a `request_id` is scoped to (key, resource). Key A's
/// `job-1` on `other` and key B's `job-1` on `demo` are two requests with two leases;
/// the same key reusing an id on another resource is another request too.
#[test]
fn request_ids_are_scoped_to_key_and_resource() {
    let mut c = check(&[
        ("demo", ResourceConfig::concurrency(10)),
        ("other", ResourceConfig::concurrency(10)),
    ]);
    let grant = |c: &mut Check, owner: &str, resource: &str| Grant {
        request_id: Some("job-1".into()),
        owner: Some(owner.into()),
        ..c.req(resource, 1)
    };
    let a = grant(&mut c, "a", "other");
    let b = grant(&mut c, "b", "demo");
    let a_other = granted(c.grant(a));
    let b_demo = c.grant(b);
    let Outcome::Granted {
        lease, duplicate, ..
    } = b_demo
    else {
        panic!("{b_demo:?}")
    };
    assert!(!duplicate, "key b must not get key a's lease");
    assert_eq!(lease.resource, "demo");
    assert_ne!(lease.id, a_other.id);
    // The same id from key b on `other`, and from key a on `demo`: new requests too.
    let b_other = grant(&mut c, "b", "other");
    let a_demo = grant(&mut c, "a", "demo");
    for g in [b_other, a_demo] {
        let resource = g.resource.clone();
        let lease = granted(c.grant(g));
        assert_eq!(lease.resource, resource);
        assert_ne!(lease.id, a_other.id);
    }
    assert_eq!(c.state.lease_count(), 4);
    // ...while key a retrying on `other` gets its first lease back.
    let retry = grant(&mut c, "a", "other");
    assert!(
        matches!(c.grant(retry), Outcome::Granted { lease, duplicate: true, .. } if lease == a_other)
    );
}

/// A retry must ask for the same lane, load and TTL; any other reuse of the id is
/// refused and changes nothing.
#[test]
fn a_reuse_with_other_parameters_is_refused() {
    let mut c = check(&[("r", ResourceConfig::concurrency(10))]);
    let g = with_id(&mut c, "job-1");
    granted(c.grant(g.clone()));
    let tokens = c.state.next_token();
    for other in [
        Grant {
            load: 2,
            ..g.clone()
        },
        Grant {
            lane: "batch".into(),
            ..g.clone()
        },
        Grant {
            ttl_ms: g.ttl_ms + 1,
            ..g.clone()
        },
    ] {
        assert_eq!(
            c.grant(other),
            Outcome::Rejected(Rejection::RequestIdReused)
        );
    }
    assert_eq!(c.state.next_token(), tokens);
    assert_eq!(c.state.lease_count(), 1);
    c.state.check_invariants().unwrap();
}

/// `table_sizes` counts what each table holds: a lease is in `leases` and `expiry`, its
/// end leaves a tombstone (in the map and its order), its request id stays in the window;
/// each is forgotten after its own window of cluster time.
#[test]
fn table_sizes_follow_grants_ends_and_their_windows() {
    let size = |c: &Check, table: &str| {
        c.state
            .table_sizes()
            .iter()
            .find(|(t, _)| *t == table)
            .unwrap_or_else(|| panic!("no table {table}"))
            .1
    };
    let mut c = check(&[("r", ResourceConfig::concurrency(10))]);
    c.at(1_000);
    assert_eq!(size(&c, "resources"), 1);
    let g = with_id(&mut c, "req-1");
    let first = granted(c.grant(g));
    c.lease_ttl("r", 1, TTL_MS_MAX);
    for t in ["leases", "expiry"] {
        assert_eq!(size(&c, t), 2, "{t}");
    }
    for t in ["request_ids", "request_id_order"] {
        assert_eq!(size(&c, t), 1, "{t}");
    }
    assert_eq!(size(&c, "tombstones"), 0);
    c.release(first.id, None);
    for (t, n) in [
        ("leases", 1),
        ("expiry", 1),
        ("tombstones", 1),
        ("tombstone_order", 1),
        ("request_ids", 1),
    ] {
        assert_eq!(size(&c, t), n, "{t}");
    }
    c.at(1_000 + TOMBSTONE_WINDOW_MS);
    assert_eq!(size(&c, "tombstones"), 0);
    assert_eq!(size(&c, "tombstone_order"), 0);
    assert_eq!(size(&c, "request_ids"), 1);
    c.at(1_000 + IDEMPOTENCY_WINDOW_MS);
    assert_eq!(size(&c, "request_ids"), 0);
    assert_eq!(size(&c, "request_id_order"), 0);
}
