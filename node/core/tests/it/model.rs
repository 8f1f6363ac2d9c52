//! A naive reference model of the state machine, random command logs, and the property
//! test comparing `State` with the model after every entry.
//!
//! The model is written for obviousness, not speed: plain `Vec`s searched linearly,
//! every lease ever issued kept with its status, bucket waits found by binary search over
//! "does it fit at that millisecond" instead of a division, i128 everywhere.

use proptest::prelude::*;
use ratequeue_core::config::{Per, ResourceConfig};
use ratequeue_core::state::ResourceStats;
use ratequeue_core::{
    ApiKey, Command, Fit, Grant, LeaseId, LeaseView, LimitKind, LimitView, Outcome, RateLimit,
    Rejection, RequestKey, Role, State, IDEMPOTENCY_WINDOW_MS, KEY_EXPIRES_IN_MS_MAX, LIMIT_MAX,
    LOAD_MAX, QUEUE_LEN_MAX, TOMBSTONE_WINDOW_MS, TTL_MS_MAX, TTL_MS_MIN, WINDOW_MS_MAX,
};

use crate::check::{limits, loads, nonce, requests};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Live,
    Released,
    Expired,
}

#[derive(Clone, Debug)]
pub struct MLease {
    pub id: LeaseId,
    pub resource: String,
    pub lane: String,
    pub load: u64,
    pub ttl: u64,
    pub expires: u64,
    pub status: Status,
    pub owner: Option<String>,
    /// When it stopped being live: its expiry, or the release / delete.
    pub ended_at: u64,
}

/// Tokens held as the exact fraction `num / window_ms`, as of cluster time `at`.
#[derive(Clone, Debug)]
struct MBucket {
    num: i128,
    at: u64,
}

#[derive(Clone, Debug)]
struct MResource {
    name: String,
    config: ResourceConfig,
    buckets: Vec<MBucket>,
    grants_total: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Model {
    pub now: u64,
    pub next_token: u64,
    resources: Vec<MResource>,
    /// Every lease ever issued, in token order.
    pub leases: Vec<MLease>,
    /// `(request key, lease, granted_at)`.
    idem: Vec<(RequestKey, LeaseView, u64)>,
    keys: Vec<ApiKey>,
}

fn cap(rl: &RateLimit) -> i128 {
    i128::from(rl.limit) * i128::from(rl.window_ms)
}

/// Level at `t`: `limit` fractional units per elapsed millisecond, never above capacity.
fn level(rl: &RateLimit, b: &MBucket, t: u64) -> i128 {
    let refilled = b.num + i128::from(t.saturating_sub(b.at)) * i128::from(rl.limit);
    refilled.min(cap(rl))
}

/// Smallest `d` such that `need` fits at `now + d`, by binary search.
fn bucket_wait(rl: &RateLimit, b: &MBucket, now: u64, need: i128) -> u64 {
    let fits = |d: u64| level(rl, b, now + d) >= need;
    if fits(0) {
        return 0;
    }
    let (mut lo, mut hi) = (0u64, 1u64);
    while !fits(hi) {
        hi *= 2;
    }
    // fits(hi) and !fits(lo)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
}

fn valid_config(c: &ResourceConfig) -> bool {
    (c.concurrency.is_some() || !c.rate.is_empty())
        && c.concurrency.is_none_or(|n| n >= 1)
        && c.rate.len() <= 8
        && c.rate.iter().all(|r| {
            (1..=LIMIT_MAX).contains(&r.limit) && (1..=WINDOW_MS_MAX).contains(&r.window_ms)
        })
        && c.lanes.len() <= 64
        && c.lanes
            .iter()
            .all(|(n, l)| valid_name(n) && (1..=1_000).contains(&l.weight))
        && (TTL_MS_MIN..=TTL_MS_MAX).contains(&c.default_ttl_ms)
        && c.max_queue <= QUEUE_LEN_MAX
}

fn invalid() -> Outcome {
    Outcome::Rejected(Rejection::Invalid(String::new()))
}

impl Model {
    pub fn new() -> Self {
        Model {
            next_token: 1,
            ..Model::default()
        }
    }

