//! Determinism (DESIGN.md §7.3): same log, byte-identical snapshots; snapshot, restore
//! and continue equals never snapshotting; bad snapshot bytes are refused.

use proptest::prelude::*;
use ratequeue_core::state::SnapshotError;
use ratequeue_core::{Command, LeaseId, Outcome, Rejection, State, TOMBSTONE_WINDOW_MS};

use crate::model::{build_log, steps};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn replicas_applying_the_same_log_have_identical_snapshots(steps in steps()) {
        let (log, _, _) = build_log(&steps);
        let mut a = State::new();
        let mut b = State::new();
        for (t, commands) in &log {
            let oa = a.apply_entry(*t, commands);
            let ob = b.apply_entry(*t, commands);
            prop_assert_eq!(oa, ob);
            prop_assert_eq!(a.snapshot(), b.snapshot());
        }
    }

    /// A replica that restarts from a snapshot at any point and applies the rest of the
    /// log ends byte-identical to one that never stopped, with the same outcomes.
    #[test]
    fn snapshot_restore_continue_equals_no_snapshot(
        steps in steps(),
        cut in any::<prop::sample::Index>(),
        second in any::<prop::sample::Index>(),
    ) {
        let (log, _, _) = build_log(&steps);
        let cut = cut.index(log.len() + 1);
        let second = cut + second.index(log.len() - cut + 1);
        let mut straight = State::new();
        let mut restarted = State::new();
        let mut outcomes: Vec<Vec<Outcome>> = Vec::new();
        for (t, commands) in &log {
            outcomes.push(straight.apply_entry(*t, commands));
        }
        for (i, (t, commands)) in log.iter().enumerate() {
            if i == cut || i == second {
                let bytes = restarted.snapshot();
                let back = State::restore(&bytes).unwrap();
                prop_assert_eq!(&back, &restarted);
                prop_assert_eq!(back.snapshot(), bytes);
                restarted = back;
            }
            prop_assert_eq!(&restarted.apply_entry(*t, commands), &outcomes[i]);
        }
        prop_assert_eq!(restarted.snapshot(), straight.snapshot());
    }
}

#[test]
fn restore_refuses_empty_wrong_version_and_garbage() {
    let s = fixed_state();
    assert!(s.lease_count() > 0, "a non-trivial state");
    let good = s.snapshot();
    assert_eq!(State::restore(&good).unwrap(), s);

    assert!(matches!(State::restore(&[]), Err(SnapshotError::Empty)));
    let version = good[0];
    // 4, 5 and 6 are still read (and a current body does not decode as them).
    for v in [0u8, 1, 2, 3, version + 1, 255] {
        let mut bad = good.clone();
        bad[0] = v;
        assert!(
            matches!(State::restore(&bad), Err(SnapshotError::Version(x)) if x == v),
            "version {v}"
        );
    }
    for v in [4, 5, 6] {
        let mut older = good.clone();
        older[0] = v;
        assert!(
            matches!(State::restore(&older), Err(SnapshotError::Decode(_))),
            "a current body read as version {v}"
        );
    }
    assert!(matches!(
        State::restore(&[version]),
        Err(SnapshotError::Decode(_))
    ));
    let mut text = vec![version];
    text.extend_from_slice(b"not a snapshot at all, just text");
    assert!(matches!(
        State::restore(&text),
        Err(SnapshotError::Decode(_))
    ));
    // Every truncation fails.
    for len in 1..good.len() {
        assert!(State::restore(&good[..len]).is_err(), "truncated to {len}");
    }
    // Trailing bytes are not silently ignored.
    let mut long = good.clone();
    long.push(0);
    assert!(State::restore(&long).is_err(), "trailing byte accepted");
    // A snapshot of a new state restores to a new state.
    assert_eq!(
        State::restore(&State::new().snapshot()).unwrap(),
        State::new()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Flipped bytes and huge length prefixes either fail to decode or decode to a
    /// state that is internally consistent (restore checks it): never a panic, an
    /// abort on a huge allocation, or a state that hangs later.
    #[test]
    fn restore_never_panics_on_corrupted_bytes(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        huge in prop::option::of((any::<prop::sample::Index>(), 251u8..=254)),
    ) {
        let mut bytes = fixed_state().snapshot();
        for (i, b) in flips {
            let i = 1 + i.index(bytes.len() - 1);
            bytes[i] ^= b;
        }
        if let Some((i, marker)) = huge {
            // A bincode varint marker followed by all ones: the largest u16..u128.
            let i = 1 + i.index(bytes.len() - 1);
            let end = (i + 17).min(bytes.len());
            bytes[i] = marker;
            bytes[i + 1..end].fill(0xFF);
        }
        if let Ok(mut r) = State::restore(&bytes) {
            prop_assert_eq!(r.check_invariants(), Ok(()));
            let _ = r.snapshot();
            r.tick(r.now_ms().saturating_add(1_000_000));
            for name in crate::model::RESOURCES {
                let _ = r.limits(name);
            }
        }
    }
}

fn fixed_state() -> State {
    let (log, _, _) = build_log(&crate::model::steps_fixed());
    let mut s = State::new();
    for (t, commands) in &log {
        s.apply_entry(*t, commands);
    }
    s
}

/// The bytes of a fixture written as hex (line breaks and indents ignored).
fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|d| u8::from_str_radix(std::str::from_utf8(d).unwrap(), 16).unwrap())
        .collect()
}

