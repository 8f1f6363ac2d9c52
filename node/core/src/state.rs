//! The replicated limiter state machine.
//!
//! `State` holds resources, live leases, buckets, API keys, the idempotency window and
//! cluster time. `apply_entry(now_ms, commands)` is the only way it changes, and it is a
//! pure function of the previous state and its arguments: integers only, ordered maps
//! only, no clock, no randomness. Every replica, the leader's speculative copy and the
//! checkers run this same code.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::bucket::Bucket;
use crate::config::{Per, ResourceConfig};
use crate::keys::ApiKey;
use crate::{
    IDEMPOTENCY_WINDOW_LEN_MAX, IDEMPOTENCY_WINDOW_MS, KEYS_MAX, LEASES_MAX, LOAD_MAX,
    REQUEST_ID_LEN_MAX, RESOURCES_MAX, TOMBSTONES_MAX, TTL_MS_MAX, TTL_MS_MIN,
};

/// A lease's public identity: the fencing token plus a leader-chosen random nonce, so
/// that lease ids cannot be guessed from tokens. Text form: `"{token}-{nonce:016x}"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeaseId {
    pub token: u64,
    pub nonce: u64,
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:016x}", self.token, self.nonce)
    }
}

impl FromStr for LeaseId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (token, nonce) = s.split_once('-').ok_or(())?;
        if nonce.len() != 16 || token.is_empty() || token.len() > 20 {
            return Err(());
        }
        Ok(LeaseId {
            token: token.parse().map_err(|_| ())?,
            nonce: u64::from_str_radix(nonce, 16).map_err(|_| ())?,
        })
    }
}

/// A request to grant one lease. Built by the leader's scheduler, checked again at apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub resource: String,
    pub lane: String,
    pub load: u64,
    pub ttl_ms: u64,
    pub request_id: Option<String>,
    pub nonce: u64,
}

/// Everything that can change the state. One Raft entry carries a batch of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    PutResource {
        name: String,
        config: ResourceConfig,
    },
    DeleteResource {
        name: String,
    },
    Grant(Grant),
    Release {
        lease: LeaseId,
        actual_load: Option<u64>,
    },
    Renew {
        lease: LeaseId,
        ttl_ms: Option<u64>,
    },
    PutKey(ApiKey),
    DeleteKey {
        name: String,
    },
}

/// Which limit a figure is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitKind {
    Concurrency,
    Request,
    Load,
}