    fn res(&self, name: &str) -> Option<&MResource> {
        self.resources.iter().find(|r| r.name == name)
    }

    fn res_mut(&mut self, name: &str) -> Option<&mut MResource> {
        self.resources.iter_mut().find(|r| r.name == name)
    }

    pub fn live(&self, resource: &str) -> Vec<&MLease> {
        self.leases
            .iter()
            .filter(|l| l.status == Status::Live && l.resource == resource)
            .collect()
    }

    pub fn apply_entry(&mut self, t: u64, commands: &[Command]) -> Vec<Outcome> {
        self.tick(t);
        commands.iter().map(|c| self.apply(c)).collect()
    }

    pub fn tick(&mut self, t: u64) {
        self.now = self.now.max(t);
        let now = self.now;
        for l in &mut self.leases {
            if l.status == Status::Live && l.expires <= now {
                l.status = Status::Expired;
                l.ended_at = l.expires;
            }
        }
        self.idem.retain(|(_, _, at)| {
            u128::from(*at) + u128::from(IDEMPOTENCY_WINDOW_MS) > u128::from(now)
        });
    }

    pub fn apply(&mut self, c: &Command) -> Outcome {
        match c {
            Command::PutResource { name, config } => self.put(name, config),
            Command::DeleteResource { name } => {
                let existed = self.res(name).is_some();
                let now = self.now;
                for l in &mut self.leases {
                    if l.status == Status::Live && &l.resource == name {
                        l.status = Status::Expired;
                        l.ended_at = now;
                    }
                }
                self.resources.retain(|r| &r.name != name);
                Outcome::ResourceDeleted { existed }
            }
            Command::Grant(g) => self.grant(g),
            Command::Release { lease, actual_load } => self.release(*lease, *actual_load),
            Command::Renew { lease, ttl_ms } => self.renew(*lease, *ttl_ms),
            Command::CreateKey { key, expires_in_ms } => {
                if !valid_name(&key.name) || key.hash.len() != 64 {
                    return invalid();
                }
                let Some(expires_at_ms) = self.key_expiry(*expires_in_ms) else {
                    return invalid();
                };
                if self.keys.iter().any(|o| o.name == key.name) {
                    return Outcome::Rejected(Rejection::KeyExists);
                }
                if self.keys.iter().any(|o| o.hash == key.hash) {
                    return invalid();
                }
                self.keys.push(ApiKey {
                    expires_at_ms,
                    ..key.clone()
                });
                Outcome::KeyPut { created: true }
            }
            Command::RotateKey {
                name,
                hash,
                expires_in_ms,
            } => {
                let Some(expires_at_ms) = self.key_expiry(*expires_in_ms) else {
                    return invalid();
                };
                if !self.keys.iter().any(|o| &o.name == name) {
                    return Outcome::Rejected(Rejection::KeyNotFound);
                }
                if self.keys.iter().any(|o| &o.hash == hash && &o.name != name) {
                    return invalid();
                }
                for k in self.keys.iter_mut().filter(|k| &k.name == name) {
                    k.hash = hash.clone();
                    k.expires_at_ms = expires_at_ms;
                }
                Outcome::KeyPut { created: false }
            }
            Command::DeleteKey { name } => {
                let existed = self.keys.iter().any(|o| &o.name == name);
                self.keys.retain(|o| &o.name != name);
                Outcome::KeyDeleted { existed }
            }
            // The generators make no reports: `feedback.rs` tests them on their own.
            Command::Report { .. } => unreachable!("the model is never sent a report"),
        }
    }

