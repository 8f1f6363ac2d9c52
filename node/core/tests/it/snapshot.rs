//! Determinism (DESIGN.md §7.3): same log, byte-identical snapshots; snapshot, restore
//! and continue equals never snapshotting; bad snapshot bytes are refused.

use proptest::prelude::*;
use ratequeue_core::state::SnapshotError;
use ratequeue_core::{Outcome, State};

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
    for v in [0u8, version - 1, version + 1, 255] {
        let mut bad = good.clone();
        bad[0] = v;
        assert!(
            matches!(State::restore(&bad), Err(SnapshotError::Version(x)) if x == v),
            "version {v}"
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

/// Version 4 (lease owners, idempotency by key and resource, key scopes) changed the
/// layout: a version-3 snapshot is refused by its version byte, never decoded as
/// garbage (docs/operations.md, "Upgrading").
#[test]
fn a_snapshot_of_the_previous_layout_is_refused_by_version() {
    use ratequeue_core::state::SNAPSHOT_VERSION;
    assert_eq!(SNAPSHOT_VERSION, 4);
    let mut old = fixed_state().snapshot();
    old[0] = 3;
    let e = State::restore(&old).unwrap_err();
    assert!(matches!(e, SnapshotError::Version(3)), "{e}");
    assert!(e.to_string().contains("version 3 is not supported"), "{e}");
}
