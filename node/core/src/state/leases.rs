//! Leases: grant (the charge against every limit), release (settling `actual_load`),
//! renew, expiry, and the tombstones of ended leases that keep late answers exact.

use serde::{Deserialize, Serialize};

use super::{
    same_request, Fit, Grant, HeldLease, LeaseId, LeaseView, LimitKind, Outcome, Rejection, Shadow,
    ShadowDecision, State, Table,
};
use crate::config::{Mode, Per};
use crate::{
    LEASES_MAX, LOAD_MAX, REQUEST_ID_LEN_MAX, TOMBSTONES_MAX, TOMBSTONE_WINDOW_MS, TTL_MS_MAX,
    TTL_MS_MIN,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Lease {
    pub(super) nonce: u64,
    pub(super) resource: String,
    pub(super) lane: String,
    pub(super) load: u64,
    pub(super) ttl_ms: u64,
    pub(super) expires_at_ms: u64,
    /// Cluster time of the grant (renewals move only the expiry).
    pub(super) granted_at_ms: u64,
    pub(super) holder: Option<String>,
    /// The key that acquired it (`None`: the admin token).
    pub(super) owner: Option<String>,
    /// Whether the grant was charged to the resource's buckets: always in enforce mode;
    /// in dry-run mode only when enforce would have granted it too (`Shadow`). A release
    /// settles `actual_load` only against what was charged.
    pub(super) charged: bool,
    /// A dry-run grant's shadow (what enforce would have done), kept so that a retry of
    /// its `request_id` gets the same answer; `None` on an enforced resource (and for
    /// leases restored from a format-7 snapshot, which did not keep it).
    pub(super) shadow: Option<Shadow>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Ended {
    Released,
    Expired,
}

/// How a lease ended, with its nonce: a forged id (right token, wrong nonce) must get
/// `LeaseNotFound` after the lease ended just as before, never the real lease's answer
/// (`already_released` would even settle nothing and report success). `ended_at_ms`
/// (cluster time) ages it out after `TOMBSTONE_WINDOW_MS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Tombstone {
    pub(super) how: Ended,
    pub(super) nonce: u64,
    pub(super) ended_at_ms: u64,
}

/// The shadow of a dry-run grant: what enforce would have done, from the enforce `fit`
/// on the same state and the caller's `wait_ms` (a waiter is granted once the binding
/// limit has room, if that is within its `wait_ms`; a try-once caller never waits).
fn shadow_of(fit: Fit, wait_ms: u64) -> Shadow {
    match fit {
        Fit::Now | Fit::NoResource => Shadow {
            decision: ShadowDecision::Grant,
            wait_ms: 0,
            binding: None,
        },
        Fit::Wait { ms, binding } => Shadow {
            decision: if wait_ms == 0 {
                ShadowDecision::WouldBlock
            } else if ms > wait_ms {
                ShadowDecision::WaitTimeout
            } else {
                ShadowDecision::Wait
            },
            wait_ms: ms,
            binding: Some(binding),
        },
        Fit::Never { .. } => Shadow {
            decision: ShadowDecision::LoadExceedsLimit,
            wait_ms: 0,
            binding: Some(LimitKind::Load),
        },
    }
}

impl State {
    pub(super) fn grant(&mut self, g: &Grant) -> Outcome {
        let request_key = g.request_key();
        if let Some(key) = &request_key {
            if let Some(prev) = self.idempotency.get(key) {
                if !same_request(&prev.lease, &g.lane, g.load, g.ttl_ms) {
                    return Outcome::Rejected(Rejection::RequestIdReused);
                }
                // The lease this request was granted has already ended (released, for
                // instance by the leader because the first attempt's client went away,
                // or expired): never hand it out as held, and never grant a second one.
                // A live one is answered as the first attempt was, shadow included.
                let shadow = match self.live(prev.lease.id) {
                    Ok(l) => l.shadow,
                    Err(_) => return Outcome::Rejected(Rejection::GrantEnded),
                };
                let limits = self.limits(&prev.lease.resource);
                return Outcome::Granted {
                    lease: prev.lease.clone(),
                    limits,
                    duplicate: true,
                    shadow,
                };
            }
            if key.request_id.is_empty() || key.request_id.len() > REQUEST_ID_LEN_MAX {
                return Outcome::Rejected(Rejection::Invalid("bad request_id length".into()));
            }
        }
        if g.load > LOAD_MAX || !(TTL_MS_MIN..=TTL_MS_MAX).contains(&g.ttl_ms) {
            return Outcome::Rejected(Rejection::Invalid("load or ttl_ms out of range".into()));
        }
        if let Err(e) = crate::config::validate_name(&g.lane) {
            return Outcome::Rejected(Rejection::Invalid(format!("lane {e}")));
        }
        if let Some(Err(e)) = g.holder.as_deref().map(crate::config::validate_holder) {
            return Outcome::Rejected(Rejection::Invalid(e));
        }
        let dry_run = match self.resources.get(&g.resource) {
            None => return Outcome::Rejected(Rejection::ResourceNotFound),
            Some(r) => r.config.mode == Mode::DryRun,
        };
        let fit = self.enforce_fit(&g.resource, g.load);
        let shadow = if dry_run {
            Some(shadow_of(fit, g.wait_ms))
        } else {
            match fit {
                Fit::Now => None,
                Fit::NoResource => return Outcome::Rejected(Rejection::ResourceNotFound),
                Fit::Never { load_max } => {
                    return Outcome::Rejected(Rejection::LoadExceedsLimit { load_max })
                }
                Fit::Wait { ms, binding } => {
                    return Outcome::Rejected(Rejection::NoRoom {
                        retry_after_ms: ms,
                        binding,
                    })
                }
            }
        };
        let charged = shadow.is_none_or(|s| s.decision.grants())
            && !(dry_run && crate::sabotage::dry_run_uncharged());
        if self.leases.len() >= LEASES_MAX {
            return Outcome::Rejected(Rejection::TableFull(Table::Leases));
        }
        let now = self.now_ms;
        let token = self.next_token;
        self.next_token += 1;
        let expires_at_ms = now.saturating_add(g.ttl_ms);
        let Some(r) = self.resources.get_mut(&g.resource) else {
            return Outcome::Rejected(Rejection::ResourceNotFound);
        };
        if charged {
            for (rl, b) in r.config.rate.iter().zip(r.buckets.iter_mut()) {
                b.charge(rl, now, if rl.per == Per::Request { 1 } else { g.load });
            }
        }
        r.leases.insert((expires_at_ms, token));
        r.grants_total += 1;
        self.expiry.insert((expires_at_ms, token));
        self.leases.insert(
            token,
            Lease {
                nonce: g.nonce,
                resource: g.resource.clone(),
                lane: g.lane.clone(),
                load: g.load,
                ttl_ms: g.ttl_ms,
                expires_at_ms,
                granted_at_ms: now,
                holder: g.holder.clone(),
                owner: g.owner.clone(),
                charged,
                shadow,
            },
        );
        let lease = LeaseView {
            id: LeaseId {
                token,
                nonce: g.nonce,
            },
            resource: g.resource.clone(),
            lane: g.lane.clone(),
            load: g.load,
            ttl_ms: g.ttl_ms,
        };
        if let Some(key) = request_key {
            self.remember_request(key, &lease);
        }
        let limits = self.limits(&g.resource);
        Outcome::Granted {
            lease,
            limits,
            duplicate: false,
            shadow,
        }
    }

    /// Why `id` is not live: `Ok(lease)` if it is.
    pub(super) fn live(&self, id: LeaseId) -> Result<&Lease, Rejection> {
        match self.leases.get(&id.token) {
            Some(l) if l.nonce == id.nonce => Ok(l),
            Some(_) => Err(Rejection::LeaseNotFound),
            None => match self.ended.get(&id.token) {
                Some(t) if t.nonce != id.nonce => Err(Rejection::LeaseNotFound),
                Some(t) if t.how == Ended::Released => Err(Rejection::LeaseReleased),
                Some(_) => Err(Rejection::LeaseExpired),
                // Issued once but forgotten: it ended more than `TOMBSTONE_WINDOW_MS`
                // ago (or a million leases ago). Tell the holder to stop.
                None if id.token < self.next_token && id.token > 0 => Err(Rejection::LeaseExpired),
                None => Err(Rejection::LeaseNotFound),
            },
        }
    }

    pub(super) fn release(&mut self, id: LeaseId, actual_load: Option<u64>) -> Outcome {
        let lease = match self.live(id) {
            Ok(l) => l.clone(),
            Err(Rejection::LeaseReleased) => return Outcome::Released { already: true },
            Err(e) => return Outcome::Rejected(e),
        };
        if let Some(actual) = actual_load {
            if actual > LOAD_MAX {
                return Outcome::Rejected(Rejection::Invalid("actual_load out of range".into()));
            }
        }
        if let Some(actual) = actual_load.filter(|_| lease.charged) {
            let now = self.now_ms;
            if let Some(r) = self.resources.get_mut(&lease.resource) {
                for (rl, b) in r.config.rate.iter().zip(r.buckets.iter_mut()) {
                    if rl.per != Per::Load {
                        continue;
                    }
                    if actual < lease.load {
                        b.credit(rl, now, lease.load - actual);
                    } else {
                        b.charge(rl, now, actual - lease.load);
                    }
                }
            }
        }
        self.end_lease(id.token, Ended::Released);
        Outcome::Released { already: false }
    }

    pub(super) fn renew(&mut self, id: LeaseId, ttl_ms: Option<u64>) -> Outcome {
        let lease = match self.live(id) {
            Ok(l) => l,
            Err(e) => return Outcome::Rejected(e),
        };
        let ttl_ms = ttl_ms.unwrap_or(lease.ttl_ms);
        if !(TTL_MS_MIN..=TTL_MS_MAX).contains(&ttl_ms) {
            return Outcome::Rejected(Rejection::Invalid("ttl_ms out of range".into()));
        }
        let old = lease.expires_at_ms;
        let at = self.now_ms.saturating_add(ttl_ms);
        let resource = lease.resource.clone();
        self.expiry.remove(&(old, id.token));
        self.expiry.insert((at, id.token));
        if let Some(r) = self.resources.get_mut(&resource) {
            r.leases.remove(&(old, id.token));
            r.leases.insert((at, id.token));
        }
        let Some(l) = self.leases.get_mut(&id.token) else {
            return Outcome::Rejected(Rejection::LeaseNotFound);
        };
        l.expires_at_ms = at;
        l.ttl_ms = ttl_ms;
        let lease = LeaseView {
            id,
            resource,
            lane: l.lane.clone(),
            load: l.load,
            ttl_ms,
        };
        Outcome::Renewed { lease }
    }

    /// Ends a live lease: a release or a deleted resource at the current cluster time,
    /// an expiry at its `expires_at_ms`. Either way the end time does not depend on
    /// when the entry that ends it was applied (the leader's speculative state reaches
    /// an expiry earlier than the log may), so every copy of the state agrees on it;
    /// and end times only grow, since an entry first expires everything up to its time.
    pub(super) fn end_lease(&mut self, token: u64, how: Ended) {
        let Some(l) = self.leases.remove(&token) else {
            return;
        };
        let ended_at_ms = match how {
            Ended::Expired if l.expires_at_ms <= self.now_ms => l.expires_at_ms,
            _ => self.now_ms,
        };
        self.expiry.remove(&(l.expires_at_ms, token));
        if let Some(r) = self.resources.get_mut(&l.resource) {
            r.leases.remove(&(l.expires_at_ms, token));
        }
        self.ended.insert(
            token,
            Tombstone {
                how,
                nonce: l.nonce,
                ended_at_ms,
            },
        );
        self.ended_order.push_back(token);
        self.forget_old_tombstones();
    }

    /// Forgets tombstones older than `TOMBSTONE_WINDOW_MS` of cluster time, and the
    /// oldest beyond `TOMBSTONES_MAX`. Tombstones are made in cluster-time order, so
    /// `ended_order`'s front is always the oldest.
    pub(super) fn forget_old_tombstones(&mut self) {
        let now = self.now_ms;
        while let Some(&token) = self.ended_order.front() {
            let old = self
                .ended
                .get(&token)
                .is_none_or(|t| t.ended_at_ms.saturating_add(TOMBSTONE_WINDOW_MS) <= now);
            if !old && self.ended_order.len() <= TOMBSTONES_MAX {
                break;
            }
            self.ended_order.pop_front();
            self.ended.remove(&token);
        }
    }

    /// The live leases of `resource`, soonest expiry first (the index order, so taking
    /// the first few costs only those few).
    pub fn held<'a>(&'a self, resource: &str) -> impl Iterator<Item = HeldLease> + 'a {
        self.resources
            .get(resource)
            .into_iter()
            .flat_map(|r| r.leases.iter())
            .filter_map(|&(_, token)| {
                let l = self.leases.get(&token)?;
                Some(HeldLease {
                    token,
                    lane: l.lane.clone(),
                    load: l.load,
                    holder: l.holder.clone(),
                    owner: l.owner.clone(),
                    granted_at_ms: l.granted_at_ms,
                    expires_at_ms: l.expires_at_ms,
                })
            })
    }

    /// The resource a live lease belongs to.
    pub fn lease_resource(&self, id: LeaseId) -> Option<&str> {
        self.live(id).ok().map(|l| l.resource.as_str())
    }

    /// Who acquired a live lease (`Ok(None)`: the admin token), or why it is not live:
    /// the answer a release or renew of it would get.
    pub fn lease_owner(&self, id: LeaseId) -> Result<Option<&str>, Rejection> {
        self.live(id).map(|l| l.owner.as_deref())
    }
}