/// What remains of resource `r`'s load bucket.
fn load(s: &State) -> i64 {
    s.limits("r")
        .iter()
        .find(|l| l.kind == ratequeue_core::LimitKind::Load)
        .unwrap()
        .remaining
}

/// An upgraded state snapshots again in the current format and restores to itself.
fn snapshots_again_as_version_7(s: &State) {
    let again = s.snapshot();
    assert_eq!(again[0], 8, "re-snapshotted in the current format");
    assert_eq!(&State::restore(&again).unwrap(), s);
}

/// Version 4 is the last layout before tombstones carried an end time; anything older
/// (lease owners, idempotency by key and resource, key scopes came in 4) is refused by
/// its version byte, never decoded as garbage (docs/operations.md, "Upgrading").
#[test]
fn a_snapshot_older_than_version_4_is_refused_by_version() {
    use ratequeue_core::state::SNAPSHOT_VERSION;
    assert_eq!(SNAPSHOT_VERSION, 8);
    let mut old = fixed_state().snapshot();
    old[0] = 3;
    let e = State::restore(&old).unwrap_err();
    assert!(matches!(e, SnapshotError::Version(3)), "{e}");
    assert!(e.to_string().contains("version 3 is not supported"), "{e}");
}

/// A version 4 snapshot (made by the build before tombstones carried an end time) is
/// still restored: its tombstones count as ended at the snapshot's cluster time, so
/// they answer exactly for one more window, and the state snapshots again as the
/// current version.
#[test]
fn a_version_4_snapshot_is_restored_and_upgraded() {
    // Made by the version-4 build: resource "r" (concurrency 10, put at 1 000); grants
    // at 2 000 of tokens 1..=3 (nonces 11..=13, request ids q11..q13, holders w11..w13,
    // owners alice / admin / bob, ttl 5 000); at 3 000 token 1 released and token 3
    // renewed for 60 000; ticked to 8 000, so token 2 expired at 7 000.
    const V4: &str = "04fb401f04010172010a0000fb3075fb10270001fb18f6030301030d01720764656661756c74\
        01fb60eafb18f6fbd00701037731330103626f6201fb18f6030201000b02010c0300017203713132020c\
        01720764656661756c7401fb8813fbd0070105616c696365017203713131010b01720764656661756c74\
        01fb8813fbd0070103626f62017203713133030d01720764656661756c7401fb8813fbd007030105616c\
        696365017203713131000172037131320103626f620172037131330000";
    let mut s = State::restore(&hex(V4)).unwrap();
    assert_eq!((s.now_ms(), s.next_token(), s.lease_count()), (8_000, 4, 1));
    let id = |token, nonce| LeaseId { token, nonce };
    let release = |s: &mut State, l| {
        s.apply_command(&Command::Release {
            lease: l,
            actual_load: None,
        })
    };
    assert_eq!(
        release(&mut s, id(1, 11)),
        Outcome::Released { already: true }
    );
    assert_eq!(
        release(&mut s, id(2, 12)),
        Outcome::Rejected(Rejection::LeaseExpired)
    );
    assert_eq!(
        release(&mut s, id(1, 99)),
        Outcome::Rejected(Rejection::LeaseNotFound)
    );
    assert_eq!(
        release(&mut s, id(3, 13)),
        Outcome::Released { already: false }
    );
    snapshots_again_as_version_7(&s);
    s.tick(8_000 + TOMBSTONE_WINDOW_MS);
    assert_eq!(
        release(&mut s, id(1, 11)),
        Outcome::Rejected(Rejection::LeaseExpired)
    );
    assert_eq!(
        release(&mut s, id(3, 13)),
        Outcome::Rejected(Rejection::LeaseExpired),
        "released at 8 000 too: forgotten as well"
    );
}

/// A version 5 snapshot (made by the build before resources had a mode and leases a
/// charged flag) is restored with every resource enforced and every lease charged, so a
/// release still settles its `actual_load`.
#[test]
fn a_version_5_snapshot_is_restored_as_enforced_and_charged() {
    // Made by the version-5 build: resource "r" (concurrency 2, load 100 per 60 s, put
    // at 1 000); at 2 000 two grants of load 30 by alice (tokens 1, 2; nonces 11, 12;
    // ttl 5 000); at 3 000 token 1 released with actual_load 10.
    const V5: &str = "05fbb80b030101720102010164fb60ea00fb3075fb102701fc40ea7000fbb80b01fb581b\
        020201020c01720764656661756c741efb8813fb581bfbd007000105616c69636501fb581b0201010\
        00bfbb80b010100000000";
    let mut s = State::restore(&hex(V5)).unwrap();
    assert_eq!((s.now_ms(), s.next_token(), s.lease_count()), (3_000, 3, 1));
    assert_eq!(s.resource("r").unwrap().mode, ratequeue_core::Mode::Enforce);
    // 100 - 30 - 30 + 20 (settled) plus one second's refill (100 per 60 s): 61.
    assert_eq!(load(&s), 61);
    let out = s.apply_command(&Command::Release {
        lease: LeaseId {
            token: 2,
            nonce: 12,
        },
        actual_load: Some(0),
    });
    assert_eq!(out, Outcome::Released { already: false });
    assert_eq!(
        load(&s),
        91,
        "the restored lease was charged, so it settles"
    );
    snapshots_again_as_version_7(&s);
}

