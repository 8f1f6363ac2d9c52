//! The wait estimate of a request that does not fit now: which limit binds it and how long
//! until that limit has room for it, counting the waiters served before it. It is the
//! `retry_after_ms` of every limit refusal (`would_block`, `wait_timeout`, `queue_full`),
//! and what a waiter can be told about where it stands.
//!
//! Pure: a function of the state at its cluster time, of the queue ahead (`Ahead`, from
//! the scheduler) and of the average hold time the leader has observed on the resource.
//! A concurrency bound is estimated from the slots, the holders and the waiters ahead,
//! never from a held lease's TTL (a lease's expiry only caps the estimate: a holder that
//! stops renewing frees its slot then at the latest).

use serde::{Deserialize, Serialize};

use super::{LimitKind, State};
use crate::config::Per;

/// Hold time assumed when none was observed on the resource: at least this, else the
/// age of its longest-held lease ("it will hold as long again").
pub const HOLD_GUESS_MS_MIN: u64 = 10;
/// Holders whose expiry caps a concurrency estimate: the cap is looked up only when at
/// most this many releases are needed, so an estimate stays cheap on a long queue.
pub const EXPIRY_SCAN_MAX: u64 = 64;

/// The waiters to be served before a request: their number and their total load. For a
/// retry (what `retry_after_ms` is for) that is the resource's whole queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ahead {
    pub waiters: u64,
    pub load: u64,
}

/// The limit that binds: its kind, and for a rate limit its index in the resource's
/// `rate` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub kind: LimitKind,
    pub bucket: Option<u32>,
}

/// How long until a request may fit (at least 1 ms), and which limit binds (`None` when
/// none does: the request only waits for those ahead to be granted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    pub wait_ms: u64,
    pub binding: Option<Binding>,
}

impl State {
    /// The wait of a request of `load` on `resource` with `ahead` served first, when the
    /// average hold time observed on the resource is `hold_ms` (None: not known yet).
    ///
    /// - `concurrency: c` with `held` leases needs `n = held + ahead.waiters + 1 - c`
    ///   releases. The `c` slots turn over every hold time, so they come after about
    ///   `n × hold / c`; capped by the `n`-th expiry among the holders.
    /// - A bucket needs its own tokens plus those of the waiters ahead (one each for
    ///   `per: request`, their loads for `per: load`): the deficit over the refill rate.
    ///
    /// The binding limit is the one with the longest wait.
    pub fn estimate_wait(
        &self,
        resource: &str,
        load: u64,
        ahead: Ahead,
        hold_ms: Option<u64>,
    ) -> Estimate {
        let none = Estimate {
            wait_ms: 1,
            binding: None,
        };
        let Some(r) = self.resources.get(resource) else {
            return none;
        };
        let now = self.now_ms;
        let mut best: Option<(u64, Binding)> = None;
        let mut bind = |ms: u64, binding: Binding| {
            if ms > 0 && best.is_none_or(|(w, _)| ms > w) {
                best = Some((ms, binding));
            }
        };
        bind(
            r.paused_until_ms.saturating_sub(now),
            Binding {
                kind: LimitKind::Provider,
                bucket: None,
            },
        );
        if let Some(c) = r.config.concurrency {
            let c = u64::from(c);
            let held = r.leases.len() as u64;
            let need = held
                .saturating_add(ahead.waiters)
                .saturating_add(1)
                .saturating_sub(c);
            if need > 0 {
                let hold = hold_ms.unwrap_or_else(|| {
                    let oldest = r
                        .leases
                        .get_min()
                        .and_then(|&(_, token)| self.leases.get(&token))
                        .map_or(0, |l| {
                            now.saturating_sub(l.expires_at_ms.saturating_sub(l.ttl_ms))
                        });
                    oldest.max(HOLD_GUESS_MS_MIN)
                });
                let mut ms = need.saturating_mul(hold.max(1)).div_ceil(c.max(1));
                if need <= held.min(EXPIRY_SCAN_MAX) {
                    let nth = usize::try_from(need - 1).unwrap_or(usize::MAX);
                    if let Some(&(at, _)) = r.leases.iter().nth(nth) {
                        ms = ms.min(at.saturating_sub(now));
                    }
                }
                bind(
                    ms.max(1),
                    Binding {
                        kind: LimitKind::Concurrency,
                        bucket: None,
                    },
                );
            }
        }
        for (i, (rl, b)) in r.config.rate.iter().zip(&r.buckets).enumerate() {
            let tokens = match rl.per {
                Per::Request => ahead.waiters.saturating_add(1),
                Per::Load => ahead.load.saturating_add(load),
            };
            bind(
                b.wait_ms(rl, now, tokens),
                Binding {
                    kind: rl.per.into(),
                    bucket: u32::try_from(i).ok(),
                },
            );
        }
        match best {
            None => none,
            Some((wait_ms, binding)) => Estimate {
                wait_ms,
                binding: Some(binding),
            },
        }
    }

    /// How long a live lease has been held since it was granted or last renewed, and its
    /// resource. The scheduler's hold-time average is fed from it at each release.
    pub fn lease_held_ms(&self, id: super::LeaseId) -> Option<(&str, u64)> {
        let l = self.live(id).ok()?;
        let since = l.expires_at_ms.saturating_sub(l.ttl_ms);
        Some((l.resource.as_str(), self.now_ms.saturating_sub(since)))
    }
}