    fn put(&mut self, name: &str, config: &ResourceConfig) -> Outcome {
        if !valid_name(name) || !valid_config(config) {
            return invalid();
        }
        let now = self.now;
        match self.res_mut(name) {
            None => {
                let buckets = config
                    .rate
                    .iter()
                    .map(|rl| MBucket {
                        num: cap(rl),
                        at: now,
                    })
                    .collect();
                self.resources.push(MResource {
                    name: name.into(),
                    config: config.clone(),
                    buckets,
                    grants_total: 0,
                });
                Outcome::ResourcePut { created: true }
            }
            Some(r) => {
                // Each new bucket takes over an old bucket of the same kind, preferring
                // one with the same window; the tokens it holds carry over (rounded
                // down, capped at the new capacity). Unmatched new buckets start full.
                let mut used = vec![false; r.config.rate.len()];
                let mut buckets = Vec::new();
                for new in &config.rate {
                    let pick = |same_window: bool| {
                        (0..r.config.rate.len()).find(|&i| {
                            let old = &r.config.rate[i];
                            !used[i]
                                && old.per == new.per
                                && (!same_window || old.window_ms == new.window_ms)
                        })
                    };
                    let b = match pick(true).or_else(|| pick(false)) {
                        Some(i) => {
                            used[i] = true;
                            let old = &r.config.rate[i];
                            let lvl = level(old, &r.buckets[i], now);
                            let num = (lvl * i128::from(new.window_ms))
                                .div_euclid(i128::from(old.window_ms))
                                .min(cap(new));
                            MBucket { num, at: now }
                        }
                        None => MBucket {
                            num: cap(new),
                            at: now,
                        },
                    };
                    buckets.push(b);
                }
                r.buckets = buckets;
                r.config = config.clone();
                Outcome::ResourcePut { created: false }
            }
        }
    }

    pub fn fit(&self, resource: &str, load: u64) -> Fit {
        let Some(r) = self.res(resource) else {
            return Fit::NoResource;
        };
        let load_max = r
            .config
            .rate
            .iter()
            .filter(|rl| rl.per == Per::Load)
            .map(|rl| rl.limit)
            .min();
        if let Some(load_max) = load_max {
            if load > load_max {
                return Fit::Never { load_max };
            }
        }
        let mut waits: Vec<(u64, LimitKind)> = Vec::new();
        if let Some(c) = r.config.concurrency {
            let mut exp: Vec<u64> = self.live(resource).iter().map(|l| l.expires).collect();
            exp.sort();
            let c = c as usize;
            if exp.len() >= c {
                // Leases must end until fewer than c are held: the (held - c + 1)-th expiry.
                let at = exp[exp.len() - c];
                waits.push(((at - self.now).max(1), LimitKind::Concurrency));
            }
        }
        for (rl, b) in r.config.rate.iter().zip(&r.buckets) {
            let tokens = if rl.per == Per::Request { 1 } else { load };
            let need = i128::from(tokens) * i128::from(rl.window_ms);
            let ms = bucket_wait(rl, b, self.now, need);
            let kind = if rl.per == Per::Request {
                LimitKind::Request
            } else {
                LimitKind::Load
            };
            if ms > 0 {
                waits.push((ms, kind));
            }
        }
        // The binding limit is the one that frees last; the first listed wins ties.
        let mut best: Option<(u64, LimitKind)> = None;
        for w in waits {
            if best.is_none_or(|b| w.0 > b.0) {
                best = Some(w);
            }
        }
        match best {
            None => Fit::Now,
            Some((ms, binding)) => Fit::Wait { ms, binding },
        }
    }

    /// `Some(expires_at_ms)` for a valid `expires_in_ms`, `None` if it is out of range.
    fn key_expiry(&self, expires_in_ms: Option<u64>) -> Option<Option<u64>> {
        match expires_in_ms {
            None => Some(None),
            Some(ms) if (1..=KEY_EXPIRES_IN_MS_MAX).contains(&ms) => Some(Some(self.now + ms)),
            Some(_) => None,
        }
    }