/// A version 6 snapshot (made by the build before feedback policies and provider
/// pauses) is restored with its modes and charged flags, no policy and no pause.
#[test]
fn a_version_6_snapshot_is_restored_without_feedback() {
    // Made by the version-6 build: dry-run resource "r" (concurrency 1, load 100 per
    // 60 s, put at 1 000); at 2 000 grants of load 30 by alice: token 1 (nonce 11, fits,
    // charged) and token 2 (nonce 12, try-once: would block on the slot, not charged);
    // at 3 000 token 1 released with actual_load 10.
    const V6: &str = "06fbb80b030101720101010164fb60ea00fb3075fb10270101fcc0d8a700fbb80b01fb58\
        1b020201020c01720764656661756c741efb8813fb581bfbd007000105616c6963650001fb581b0201\
        01000bfbb80b010100000000";
    let mut s = State::restore(&hex(V6)).unwrap();
    assert_eq!((s.now_ms(), s.next_token(), s.lease_count()), (3_000, 3, 1));
    let config = s.resource("r").unwrap().clone();
    assert_eq!(
        (config.mode, config.feedback),
        (ratequeue_core::Mode::DryRun, None)
    );
    // 100 - 30 + 20 (settled) plus one second's refill: 91; token 2 was never charged.
    assert_eq!(load(&s), 91);
    let out = s.apply_command(&Command::Release {
        lease: LeaseId {
            token: 2,
            nonce: 12,
        },
        actual_load: Some(0),
    });
    assert_eq!(out, Outcome::Released { already: false });
    assert_eq!(load(&s), 91, "an uncharged lease settles nothing");
    assert_eq!(s.fit("r", 1), ratequeue_core::Fit::Now, "not paused");
    snapshots_again_as_version_7(&s);
}

/// A version 7 snapshot (made by the build before leases kept their dry-run shadow) is
/// restored with its leases, charged flags and request ids; its leases have no shadow,
/// so a retry of their request ids is answered without one.
#[test]
fn a_version_7_snapshot_is_restored_without_shadows() {
    // Made by the version-7 build: dry-run resource "r" (concurrency 1, put at 1 000);
    // at 2 000 alice's grants of load 1, ttl 5 000, wait_ms 10 000: token 1 (nonce 11,
    // request id "q", shadow grant, charged) and token 2 (nonce 12, request id "w",
    // shadow wait 5 000 on the slot).
    const V7: &str = "07fbd0070301017201010000fb3075fb102701000002fb581b01fb581b0202000002010b0172\
        0764656661756c7401fb8813fb581bfbd007000105616c69636501020c01720764656661756c\
        7401fb8813fb581bfbd007000105616c6963650102fb581b01fb581b020000020105616c6963\
        6501720171010b01720764656661756c7401fb8813fbd0070105616c69636501720177020c01\
        720764656661756c7401fb8813fbd007020105616c696365017201710105616c696365017201\
        770000";
    let bytes: Vec<u8> = (0..V7.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&V7[i..i + 2], 16).unwrap())
        .collect();
    let mut s = State::restore(&bytes).unwrap();
    assert_eq!((s.now_ms(), s.next_token(), s.lease_count()), (2_000, 3, 2));
    assert_eq!(s.resource("r").unwrap().mode, ratequeue_core::Mode::DryRun);
    let retry = |nonce: u64, id: &str| {
        Command::Grant(ratequeue_core::Grant {
            resource: "r".into(),
            lane: "default".into(),
            load: 1,
            ttl_ms: 5_000,
            request_id: Some(id.into()),
            nonce,
            holder: None,
            owner: Some("alice".into()),
            wait_ms: 10_000,
        })
    };
    match s.apply_command(&retry(99, "w")) {
        Outcome::Granted {
            lease,
            duplicate: true,
            shadow: None,
            ..
        } => assert_eq!((lease.id.token, lease.id.nonce), (2, 12)),
        other => panic!("the first grant, without a shadow: {other:?}"),
    }
    // A new grant keeps its shadow, and a snapshot of format 8 keeps it for a retry.
    let fresh = s.apply_command(&retry(13, "z"));
    let Outcome::Granted {
        shadow: Some(shadow),
        ..
    } = fresh
    else {
        panic!("{fresh:?}")
    };
    let again = s.snapshot();
    assert_eq!(again[0], 8);
    let mut back = State::restore(&again).unwrap();
    assert_eq!(back, s);
    match back.apply_command(&retry(14, "z")) {
        Outcome::Granted {
            duplicate: true,
            shadow: kept,
            ..
        } => assert_eq!(kept, Some(shadow)),
        other => panic!("{other:?}"),
    }
}