impl From<Per> for LimitKind {
    fn from(p: Per) -> Self {
        match p {
            Per::Request => LimitKind::Request,
            Per::Load => LimitKind::Load,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitView {
    pub kind: LimitKind,
    pub limit: u64,
    /// Whole units left now; negative while a load bucket is in debt.
    pub remaining: i64,
}

/// A granted lease as reported to its holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    pub id: LeaseId,
    pub resource: String,
    pub lane: String,
    pub load: u64,
    pub ttl_ms: u64,
}

/// Why a command did not take effect. These are outcomes, not errors: replicas agree on them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    ResourceNotFound,
    LeaseNotFound,
    /// The lease ended by expiry (or its resource was deleted): the holder must stop.
    LeaseExpired,
    /// The lease was released; a renew of it is refused.
    LeaseReleased,
    /// A retried acquire whose `request_id` was granted a lease that has since ended.
    GrantEnded,
    LoadExceedsLimit {
        load_max: u64,
    },
    /// Some limit has no room now; `retry_after_ms` is when the binding limit frees up.
    NoRoom {
        retry_after_ms: u64,
        binding: LimitKind,
    },
    /// A table of the state is at its bound (leases, resources, keys).
    TableFull(Table),
    Invalid(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// `duplicate`: the request id was already granted; this is that same lease.
    Granted {
        lease: LeaseView,
        limits: Vec<LimitView>,
        duplicate: bool,
    },
    Released {
        already: bool,
    },
    Renewed {
        lease: LeaseView,
    },
    ResourcePut {
        created: bool,
    },
    ResourceDeleted {
        existed: bool,
    },
    KeyPut {
        created: bool,
    },
    KeyDeleted {
        existed: bool,
    },
    Rejected(Rejection),
}

/// The bounded tables of the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Table {
    Leases,
    Resources,
    Keys,
}

/// Whether a request of some load fits a resource now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    Now,
    Wait { ms: u64, binding: LimitKind },
    Never { load_max: u64 },
    NoResource,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Lease {
    nonce: u64,
    resource: String,
    lane: String,
    load: u64,
    ttl_ms: u64,
    expires_at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Resource {
    config: ResourceConfig,
    /// One per `config.rate` entry, same order.
    buckets: Vec<Bucket>,
    /// Live leases of this resource by expiry: `(expires_at_ms, token)`.
    leases: BTreeSet<(u64, u64)>,
    grants_total: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Ended {
    Released,
    Expired,
}

/// How a lease ended, with its nonce: a forged id (right token, wrong nonce) must get
/// `LeaseNotFound` after the lease ended just as before, never the real lease's answer
/// (`already_released` would even settle nothing and report success).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Tombstone {
    how: Ended,
    nonce: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct IdempotentGrant {
    lease: LeaseView,
    at_ms: u64,
}

/// Live statistics of one resource, for `GET /v1/resources`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceStats {
    pub held: u64,
    pub grants_total: u64,
    pub limits: Vec<LimitView>,
}

/// The whole replicated state. Ordered containers only, so that serialisation is
/// byte-identical across replicas that applied the same log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    now_ms: u64,
    /// Fencing token of the next grant; tokens start at 1 and only grow.
    next_token: u64,
    resources: BTreeMap<String, Resource>,
    leases: BTreeMap<u64, Lease>,
    /// All live leases by expiry: `(expires_at_ms, token)`.
    expiry: BTreeSet<(u64, u64)>,
    /// Recently ended leases, so a late release or renew gets the right answer.
    /// Bounded by `TOMBSTONES_MAX`; the oldest tokens are forgotten first.
    ended: BTreeMap<u64, Tombstone>,
    idempotency: BTreeMap<String, IdempotentGrant>,
    /// Request ids in grant order, for eviction by age and by count.
    idempotency_order: VecDeque<String>,
    keys: BTreeMap<String, ApiKey>,
    key_by_hash: BTreeMap<String, String>,
}

/// 2: tombstones carry the lease nonce.
const SNAPSHOT_VERSION: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is empty")]
    Empty,
    #[error("snapshot format version {0} is not supported (expected {SNAPSHOT_VERSION})")]
    Version(u8),
    #[error("snapshot does not decode: {0}")]
    Decode(String),
}

impl State {
    pub fn new() -> Self {
        State {
            next_token: 1,
            ..State::default()
        }
    }

    /// Cluster time of the last applied entry.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Fencing token the next grant will get.
    pub fn next_token(&self) -> u64 {
        self.next_token
    }

    pub fn lease_count(&self) -> usize {
        self.leases.len()
    }

    /// Applies one Raft entry: advance cluster time, then each command in order.
    pub fn apply_entry(&mut self, now_ms: u64, commands: &[Command]) -> Vec<Outcome> {
        self.tick(now_ms);
        commands.iter().map(|c| self.apply_command(c)).collect()
    }