    fn grant(&mut self, g: &Grant) -> Outcome {
        if let Some(id) = &g.request_id {
            let key = RequestKey {
                owner: g.owner.clone(),
                resource: g.resource.clone(),
                request_id: id.clone(),
            };
            if let Some((_, lease, _)) = self.idem.iter().find(|(r, _, _)| *r == key) {
                if lease.lane != g.lane || lease.load != g.load || lease.ttl_ms != g.ttl_ms {
                    return Outcome::Rejected(Rejection::RequestIdReused);
                }
                let live = self
                    .leases
                    .iter()
                    .any(|l| l.id == lease.id && l.status == Status::Live);
                if !live {
                    return Outcome::Rejected(Rejection::GrantEnded);
                }
                return Outcome::Granted {
                    lease: lease.clone(),
                    limits: self.limits(&lease.resource),
                    duplicate: true,
                    shadow: None,
                };
            }
            if id.is_empty() || id.len() > 128 {
                return invalid();
            }
        }
        if g.load > LOAD_MAX || g.ttl_ms < TTL_MS_MIN || g.ttl_ms > TTL_MS_MAX {
            return invalid();
        }
        if !valid_name(&g.lane) {
            return invalid();
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
        let now = self.now;
        let token = self.next_token;
        self.next_token += 1;
        let r = self.res_mut(&g.resource).unwrap();
        for (rl, b) in r.config.rate.iter().zip(r.buckets.iter_mut()) {
            let tokens = if rl.per == Per::Request { 1 } else { g.load };
            b.num = level(rl, b, now) - i128::from(tokens) * i128::from(rl.window_ms);
            b.at = now;
        }
        r.grants_total += 1;
        let id = LeaseId {
            token,
            nonce: g.nonce,
        };
        self.leases.push(MLease {
            id,
            resource: g.resource.clone(),
            lane: g.lane.clone(),
            load: g.load,
            ttl: g.ttl_ms,
            expires: now + g.ttl_ms,
            status: Status::Live,
            owner: g.owner.clone(),
            ended_at: 0,
        });
        let lease = LeaseView {
            id,
            resource: g.resource.clone(),
            lane: g.lane.clone(),
            load: g.load,
            ttl_ms: g.ttl_ms,
        };
        if let Some(rid) = &g.request_id {
            let key = RequestKey {
                owner: g.owner.clone(),
                resource: g.resource.clone(),
                request_id: rid.clone(),
            };
            self.idem.push((key, lease.clone(), now));
        }
        Outcome::Granted {
            lease,
            limits: self.limits(&g.resource),
            duplicate: false,
            shadow: None,
        }
    }

    /// The index of a live lease, or why it is not live.
    fn find(&self, id: LeaseId) -> Result<usize, Rejection> {
        let i = self
            .leases
            .iter()
            .position(|l| l.id.token == id.token)
            .ok_or(Rejection::LeaseNotFound)?;
        let l = &self.leases[i];
        // An ended lease is remembered for TOMBSTONE_WINDOW_MS; then any id with its
        // token is answered as expired, whatever the nonce.
        if l.status != Status::Live && l.ended_at + TOMBSTONE_WINDOW_MS <= self.now {
            return Err(Rejection::LeaseExpired);
        }
        if l.id != id {
            return Err(Rejection::LeaseNotFound);
        }
        match l.status {
            Status::Live => Ok(i),
            Status::Released => Err(Rejection::LeaseReleased),
            Status::Expired => Err(Rejection::LeaseExpired),
        }
    }

    fn release(&mut self, id: LeaseId, actual: Option<u64>) -> Outcome {
        let i = match self.find(id) {
            Ok(i) => i,
            Err(Rejection::LeaseReleased) => return Outcome::Released { already: true },
            Err(e) => return Outcome::Rejected(e),
        };
        if let Some(actual) = actual {
            if actual > LOAD_MAX {
                return invalid();
            }
            let now = self.now;
            let l = self.leases[i].clone();
            let r = self.res_mut(&l.resource).unwrap();
            for (rl, b) in r.config.rate.iter().zip(r.buckets.iter_mut()) {
                if rl.per == Per::Load {
                    let delta =
                        (i128::from(l.load) - i128::from(actual)) * i128::from(rl.window_ms);
                    b.num = (level(rl, b, now) + delta).min(cap(rl));
                    b.at = now;
                }
            }
        }
        self.leases[i].status = Status::Released;
        self.leases[i].ended_at = self.now;
        Outcome::Released { already: false }
    }

    fn renew(&mut self, id: LeaseId, ttl: Option<u64>) -> Outcome {
        let i = match self.find(id) {
            Ok(i) => i,
            Err(e) => return Outcome::Rejected(e),
        };
        let now = self.now;
        let l = &mut self.leases[i];
        let ttl = ttl.unwrap_or(l.ttl);
        if !(TTL_MS_MIN..=TTL_MS_MAX).contains(&ttl) {
            return invalid();
        }
        l.ttl = ttl;
        l.expires = now + ttl;
        Outcome::Renewed {
            lease: LeaseView {
                id,
                resource: l.resource.clone(),
                lane: l.lane.clone(),
                load: l.load,
                ttl_ms: ttl,
            },
        }
    }

    pub fn limits(&self, resource: &str) -> Vec<LimitView> {
        let Some(r) = self.res(resource) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(c) = r.config.concurrency {
            out.push(LimitView {
                kind: LimitKind::Concurrency,
                limit: u64::from(c),
                remaining: i64::from(c) - self.live(resource).len() as i64,
            });
        }
        for (rl, b) in r.config.rate.iter().zip(&r.buckets) {
            let lvl = level(rl, b, self.now);
            // Whole tokens, rounding debt down (-0.5 tokens is -1).
            let mut whole = lvl / i128::from(rl.window_ms);
            if whole * i128::from(rl.window_ms) > lvl {
                whole -= 1;
            }
            out.push(LimitView {
                kind: if rl.per == Per::Request {
                    LimitKind::Request
                } else {
                    LimitKind::Load
                },
                limit: rl.limit,
                remaining: whole as i64,
            });
        }
        out
    }

    pub fn stats(&self, resource: &str) -> Option<ResourceStats> {
        let r = self.res(resource)?;
        Some(ResourceStats {
            held: self.live(resource).len() as u64,
            grants_total: r.grants_total,
            limits: self.limits(resource),
        })
    }

    pub fn config(&self, resource: &str) -> Option<&ResourceConfig> {
        self.res(resource).map(|r| &r.config)
    }

    pub fn live_count(&self) -> usize {
        self.leases
            .iter()
            .filter(|l| l.status == Status::Live)
            .count()
    }
}

// ---------------------------------------------------------------------------------------
// Random logs.

pub const RESOURCES: [&str; 3] = ["a", "b", "gone"];
const LANES: [&str; 3] = ["default", "x", "bad lane"];
const TTLS: [u64; 6] = [100, 250, 1_000, 5_000, 30_000, 99];
pub const REQUEST_IDS: [&str; 4] = ["r0", "r1", "r2", "r3"];
pub const KEY_NAMES: [&str; 3] = ["k0", "k1", "bad key"];
/// Who sends a grant: the admin token or one of two keys.
pub const OWNERS: [Option<&str>; 3] = [None, Some("k0"), Some("k1")];
/// `expires_in_ms` of key commands, valid and not.
pub const KEY_EXPIRIES: [u64; 4] = [0, 1, 60_000, u64::MAX];

pub fn hash(i: u8) -> String {
    format!("{i:064x}")
}

/// Configs the random logs switch between: overlapping kinds, reordered buckets, windows
/// changing, two load buckets, and one invalid config.
pub fn configs() -> Vec<ResourceConfig> {
    let mut lanes = limits(Some(2), &[requests(6, 700)]);
    lanes
        .lanes
        .insert("x".into(), ratequeue_core::LaneConfig { weight: 3 });
    vec![
        limits(Some(2), &[]),
        limits(None, &[requests(5, 1_000)]),
        limits(None, &[loads(100, 1_000)]),
        limits(Some(3), &[requests(4, 500), loads(50, 2_000)]),
        limits(None, &[loads(30, 700), loads(80, 300)]),
        limits(Some(4), &[requests(3, 1_000), loads(100, 1_000)]),
        limits(None, &[loads(100, 1_000), requests(3, 1_000)]),
        limits(Some(1), &[requests(7, 333), requests(20, 5_000)]),
        lanes,
        limits(None, &[]),
    ]
}

/// One abstract operation; lease ids are resolved against the model when the log is built.
#[derive(Clone, Debug)]
pub enum Op {
    Grant {
        res: usize,
        lane: usize,
        load: u64,
        ttl: usize,
        rid: Option<usize>,
        owner: usize,
    },
    /// The same grant again (owner, resource, request id, lane, load, TTL) as one the
    /// model remembers, with a fresh nonce: a client's retry.
    Retry {
        pick: usize,
    },
    Release {
        pick: usize,
        actual: Option<u64>,
        forge: bool,
    },
    Renew {
        pick: usize,
        ttl: Option<usize>,
        forge: bool,
    },
    Put {
        res: usize,
        cfg: usize,
    },
    Delete {
        res: usize,
    },
    CreateKey {
        name: usize,
        hash: u8,
        admin: bool,
        expires: Option<usize>,
    },
    RotateKey {
        name: usize,
        hash: u8,
        expires: Option<usize>,
    },
    DeleteKey {
        name: usize,
    },
}

/// An entry: the leader's stamp moves by `dt` (possibly backwards: a stale stamp).
#[derive(Clone, Debug)]
pub struct Step {
    pub dt: i64,
    pub ops: Vec<Op>,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..3usize, 0..10usize, prop_oneof![0..8u64, 0..120u64], 0..6usize,
              prop::option::weighted(0.3, 0..4usize), 0..OWNERS.len())
            .prop_map(|(res, lane, load, ttl, rid, owner)| Op::Grant {
                res,
                lane: match lane { 0..=4 => 0, 5..=8 => 1, _ => 2 },
                load,
                ttl,
                rid,
                owner,
            }),
        2 => any::<usize>().prop_map(|pick| Op::Retry { pick }),
        4 => (any::<usize>(), prop::option::weighted(0.5, 0..200u64), prop::bool::weighted(0.1))
            .prop_map(|(pick, actual, forge)| Op::Release { pick, actual, forge }),
        2 => (any::<usize>(), prop::option::weighted(0.5, 0..6usize), prop::bool::weighted(0.1))
            .prop_map(|(pick, ttl, forge)| Op::Renew { pick, ttl, forge }),
        1 => (0..3usize, 0..10usize).prop_map(|(res, cfg)| Op::Put { res, cfg }),
        1 => (0..3usize).prop_map(|res| Op::Delete { res }),
        1 => (0..3usize, 0..4u8, any::<bool>(), prop::option::weighted(0.3, 0..KEY_EXPIRIES.len()))
            .prop_map(|(name, hash, admin, expires)| Op::CreateKey { name, hash, admin, expires }),
        1 => (0..3usize, 0..4u8, prop::option::weighted(0.3, 0..KEY_EXPIRIES.len()))
            .prop_map(|(name, hash, expires)| Op::RotateKey { name, hash, expires }),
        1 => (0..3usize).prop_map(|name| Op::DeleteKey { name }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let dt = prop_oneof![
        4 => 0i64..50,
        4 => 0i64..2_000,
        1 => -500i64..0,
        1 => Just(IDEMPOTENCY_WINDOW_MS as i64),
    ];
    (dt, prop::collection::vec(op(), 0..5)).prop_map(|(dt, ops)| Step { dt, ops })
}

/// Random logs. Every log starts by creating resources `a` and `b`.
pub fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(), 1..60).prop_map(|mut steps| {
        steps.insert(
            0,
            Step {
                dt: 0,
                ops: vec![Op::Put { res: 0, cfg: 3 }, Op::Put { res: 1, cfg: 5 }],
            },
        );
        steps
    })
}

