//! Request and load buckets: capacity `limit`, continuous refill at `limit / window_ms`,
//! exact integer math.

use proptest::prelude::*;
use ratequeue_core::bucket::Bucket;
use ratequeue_core::LimitKind;

use crate::check::{check, limits, loads, no_room, requests};

#[test]
fn a_full_bucket_allows_a_burst_of_limit_then_refills_continuously() {
    let mut c = check(&[("r", limits(None, &[requests(10, 1_000)]))]);
    assert_eq!(c.drain("r", 1), 10, "burst of limit");
    assert_eq!(no_room(c.acquire("r", 1)), (100, LimitKind::Request));
    c.at(99);
    assert_eq!(no_room(c.acquire("r", 1)), (1, LimitKind::Request));
    c.at(100);
    assert_eq!(c.drain("r", 1), 1);
    c.at(350);
    assert_eq!(c.drain("r", 1), 2, "2.5 tokens refilled: 2 whole ones");
    assert_eq!(no_room(c.acquire("r", 1)).0, 50, "the half token counts");
    // Idle for a long time: the bucket caps at its capacity, the burst is limit again.
    c.at(1_000_000);
    assert_eq!(c.remaining("r"), vec![10]);
    assert_eq!(c.drain("r", 1), 10);
}

#[test]
fn load_buckets_charge_the_load() {
    let mut c = check(&[("r", limits(None, &[loads(1_000, 60_000)]))]);
    c.lease("r", 600);
    assert_eq!(c.remaining("r"), vec![400]);
    // 100 tokens missing at 1000 per minute = 6 s.
    assert_eq!(no_room(c.acquire("r", 500)), (6_000, LimitKind::Load));
    c.lease("r", 400);
    assert_eq!(c.remaining("r"), vec![0]);
    c.at(6_000);
    assert_eq!(c.remaining("r"), vec![100]);
    c.lease("r", 100);
}

/// A greedy client retrying every millisecond gets exactly `limit + ⌊limit·t / window⌋`
/// grants by time `t`: no drift, no rounding in its favour or against it.
#[test]
fn refill_is_exact_over_long_runs() {
    for (limit, window) in [
        (3u64, 1_000u64),
        (7, 333),
        (1, 1),
        (50, 7),
        (13, 60_000),
        (2, 3),
    ] {
        let mut c = check(&[("r", limits(None, &[requests(limit, window)]))]);
        let mut total = 0u64;
        for t in 0..=5_000u64 {
            c.at(t);
            total += c.drain("r", 1);
            let want = limit + (u128::from(limit) * u128::from(t) / u128::from(window)) as u64;
            assert_eq!(total, want, "limit {limit} window {window} t {t}");
        }
    }
}

#[test]
fn first_tokens_of_a_fractional_rate_come_at_the_exact_millisecond() {
    // 3 per second: the tokens after a burst come at 334, 667 and 1000 ms.
    let mut c = check(&[("r", limits(None, &[requests(3, 1_000)]))]);
    assert_eq!(c.drain("r", 1), 3);
    let mut at = Vec::new();
    for t in 1..=1_000 {
        c.at(t);
        if c.drain("r", 1) > 0 {
            at.push(t);
        }
    }
    assert_eq!(at, vec![334, 667, 1_000]);
}

#[test]
fn extreme_limits_do_not_overflow() {
    let big = ratequeue_core::LIMIT_MAX;
    let w = ratequeue_core::WINDOW_MS_MAX;
    let mut c = check(&[("r", limits(None, &[loads(big, w), requests(big, 1)]))]);
    c.lease("r", big);
    assert_eq!(c.remaining("r"), vec![0, i64::try_from(big).unwrap() - 1]);
    assert_eq!(no_room(c.acquire("r", big)), (w, LimitKind::Load));
    c.at(u64::MAX / 2);
    assert_eq!(c.remaining("r")[0], i64::try_from(big).unwrap());
}

/// The smallest `d` such that `tokens` fit `d` ms from now, by scanning.
fn wait_by_scan(b: &Bucket, rl: &ratequeue_core::RateLimit, now: u64, tokens: u64) -> u64 {
    (0..).find(|&d| b.fits(rl, now + d, tokens)).unwrap()
}

#[test]
fn wait_ms_is_the_first_millisecond_that_fits() {
    for limit in 1..=6u64 {
        for window in 1..=9u64 {
            let rl = requests(limit, window);
            for taken in 0..=limit {
                for debt in 0..=3u64 {
                    let mut b = Bucket::full(&rl, 0);
                    b.charge(&rl, 0, taken + debt);
                    for now in 0..=2 * window {
                        for tokens in 0..=limit {
                            let want = wait_by_scan(&b, &rl, now, tokens);
                            assert_eq!(b.wait_ms(&rl, now, tokens), want);
                            assert_eq!(b.fits(&rl, now, tokens), want == 0);
                        }
                    }
                }
            }
        }
    }
}

proptest! {
    /// Against a naive bucket: tokens as an exact fraction (u128 numerator over window),
    /// refilled by a per-millisecond loop.
    #[test]
    fn bucket_matches_a_millisecond_by_millisecond_model(
        limit in 1u64..40,
        window in 1u64..400,
        ops in prop::collection::vec((0u64..300, 0u64..45, any::<bool>()), 1..40),
    ) {
        let rl = requests(limit, window);
        let mut b = Bucket::full(&rl, 0);
        // Model level in 1/window tokens; may go negative through forced charges.
        let cap = i128::from(limit) * i128::from(window);
        let mut level = cap;
        let mut now = 0u64;
        for (dt, tokens, force) in ops {
            for _ in 0..dt {
                level = (level + i128::from(limit)).min(cap);
            }
            now += dt;
            let need = i128::from(tokens) * i128::from(window);
            prop_assert_eq!(b.fits(&rl, now, tokens), level >= need);
            prop_assert_eq!(
                i128::from(b.remaining(&rl, now)),
                level.div_euclid(i128::from(window))
            );
            if level >= need || force {
                b.charge(&rl, now, tokens);
                level -= need;
            }
        }
    }
}

#[test]
fn remaining_reports_whole_tokens_rounding_debt_down() {
    let rl = loads(10, 1_000);
    let mut b = Bucket::full(&rl, 0);
    b.charge(&rl, 0, 15);
    assert_eq!(b.remaining(&rl, 0), -5);
    assert_eq!(b.remaining(&rl, 50), -5, "-4.5 tokens is not -4");
    assert_eq!(b.remaining(&rl, 100), -4);
    b.credit(&rl, 100, 1_000);
    assert_eq!(b.remaining(&rl, 100), 10, "credit caps at capacity");
}
