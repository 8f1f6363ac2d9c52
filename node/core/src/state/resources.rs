//! Resources: their configs, token buckets and live-lease index; `fit` (does a load fit
//! now, and if not, which limit binds and for how long) and the limit views.

use serde::{Deserialize, Serialize};

use super::tables::{self, Set};
use super::{Ended, Fit, LimitKind, LimitView, Outcome, Rejection, State, Table};
use crate::bucket::Bucket;
use crate::config::{Mode, Per, ResourceConfig};
use crate::RESOURCES_MAX;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Resource {
    pub(super) config: ResourceConfig,
    /// One per `config.rate` entry, same order.
    pub(super) buckets: Vec<Bucket>,
    /// Live leases of this resource by expiry: `(expires_at_ms, token)`.
    #[serde(with = "tables::set")]
    pub(super) leases: Set<(u64, u64)>,
    pub(super) grants_total: u64,
    /// Cluster time until which grants pause after a provider's 429 (`feedback.rs`).
    pub(super) paused_until_ms: u64,
    /// Reported 429s in a row (no report without one since): the backoff's exponent.
    pub(super) rate_limited_streak: u32,
}

/// Live statistics of one resource, for `GET /v1/resources`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceStats {
    pub held: u64,
    pub grants_total: u64,
    pub limits: Vec<LimitView>,
}

impl State {
    pub(super) fn put_resource(&mut self, name: &str, config: &ResourceConfig) -> Outcome {
        if let Err(e) = crate::config::validate_name(name).and_then(|()| config.validate()) {
            return Outcome::Rejected(Rejection::Invalid(e));
        }
        let now = self.now_ms;
        match self.resources.get_mut(name) {
            Some(r) => {
                // Each new bucket takes over an old bucket of the same kind (`per`),
                // preferring one with the same window, wherever it sits in the list.
                // Matching by position would give a reordered list's drained bucket a
                // full level (minting budget). Unmatched new buckets are new limits and
                // start full.
                let mut taken = vec![false; r.config.rate.len()];
                let mut buckets = Vec::with_capacity(config.rate.len());
                for new in &config.rate {
                    let old = |same_window: bool, taken: &[bool]| {
                        r.config.rate.iter().enumerate().position(|(i, old)| {
                            !taken[i]
                                && old.per == new.per
                                && (!same_window || old.window_ms == new.window_ms)
                        })
                    };
                    let matched = old(true, &taken).or_else(|| old(false, &taken));
                    let bucket = match matched {
                        Some(i) => {
                            taken[i] = true;
                            match (r.config.rate.get(i), r.buckets.get(i)) {
                                (Some(old), Some(b)) => b.rescaled(old, new, now),
                                _ => Bucket::full(new, now),
                            }
                        }
                        None => Bucket::full(new, now),
                    };
                    buckets.push(bucket);
                }
                r.buckets = buckets;
                r.config = config.clone();
                Outcome::ResourcePut { created: false }
            }
            None => {
                if self.resources.len() >= RESOURCES_MAX {
                    return Outcome::Rejected(Rejection::TableFull(Table::Resources));
                }
                let buckets = config.rate.iter().map(|rl| Bucket::full(rl, now)).collect();
                let r = Resource {
                    config: config.clone(),
                    buckets,
                    leases: Set::new(),
                    grants_total: 0,
                    paused_until_ms: 0,
                    rate_limited_streak: 0,
                };
                self.resources.insert(name.to_owned(), r);
                Outcome::ResourcePut { created: true }
            }
        }
    }

    pub(super) fn delete_resource(&mut self, name: &str) -> Outcome {
        let Some(r) = self.resources.get(name) else {
            return Outcome::ResourceDeleted { existed: false };
        };
        let tokens: Vec<u64> = r.leases.iter().map(|&(_, t)| t).collect();
        for token in tokens {
            self.end_lease(token, Ended::Expired);
        }
        self.resources.remove(name);
        Outcome::ResourceDeleted { existed: true }
    }