/// The concrete command for `op`, given what the model has issued so far.
pub fn resolve(op: &Op, m: &Model, n: &mut u64) -> Command {
    let pick_lease = |pick: usize, forge: bool| -> LeaseId {
        let live: Vec<&MLease> = m
            .leases
            .iter()
            .filter(|l| l.status == Status::Live)
            .collect();
        let mut id = if pick % 10 == 9 || m.leases.is_empty() {
            // Never issued.
            LeaseId {
                token: m.next_token + (pick % 3) as u64,
                nonce: 7,
            }
        } else if !pick.is_multiple_of(3) && !live.is_empty() {
            live[pick / 10 % live.len()].id
        } else {
            m.leases[pick / 10 % m.leases.len()].id
        };
        if forge {
            id.nonce ^= 1 << (pick % 64);
        }
        id
    };
    match op {
        Op::Grant {
            res,
            lane,
            load,
            ttl,
            rid,
            owner,
        } => {
            *n += 1;
            Command::Grant(Grant {
                resource: RESOURCES[*res].into(),
                lane: LANES[*lane].into(),
                load: *load,
                ttl_ms: TTLS[*ttl],
                request_id: rid.map(|r| REQUEST_IDS[r].into()),
                nonce: nonce(*n),
                // Some leases carry a holder label, so that determinism and the
                // snapshot round trip cover it.
                holder: n.is_multiple_of(3).then(|| format!("worker {}", *n % 5)),
                owner: OWNERS[*owner].map(str::to_owned),
                wait_ms: 30_000,
            })
        }
        Op::Retry { pick } => {
            *n += 1;
            match m.idem.get(pick % m.idem.len().max(1)) {
                Some((key, lease, _)) => Command::Grant(Grant {
                    resource: key.resource.clone(),
                    lane: lease.lane.clone(),
                    load: lease.load,
                    ttl_ms: lease.ttl_ms,
                    request_id: Some(key.request_id.clone()),
                    nonce: nonce(*n),
                    holder: None,
                    owner: key.owner.clone(),
                    wait_ms: 30_000,
                }),
                None => Command::DeleteKey {
                    name: KEY_NAMES[pick % KEY_NAMES.len()].into(),
                },
            }
        }
        Op::Release {
            pick,
            actual,
            forge,
        } => Command::Release {
            lease: pick_lease(*pick, *forge),
            actual_load: *actual,
        },
        Op::Renew { pick, ttl, forge } => Command::Renew {
            lease: pick_lease(*pick, *forge),
            ttl_ms: ttl.map(|t| TTLS[t]),
        },
        Op::Put { res, cfg } => Command::PutResource {
            name: RESOURCES[*res].into(),
            config: configs()[*cfg].clone(),
        },
        Op::Delete { res } => Command::DeleteResource {
            name: RESOURCES[*res].into(),
        },
        Op::CreateKey {
            name,
            hash: h,
            admin,
            expires,
        } => Command::CreateKey {
            key: ApiKey::new(
                KEY_NAMES[*name],
                &hash(*h),
                if *admin { Role::Admin } else { Role::Client },
                vec!["a*".into()],
            ),
            expires_in_ms: expires.map(|e| KEY_EXPIRIES[e]),
        },
        Op::RotateKey {
            name,
            hash: h,
            expires,
        } => Command::RotateKey {
            name: KEY_NAMES[*name].into(),
            hash: hash(*h),
            expires_in_ms: expires.map(|e| KEY_EXPIRIES[e]),
        },
        Op::DeleteKey { name } => Command::DeleteKey {
            name: KEY_NAMES[*name].into(),
        },
    }
}