    /// Advances cluster time to `max(now, now_ms)` (DESIGN.md §3) and ends every lease
    /// whose expiry has come. Idempotent for the same or an earlier `now_ms`.
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        let now = self.now_ms;
        while let Some(&(at, token)) = self.expiry.first() {
            if at > now {
                break;
            }
            self.end_lease(token, Ended::Expired);
        }
        while let Some(id) = self.idempotency_order.front() {
            let old = self
                .idempotency
                .get(id)
                .is_none_or(|g| g.at_ms.saturating_add(IDEMPOTENCY_WINDOW_MS) <= now);
            if !old && self.idempotency_order.len() <= IDEMPOTENCY_WINDOW_LEN_MAX {
                break;
            }
            if let Some(id) = self.idempotency_order.pop_front() {
                self.idempotency.remove(&id);
            }
        }
    }

    /// Applies one command at the current cluster time.
    pub fn apply_command(&mut self, command: &Command) -> Outcome {
        match command {
            Command::PutResource { name, config } => self.put_resource(name, config),
            Command::DeleteResource { name } => self.delete_resource(name),
            Command::Grant(g) => self.grant(g),
            Command::Release { lease, actual_load } => self.release(*lease, *actual_load),
            Command::Renew { lease, ttl_ms } => self.renew(*lease, *ttl_ms),
            Command::PutKey(key) => self.put_key(key),
            Command::DeleteKey { name } => {
                let existed = self.keys.remove(name);
                if let Some(k) = &existed {
                    self.key_by_hash.remove(&k.hash);
                }
                Outcome::KeyDeleted {
                    existed: existed.is_some(),
                }
            }
        }
    }

    fn put_resource(&mut self, name: &str, config: &ResourceConfig) -> Outcome {
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
                    leases: BTreeSet::new(),
                    grants_total: 0,
                };
                self.resources.insert(name.to_owned(), r);
                Outcome::ResourcePut { created: true }
            }
        }
    }

    fn delete_resource(&mut self, name: &str) -> Outcome {
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

    /// Whether `load` fits `resource` at the current cluster time, and if not, how long
    /// until the binding limit (the one that frees up last) has room.
    pub fn fit(&self, resource: &str, load: u64) -> Fit {
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

    fn grant(&mut self, g: &Grant) -> Outcome {
        if let Some(id) = &g.request_id {
            if let Some(prev) = self.idempotency.get(id) {
                // The lease this request was granted has already ended (released, for
                // instance by the leader because the first attempt's client went away,
                // or expired): never hand it out as held, and never grant a second one.
                if self.live(prev.lease.id).is_err() {
                    return Outcome::Rejected(Rejection::GrantEnded);
                }
                let limits = self.limits(&prev.lease.resource);
                return Outcome::Granted {
                    lease: prev.lease.clone(),
                    limits,
                    duplicate: true,
                };
            }
            if id.is_empty() || id.len() > REQUEST_ID_LEN_MAX {
                return Outcome::Rejected(Rejection::Invalid("bad request_id length".into()));
            }
        }
        if g.load > LOAD_MAX || !(TTL_MS_MIN..=TTL_MS_MAX).contains(&g.ttl_ms) {
            return Outcome::Rejected(Rejection::Invalid("load or ttl_ms out of range".into()));
        }
        if let Err(e) = crate::config::validate_name(&g.lane) {
            return Outcome::Rejected(Rejection::Invalid(format!("lane {e}")));
        }
        match self.fit(&g.resource, g.load) {
            Fit::Now => {}
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
        for (rl, b) in r.config.rate.iter().zip(r.buckets.iter_mut()) {
            b.charge(rl, now, if rl.per == Per::Request { 1 } else { g.load });
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
        if let Some(id) = &g.request_id {
            self.idempotency.insert(
                id.clone(),
                IdempotentGrant {
                    lease: lease.clone(),
                    at_ms: now,
                },
            );
            self.idempotency_order.push_back(id.clone());
        }
        let limits = self.limits(&g.resource);
        Outcome::Granted {
            lease,
            limits,
            duplicate: false,
        }
    }

    /// Why `id` is not live: `Ok(lease)` if it is.
    fn live(&self, id: LeaseId) -> Result<&Lease, Rejection> {
        match self.leases.get(&id.token) {
            Some(l) if l.nonce == id.nonce => Ok(l),
            Some(_) => Err(Rejection::LeaseNotFound),
            None => match self.ended.get(&id.token) {
                Some(t) if t.nonce != id.nonce => Err(Rejection::LeaseNotFound),
                Some(t) if t.how == Ended::Released => Err(Rejection::LeaseReleased),
                Some(_) => Err(Rejection::LeaseExpired),
                // Issued once but forgotten: it ended long ago. Tell the holder to stop.
                None if id.token < self.next_token && id.token > 0 => Err(Rejection::LeaseExpired),
                None => Err(Rejection::LeaseNotFound),
            },
        }
    }

    fn release(&mut self, id: LeaseId, actual_load: Option<u64>) -> Outcome {
        let lease = match self.live(id) {
            Ok(l) => l.clone(),
            Err(Rejection::LeaseReleased) => return Outcome::Released { already: true },
            Err(e) => return Outcome::Rejected(e),
        };
        if let Some(actual) = actual_load {
            if actual > LOAD_MAX {
                return Outcome::Rejected(Rejection::Invalid("actual_load out of range".into()));
            }
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

    fn renew(&mut self, id: LeaseId, ttl_ms: Option<u64>) -> Outcome {
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

    fn end_lease(&mut self, token: u64, how: Ended) {
        let Some(l) = self.leases.remove(&token) else {
            return;
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
            },
        );
        while self.ended.len() > TOMBSTONES_MAX {
            self.ended.pop_first();
        }
    }

    fn put_key(&mut self, key: &ApiKey) -> Outcome {
        if crate::config::validate_name(&key.name).is_err() || key.hash.len() != 64 {
            return Outcome::Rejected(Rejection::Invalid("bad key name or hash".into()));
        }
        if let Some(other) = self.key_by_hash.get(&key.hash) {
            if other != &key.name {
                return Outcome::Rejected(Rejection::Invalid("duplicate key hash".into()));
            }
        }
        let created = !self.keys.contains_key(&key.name);
        if created && self.keys.len() >= KEYS_MAX {
            return Outcome::Rejected(Rejection::TableFull(Table::Keys));
        }
        if let Some(old) = self.keys.insert(key.name.clone(), key.clone()) {
            self.key_by_hash.remove(&old.hash);
        }
        self.key_by_hash.insert(key.hash.clone(), key.name.clone());
        Outcome::KeyPut { created }
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

    pub fn resource_stats(&self, name: &str) -> Option<ResourceStats> {
        let r = self.resources.get(name)?;
        Some(ResourceStats {
            held: r.leases.len() as u64,
            grants_total: r.grants_total,
            limits: self.limits(name),
        })
    }

    /// The resource a live lease belongs to.
    pub fn lease_resource(&self, id: LeaseId) -> Option<&str> {
        self.live(id).ok().map(|l| l.resource.as_str())
    }

    /// The API key whose hex SHA-256 is `hash`.
    pub fn key_by_hash(&self, hash: &str) -> Option<&ApiKey> {
        self.key_by_hash.get(hash).and_then(|n| self.keys.get(n))
    }

    pub fn keys(&self) -> impl Iterator<Item = &ApiKey> {
        self.keys.values()
    }

    /// The lease a `request_id` was granted, if it is still in the idempotency window.
    pub fn granted_request(&self, request_id: &str) -> Option<&LeaseView> {
        self.idempotency.get(request_id).map(|g| &g.lease)
    }

    /// Checks that the state's indexes agree with each other and its tables are within
    /// their bounds. Every command keeps these; `restore` checks them so that corrupted
    /// bytes are refused instead of looping or panicking later, and tests call it after
    /// every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        let now = self.now_ms;
        if self.next_token == 0 || self.next_token == u64::MAX {
            return Err("next_token out of range".into());
        }
        if self.resources.len() > RESOURCES_MAX
            || self.leases.len() > LEASES_MAX
            || self.keys.len() > KEYS_MAX
            || self.ended.len() > TOMBSTONES_MAX
            || self.idempotency.len() > IDEMPOTENCY_WINDOW_LEN_MAX.saturating_mul(2)
        {
            return Err("a table is over its bound".into());
        }
        let mut indexed = 0usize;
        for (name, r) in &self.resources {
            crate::config::validate_name(name).and_then(|()| r.config.validate())?;
            if r.buckets.len() != r.config.rate.len()
                || !r
                    .config
                    .rate
                    .iter()
                    .zip(&r.buckets)
                    .all(|(rl, b)| b.is_sane(rl, now))
            {
                return Err(format!("buckets of {name} do not match its limits"));
            }
            for &(at, token) in &r.leases {
                match self.leases.get(&token) {
                    Some(l) if l.expires_at_ms == at && &l.resource == name => {}
                    _ => return Err(format!("lease {token} of {name} is not live")),
                }
            }
            indexed += r.leases.len();
        }
        if indexed != self.leases.len() || self.expiry.len() != self.leases.len() {
            return Err("lease indexes disagree".into());
        }
        for (&token, l) in &self.leases {
            if token == 0
                || token >= self.next_token
                || self.ended.contains_key(&token)
                || !self.expiry.contains(&(l.expires_at_ms, token))
            {
                return Err(format!("lease {token} is mis-indexed"));
            }
        }
        if self
            .ended
            .last_key_value()
            .is_some_and(|(&t, _)| t >= self.next_token)
        {
            return Err("an ended lease was never issued".into());
        }
        let order: BTreeSet<&String> = self.idempotency_order.iter().collect();
        if order.len() != self.idempotency_order.len()
            || order.len() != self.idempotency.len()
            || !order.iter().all(|id| self.idempotency.contains_key(*id))
            || self
                .idempotency
                .values()
                .any(|g| g.at_ms > now || g.lease.id.token >= self.next_token)
        {
            return Err("idempotency window indexes disagree".into());
        }
        if self.key_by_hash.len() != self.keys.len()
            || !self
                .keys
                .iter()
                .all(|(name, k)| &k.name == name && self.key_by_hash.get(&k.hash) == Some(name))
        {
            return Err("key indexes disagree".into());
        }
        Ok(())
    }

    /// Serialises the whole state: `[version][bincode]`. Equal states give equal bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = vec![SNAPSHOT_VERSION];
        // Encoding plain owned data into a Vec cannot fail.
        if let Ok(body) = bincode::serde::encode_to_vec(self, bincode::config::standard()) {
            out.extend_from_slice(&body);
        }
        out
    }

    /// Rebuilds a state from `snapshot` bytes: the version must match, the bytes must
    /// decode completely, and the result must pass `check_invariants`.
    pub fn restore(bytes: &[u8]) -> Result<State, SnapshotError> {
        let (&version, body) = bytes.split_first().ok_or(SnapshotError::Empty)?;
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version(version));
        }
        let (state, used) =
            decode_bounded(body).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        if used != body.len() {
            return Err(SnapshotError::Decode(format!(
                "{} trailing bytes",
                body.len() - used
            )));
        }
        // Bytes that decode are not yet a state: a corrupted snapshot could index a lease
        // by expiry that does not exist, and `tick` would never finish.
        state
            .check_invariants()
            .map_err(|e| SnapshotError::Decode(format!("inconsistent state: {e}")))?;
        Ok(state)
    }
}

/// Decodes a snapshot body with bincode's memory bound set from the body's length.
///
/// bincode allocates a string's buffer from its length prefix before reading it, so a
/// corrupted prefix can ask for petabytes and abort the process. Its decode limit bounds
/// the memory claimed while decoding. A valid body claims at most 16 bytes per encoded
/// byte (the worst case is a one-byte varint decoding to an `i128`), so the limit is the
/// first tier at or above 16 × the body's length (the limit is a const generic, hence
/// tiers rather than the exact figure).
fn decode_bounded(body: &[u8]) -> Result<(State, usize), bincode::error::DecodeError> {
    /// `2^bits` bytes less one, or `usize::MAX` where that does not fit.
    const fn bound(bits: u32) -> usize {
        usize::MAX >> usize::BITS.saturating_sub(bits)
    }
    fn decode<const LIMIT: usize>(
        body: &[u8],
    ) -> Result<(State, usize), bincode::error::DecodeError> {
        bincode::serde::decode_from_slice(body, bincode::config::standard().with_limit::<LIMIT>())
    }
    let claims = body.len().saturating_mul(16);
    if claims <= bound(24) {
        decode::<{ bound(24) }>(body)
    } else if claims <= bound(28) {
        decode::<{ bound(28) }>(body)
    } else if claims <= bound(32) {
        decode::<{ bound(32) }>(body)
    } else {
        decode::<{ bound(36) }>(body)
    }
}
