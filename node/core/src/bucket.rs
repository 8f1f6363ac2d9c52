//! Exact integer token buckets.
//!
//! A bucket of `limit` per `window_ms` is stored in *scaled units*: one token is
//! `window_ms` units, so the continuous refill of `limit / window_ms` tokens per ms is
//! exactly `limit` units per ms. No floating point, no rounding drift; `i128` so that
//! `LIMIT_MAX * WINDOW_MS_MAX` cannot overflow. The level may go negative after a settle
//! debit (DESIGN.md §2, reserve-then-settle).

use serde::{Deserialize, Serialize};

use crate::config::RateLimit;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Level in scaled units at `updated_ms`.
    level: i128,
    updated_ms: u64,
}

fn capacity(rl: &RateLimit) -> i128 {
    i128::from(rl.limit) * i128::from(rl.window_ms)
}

fn scaled(rl: &RateLimit, tokens: u64) -> i128 {
    i128::from(tokens) * i128::from(rl.window_ms)
}

impl Bucket {
    pub fn full(rl: &RateLimit, now_ms: u64) -> Self {
        Bucket {
            level: capacity(rl),
            updated_ms: now_ms,
        }
    }

    /// Level (scaled) at `now_ms` after refill; never above capacity.
    fn level_at(&self, rl: &RateLimit, now_ms: u64) -> i128 {
        let cap = capacity(rl);
        if self.level >= cap {
            return self.level.min(cap);
        }
        let elapsed = i128::from(now_ms.saturating_sub(self.updated_ms));
        (self.level + elapsed * i128::from(rl.limit)).min(cap)
    }

    pub fn fits(&self, rl: &RateLimit, now_ms: u64, tokens: u64) -> bool {
        self.level_at(rl, now_ms) >= scaled(rl, tokens)
    }

    /// Milliseconds until `tokens` fit, 0 if they fit now. Callers ensure `tokens <= limit`.
    pub fn wait_ms(&self, rl: &RateLimit, now_ms: u64, tokens: u64) -> u64 {
        let deficit = scaled(rl, tokens) - self.level_at(rl, now_ms);
        if deficit <= 0 {
            return 0;
        }
        let limit = i128::from(rl.limit);
        let ms = (deficit + limit - 1) / limit;
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    /// Takes `tokens`; the level may become negative (settle debits).
    pub fn charge(&mut self, rl: &RateLimit, now_ms: u64, tokens: u64) {
        self.level = self.level_at(rl, now_ms) - scaled(rl, tokens);
        self.updated_ms = now_ms;
    }

    /// Gives back `tokens`, capped at capacity.
    pub fn credit(&mut self, rl: &RateLimit, now_ms: u64, tokens: u64) {
        self.level = (self.level_at(rl, now_ms) + scaled(rl, tokens)).min(capacity(rl));
        self.updated_ms = now_ms;
    }

    /// Lowers the level to at most `tokens` whole tokens (a provider's remaining figure);
    /// never raises it.
    pub fn lower_to(&mut self, rl: &RateLimit, now_ms: u64, tokens: u64) {
        self.level = self.level_at(rl, now_ms).min(scaled(rl, tokens));
        self.updated_ms = now_ms;
    }

    /// Whole tokens available at `now_ms` (negative while in debt).
    pub fn remaining(&self, rl: &RateLimit, now_ms: u64) -> i64 {
        let tokens = self
            .level_at(rl, now_ms)
            .div_euclid(i128::from(rl.window_ms));
        i64::try_from(tokens).unwrap_or(if tokens < 0 { i64::MIN } else { i64::MAX })
    }

    /// The same bucket under a new limit: the exact level (whole tokens and the fraction
    /// of the next one) converted to the new window, rounded down and capped at the new
    /// capacity. Replacing a resource never mints budget, and putting the same config
    /// again changes nothing (rounding to whole tokens here would throw away the partial
    /// refill on every PUT, so a PUT repeated faster than one token's refill would starve
    /// the resource).
    pub fn rescaled(&self, old: &RateLimit, new: &RateLimit, now_ms: u64) -> Bucket {
        let level = self
            .level_at(old, now_ms)
            .saturating_mul(i128::from(new.window_ms))
            .div_euclid(i128::from(old.window_ms))
            .min(capacity(new));
        Bucket {
            level,
            updated_ms: now_ms,
        }
    }

    /// Whether this bucket can be the state of `rl` at cluster time `now_ms`: not above
    /// capacity, not updated in the future, and far from overflow. Used to refuse
    /// corrupted snapshots.
    pub fn is_sane(&self, rl: &RateLimit, now_ms: u64) -> bool {
        self.level <= capacity(rl) && self.level > i128::MIN / 4 && self.updated_ms <= now_ms
    }
}