/// Raft entries: `(now_ms, commands)`.
pub type Log = Vec<(u64, Vec<Command>)>;

/// Turns abstract steps into a concrete log, with the model's outcomes and final state.
pub fn build_log(steps: &[Step]) -> (Log, Vec<Vec<Outcome>>, Model) {
    let mut m = Model::new();
    let mut stamp: i64 = 0;
    let mut n = 0;
    let mut log = Vec::new();
    let mut outcomes = Vec::new();
    for s in steps {
        stamp = (stamp + s.dt).max(0);
        let t = stamp as u64;
        m.tick(t);
        let mut commands = Vec::new();
        let mut outs = Vec::new();
        for op in &s.ops {
            let c = resolve(op, &m, &mut n);
            outs.push(m.apply(&c));
            commands.push(c);
        }
        log.push((t, commands));
        outcomes.push(outs);
    }
    (log, outcomes, m)
}

/// `Invalid` messages are prose; the model only knows that a command was invalid.
pub fn normalized(o: &Outcome) -> Outcome {
    match o {
        Outcome::Rejected(Rejection::Invalid(_)) => invalid(),
        other => other.clone(),
    }
}

/// Everything observable about `s` equals the model.
pub fn assert_same(s: &State, m: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(s.now_ms(), m.now);
    prop_assert_eq!(s.next_token(), m.next_token);
    prop_assert_eq!(s.lease_count(), m.live_count());
    for r in RESOURCES {
        prop_assert_eq!(s.limits(r), m.limits(r), "limits of {}", r);
        prop_assert_eq!(s.resource_stats(r), m.stats(r), "stats of {}", r);
        prop_assert_eq!(s.resource(r), m.config(r));
        for load in [0, 1, 7, 50, 99, 101] {
            prop_assert_eq!(
                s.fit(r, load),
                m.fit(r, load),
                "fit of {} at load {}",
                r,
                load
            );
        }
    }
    for l in &m.leases {
        let want = (l.status == Status::Live).then_some(l.resource.as_str());
        prop_assert_eq!(s.lease_resource(l.id), want, "lease {}", l.id);
    }
    for l in &m.leases {
        let want = (l.status == Status::Live).then_some(l.owner.as_deref());
        prop_assert_eq!(s.lease_owner(l.id).ok(), want, "owner of lease {}", l.id);
    }
    for rid in REQUEST_IDS {
        for owner in OWNERS {
            for r in RESOURCES {
                let key = RequestKey {
                    owner: owner.map(str::to_owned),
                    resource: r.into(),
                    request_id: rid.into(),
                };
                let want = m.idem.iter().find(|(k, _, _)| *k == key).map(|(_, l, _)| l);
                prop_assert_eq!(s.granted_request(&key), want);
            }
        }
    }
    for h in 0..4 {
        let want = m.keys.iter().find(|k| k.hash == hash(h));
        prop_assert_eq!(s.key_by_hash(&hash(h)), want);
    }
    let mut keys: Vec<&ApiKey> = m.keys.iter().collect();
    keys.sort_by(|a, b| a.name.cmp(&b.name));
    prop_assert_eq!(s.keys().collect::<Vec<_>>(), keys);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `State` and the model give the same outcome for every command and look the same
    /// after every entry.
    #[test]
    fn state_matches_the_reference_model(steps in steps()) {
        let (log, model_outcomes, _) = build_log(&steps);
        let mut s = State::new();
        let mut m = Model::new();
        for ((t, commands), want) in log.iter().zip(&model_outcomes) {
            let got = s.apply_entry(*t, commands);
            m.apply_entry(*t, commands);
            prop_assert_eq!(got.len(), want.len());
            for ((g, w), c) in got.iter().zip(want).zip(commands) {
                prop_assert_eq!(normalized(g), w.clone(), "at {} for {:?}", t, c);
            }
            assert_same(&s, &m)?;
            prop_assert_eq!(s.check_invariants(), Ok(()));
        }
    }
}