    /// Whether a request of `load` is admitted on `resource` now: `enforce_fit` for an
    /// enforced resource; a dry-run resource admits every request at once (its grant
    /// records the enforce decision as its shadow).
    pub fn fit(&self, resource: &str, load: u64) -> Fit {
        match self.resources.get(resource) {
            None => Fit::NoResource,
            Some(r) if r.config.mode == Mode::DryRun => Fit::Now,
            Some(_) => self.enforce_fit(resource, load),
        }
    }

    /// Whether `load` fits `resource`'s limits at the current cluster time, and if not,
    /// how long until the binding limit (the one that frees up last) has room. The
    /// decision of an enforced resource, whatever the resource's mode.
    pub fn enforce_fit(&self, resource: &str, load: u64) -> Fit {
        let Some(r) = self.resources.get(resource) else {
            return Fit::NoResource;
        };
        if let Some(load_max) = r.config.load_max() {
            if load > load_max {
                return Fit::Never { load_max };
            }
        }
        let now = self.now_ms;
        let mut wait: Option<(u64, LimitKind)> = None;
        let mut bind = |ms: u64, kind: LimitKind| {
            if ms > 0 && wait.is_none_or(|(w, _)| ms > w) {
                wait = Some((ms, kind));
            }
        };
        if !crate::sabotage::ignore_pause() {
            bind(r.paused_until_ms.saturating_sub(now), LimitKind::Provider);
        }
        if let Some(c) = r.config.concurrency {
            let held = r.leases.len();
            let c = c as usize;
            if held >= c {
                // The (held - c + 1)-th expiry frees the slot if nobody releases first.
                let at = r.leases.iter().nth(held - c).map_or(now + 1, |&(at, _)| at);
                bind(at.saturating_sub(now).max(1), LimitKind::Concurrency);
            }
        }
        for (rl, b) in r.config.rate.iter().zip(&r.buckets) {
            let tokens = match rl.per {
                Per::Request => 1,
                Per::Load => load,
            };
            bind(b.wait_ms(rl, now, tokens), rl.per.into());
        }
        match wait {
            None => Fit::Now,
            Some((ms, binding)) => Fit::Wait { ms, binding },
        }
    }

    /// Remaining room of every limit of `resource` at the current cluster time.
    pub fn limits(&self, resource: &str) -> Vec<LimitView> {
        let Some(r) = self.resources.get(resource) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(1 + r.buckets.len());
        if let Some(c) = r.config.concurrency {
            let held = i64::try_from(r.leases.len()).unwrap_or(i64::MAX);
            out.push(LimitView {
                kind: LimitKind::Concurrency,
                limit: u64::from(c),
                remaining: i64::from(c) - held,
            });
        }
        for (rl, b) in r.config.rate.iter().zip(&r.buckets) {
            out.push(LimitView {
                kind: rl.per.into(),
                limit: rl.limit,
                remaining: b.remaining(rl, self.now_ms),
            });
        }
        out
    }

    pub fn resource(&self, name: &str) -> Option<&ResourceConfig> {
        self.resources.get(name).map(|r| &r.config)
    }

    pub fn resources(&self) -> impl Iterator<Item = (&str, &ResourceConfig)> {
        self.resources.iter().map(|(n, r)| (n.as_str(), &r.config))
    }

    /// Resources by name after `after` (all of them for `None`): lets a reader walk the
    /// table in chunks, releasing its lock between them.
    pub fn resources_after<'a>(
        &'a self,
        after: Option<&str>,
    ) -> impl Iterator<Item = (&'a str, &'a ResourceConfig)> + 'a {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.resources
            .range::<_, str>((from, Bound::Unbounded))
            .map(|(n, r)| (n.as_str(), &r.config))
    }

    pub fn resource_stats(&self, name: &str) -> Option<ResourceStats> {
        let r = self.resources.get(name)?;
        Some(ResourceStats {
            held: r.leases.len() as u64,
            grants_total: r.grants_total,
            limits: self.limits(name),
        })
    }
}
