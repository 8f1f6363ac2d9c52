//! Checker 7: after the final heal, acquires succeed again within a bound.
//!
//! From the `heal_all` record (every fault healed: processes resumed or restarted,
//! iptables flushed, membership restored), the first acquire *invoked* after it that
//! completes `ok` must complete within `Config::liveness_bound_ms`. Workloads keep
//! running through a recovery phase after the heal, so a live cluster always has
//! attempts to show.

use serde_json::json;

use super::{Config, Verdict};
use crate::history::{heal_all_ms, pairs, Op, F};

/// Milliseconds from `t` to the first ok of an acquire invoked at or after `t`.
pub fn recovery_ms(history: &[Op], t: f64) -> Option<f64> {
    pairs(history)
        .iter()
        .filter(|p| p.invoke.f == F::Acquire && p.invoke.is_client() && p.invoke.time_ms >= t)
        .filter(|p| p.is_ok())
        .map(|p| p.done_ms() - t)
        .min_by(f64::total_cmp)
}

pub fn check(history: &[Op], cfg: &Config) -> Verdict {
    let Some(heal) = heal_all_ms(history) else {
        return Verdict::new(
            "7-liveness",
            false,
            "unknown: the run never healed".into(),
            json!({}),
        );
    };
    let attempts = pairs(history)
        .iter()
        .filter(|p| p.invoke.f == F::Acquire && p.invoke.is_client() && p.invoke.time_ms >= heal)
        .count();
    match recovery_ms(history, heal) {
        Some(r) if r <= cfg.liveness_bound_ms => Verdict::new(
            "7-liveness",
            true,
            format!(
                "acquires succeeded {r:.0} ms after the final heal (bound {:.0} ms)",
                cfg.liveness_bound_ms
            ),
            json!({"heal_ms": heal, "recovery_ms": r, "bound_ms": cfg.liveness_bound_ms, "attempts_after_heal": attempts}),
        ),
        Some(r) => Verdict::new(
            "7-liveness",
            false,
            format!(
                "first acquire succeeded {r:.0} ms after the final heal, over the {:.0} ms bound",
                cfg.liveness_bound_ms
            ),
            json!({"heal_ms": heal, "recovery_ms": r, "bound_ms": cfg.liveness_bound_ms, "attempts_after_heal": attempts}),
        ),
        None => Verdict::new(
            "7-liveness",
            false,
            format!("no acquire succeeded after the final heal ({attempts} attempts)"),
            json!({"heal_ms": heal, "bound_ms": cfg.liveness_bound_ms, "attempts_after_heal": attempts}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::H;
    use crate::history::{Type, NEMESIS};

    fn healed_at(t: f64) -> H {
        let mut h = H::new();
        h.op(t, Op::new(NEMESIS, Type::Info, F::HealAll));
        h
    }

    #[test]
    fn no_success_or_a_slow_one_fails() {
        let cfg = Config {
            liveness_bound_ms: 5_000.0,
            ..Config::default()
        };
        let mut h = healed_at(1_000.0);
        // Succeeded, but invoked before the heal: not evidence of recovery.
        h.acquire(
            1,
            900.0,
            1_100.0,
            Type::Ok,
            "sem-0",
            "a",
            Some(("1-a", 1)),
            30_000,
        );
        h.acquire(2, 1_100.0, 3_100.0, Type::Info, "sem-0", "b", None, 30_000);
        h.acquire(3, 3_200.0, 3_300.0, Type::Fail, "sem-0", "c", None, 30_000);
        assert!(!check(&h.done(), &cfg).valid);
        h.acquire(
            4,
            5_000.0,
            7_000.0,
            Type::Ok,
            "sem-0",
            "d",
            Some(("2-d", 2)),
            30_000,
        );
        let v = check(&h.done(), &cfg);
        assert!(!v.valid, "{v:?}");
        assert!(
            !check(&H::new().done(), &cfg).valid,
            "never healed is not a pass"
        );
    }

    #[test]
    fn a_success_within_the_bound_passes() {
        let cfg = Config {
            liveness_bound_ms: 5_000.0,
            ..Config::default()
        };
        let mut h = healed_at(1_000.0);
        h.acquire(2, 1_100.0, 3_100.0, Type::Info, "sem-0", "b", None, 30_000);
        h.acquire(
            3,
            3_200.0,
            3_900.0,
            Type::Ok,
            "sem-0",
            "c",
            Some(("1-c", 1)),
            30_000,
        );
        let v = check(&h.done(), &cfg);
        assert!(v.valid, "{v:?}");
        assert_eq!(v.details["recovery_ms"], 2_900.0);
    }
}