/// The random logs exercise what they should: a weak generator makes a strong-looking
/// property test that proves nothing.
#[test]
fn random_logs_cover_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let steps = steps().new_tree(&mut runner).unwrap().current();
        let (_, outcomes, _) = build_log(&steps);
        for o in outcomes.iter().flatten() {
            let name = match o {
                Outcome::Granted {
                    duplicate: true, ..
                } => "duplicate".to_string(),
                Outcome::Rejected(Rejection::NoRoom { binding, .. }) => {
                    format!("no_room {binding:?}")
                }
                Outcome::Rejected(r) => format!("{r:?}")
                    .split(['(', ' ', '{'])
                    .next()
                    .unwrap()
                    .to_string(),
                Outcome::Released { already } => format!("released {already}"),
                other => format!("{other:?}")
                    .split(['(', ' ', '{'])
                    .next()
                    .unwrap()
                    .to_string(),
            };
            seen.insert(name);
        }
    }
    for want in [
        "Granted",
        "duplicate",
        "no_room Concurrency",
        "no_room Request",
        "no_room Load",
        "released false",
        "released true",
        "Renewed",
        "LeaseExpired",
        "LeaseReleased",
        "LeaseNotFound",
        "LoadExceedsLimit",
        "ResourceNotFound",
        "Invalid",
        "ResourcePut",
        "ResourceDeleted",
        "KeyPut",
        "KeyDeleted",
        "KeyExists",
        "KeyNotFound",
        "RequestIdReused",
        "GrantEnded",
    ] {
        assert!(seen.contains(want), "no {want} in {seen:?}");
    }
}

/// A fixed, non-trivial log (the deterministic runner's first long one with live leases).
pub fn steps_fixed() -> Vec<Step> {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    loop {
        let s = steps().new_tree(&mut runner).unwrap().current();
        if s.len() > 30 && build_log(&s).2.live_count() > 1 {
            return s;
        }
    }
}
