//! The replicated limiter state machine.
//!
//! `State` holds resources, live leases, buckets, API keys, the idempotency window and
//! cluster time. `apply_entry(now_ms, commands)` is the only way it changes, and it is a
//! pure function of the previous state and its arguments: integers only, ordered maps
//! only, no clock, no randomness. Every replica, the leader's speculative copy and the
//! checkers run this same code.
//!
//! This file holds the public command/outcome types, `State` itself and the dispatch of
//! a command; each table's rules live in a submodule: `leases` (grant, release, renew,
//! expiry, tombstones), `resources` (resource configs, buckets, `fit`, limit views),
//! `keys` (API key records), `idempotency` (the `request_id` window), `snapshot`
//! (bytes, restore, `check_invariants`) and `estimate` (the wait of a request that does
//! not fit: its binding limit and `retry_after_ms`; read-only).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::{Per, ResourceConfig};
use crate::keys::ApiKey;

mod estimate;
mod feedback;
mod idempotency;
mod keys;
mod leases;
mod resources;
mod snapshot;
mod tables;

pub use estimate::{Ahead, Binding, Estimate, EXPIRY_SCAN_MAX, HOLD_GUESS_MS_MIN};
pub(crate) use idempotency::same_request;
use idempotency::IdempotentGrant;
pub use idempotency::RequestKey;
use leases::{Ended, Lease, Tombstone};
use resources::Resource;
pub use resources::ResourceStats;
pub use snapshot::{SnapshotError, SNAPSHOT_VERSION};
use tables::{Map, Seq, Set};

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
        // Only the text form `Display` writes: decimal digits without a sign or leading
        // zero, then 16 lower-case hex digits. (`u64::from_str` alone also takes `+7`,
        // `007` and upper case, so one lease had many ids.)
        let (token, nonce) = s.split_once('-').ok_or(())?;
        if nonce.len() != 16
            || token.is_empty()
            || token.len() > 20
            || (token.len() > 1 && token.starts_with('0'))
            || !token.bytes().all(|b| b.is_ascii_digit())
            || !nonce
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
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
    /// Scoped to (`owner`, `resource`): see `RequestKey`.
    pub request_id: Option<String>,
    pub nonce: u64,
    /// Who holds the lease, as the caller labelled itself (`holder` on acquire; see
    /// `config::validate_holder`). Shown only; it decides nothing.
    pub holder: Option<String>,
    /// The key that asked (`scope::Caller::owner`); `None`: the admin token. Only this
    /// key (or an admin) may release or renew the lease.
    pub owner: Option<String>,
    /// How long the caller was willing to wait (its `wait_ms`; 0: try once). Decides
    /// only the shadow of a dry-run grant: a request that enforce would have made wait
    /// longer than this would have been refused, so it is not charged.
    pub wait_ms: u64,
}

impl Grant {
    /// The idempotency key of this grant, if it carries a `request_id`.
    pub fn request_key(&self) -> Option<RequestKey> {
        self.request_id.as_ref().map(|id| RequestKey {
            owner: self.owner.clone(),
            resource: self.resource.clone(),
            request_id: id.clone(),
        })
    }
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
    /// Creates a key; refused (`KeyExists`) if the name is taken. `key.expires_at_ms`
    /// is ignored: the key expires `expires_in_ms` after this command's cluster time.
    CreateKey {
        key: ApiKey,
        expires_in_ms: Option<u64>,
    },
    /// Gives an existing key a new secret (its hash), keeping its scope; the old secret
    /// stops authenticating. The new secret expires `expires_in_ms` after this
    /// command's cluster time (`None`: never).
    RotateKey {
        name: String,
        hash: String,
        expires_in_ms: Option<u64>,
    },
    DeleteKey {
        name: String,
    },
    /// What the provider answered the holder of `lease` (docs/semantics.md, "Provider
    /// feedback"): applied to the lease's resource by its `feedback` policy.
    Report {
        lease: LeaseId,
        report: Report,
    },
}

/// The provider's own figures, as a lease holder read them from its answer (rate
/// headers, a 429). Durations are from when the report is applied (cluster time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Requests the provider still allows in its window (`x-ratelimit-remaining-requests`).
    pub remaining_requests: Option<u64>,
    /// Tokens the provider still allows in its window (`x-ratelimit-remaining-tokens`).
    pub remaining_tokens: Option<u64>,
    /// Until the provider's request window resets.
    pub reset_requests_ms: Option<u64>,
    /// Until the provider's token window resets.
    pub reset_tokens_ms: Option<u64>,
    /// The provider's `retry-after`.
    pub retry_after_ms: Option<u64>,
    /// The provider refused the call (HTTP 429).
    pub rate_limited: bool,
}

/// Which limit a figure is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitKind {
    Concurrency,
    Request,
    Load,
    /// The provider refused a call (a reported 429): grants pause until its reset.
    Provider,
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

/// What an enforced resource would have done with a grant that a dry-run resource made
/// at once (`Outcome::Granted::shadow`). Decided by the same `fit` an enforced grant
/// passes, on the same state, at the same cluster time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shadow {
    pub decision: ShadowDecision,
    /// How long enforce would have kept the request waiting for the binding limit (0
    /// when it fits now or can never fit).
    pub wait_ms: u64,
    /// The limit that would have bound (`None` when it fits now).
    pub binding: Option<LimitKind>,
}

/// The enforce decision of a dry-run grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShadowDecision {
    /// Granted at once as well. Charged to the limits.
    Grant,
    /// Queued about `wait_ms`, then granted (within the caller's `wait_ms`). Charged to
    /// the limits now, so that later requests see the backlog it would have formed.
    Wait,
    /// Refused `would_block` (the caller would not wait). Not charged.
    WouldBlock,
    /// Refused `wait_timeout` (the wait exceeds the caller's `wait_ms`). Not charged.
    WaitTimeout,
    /// Refused `load_exceeds_limit` (the load can never fit). Not charged.
    LoadExceedsLimit,
}

impl ShadowDecision {
    /// Whether enforce would have granted the request (now or after its wait).
    pub fn grants(self) -> bool {
        matches!(self, ShadowDecision::Grant | ShadowDecision::Wait)
    }
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

/// A live lease as the dashboard lists it (`State::held`). The nonce is left out: the
/// lease id is its holder's capability, the fencing token is public.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLease {
    pub token: u64,
    pub lane: String,
    pub load: u64,
    pub holder: Option<String>,
    /// The key that acquired it (`None`: the admin token), as `scope::Caller::owner`.
    pub owner: Option<String>,
    /// Cluster time of the grant.
    pub granted_at_ms: u64,
    pub expires_at_ms: u64,
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
    /// A `request_id` this key already used on this resource, with other parameters
    /// (lane, load or TTL).
    RequestIdReused,
    /// `CreateKey` of a name that exists.
    KeyExists,
    /// `RotateKey` of a name that does not exist.
    KeyNotFound,
    Invalid(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// `duplicate`: the request id was already granted; this is that same lease.
    /// `shadow`: on a dry-run resource, what enforce would have done (`None` in
    /// enforce mode, and for a duplicate).
    Granted {
        lease: LeaseView,
        limits: Vec<LimitView>,
        duplicate: bool,
        shadow: Option<Shadow>,
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
    /// A report was applied: the limits after it, and how long grants now pause (0:
    /// not paused).
    Reported {
        limits: Vec<LimitView>,
        paused_ms: u64,
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

/// The whole replicated state. Ordered containers only, so that serialisation is
/// byte-identical across replicas that applied the same log; persistent ones
/// (`tables.rs`), so that `clone` is O(1) and a snapshot never holds up apply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    now_ms: u64,
    /// Fencing token of the next grant; tokens start at 1 and only grow.
    next_token: u64,
    #[serde(with = "tables::map")]
    resources: Map<String, Resource>,
    #[serde(with = "tables::map")]
    leases: Map<u64, Lease>,
    /// All live leases by expiry: `(expires_at_ms, token)`.
    #[serde(with = "tables::set")]
    expiry: Set<(u64, u64)>,
    /// Recently ended leases, so a late release or renew gets the right answer.
    /// Kept `TOMBSTONE_WINDOW_MS` of cluster time, at most `TOMBSTONES_MAX`.
    #[serde(with = "tables::map")]
    ended: Map<u64, Tombstone>,
    /// Tokens of `ended` in the order they ended, for forgetting by age and count.
    #[serde(with = "tables::seq")]
    ended_order: Seq<u64>,
    #[serde(with = "tables::map")]
    idempotency: Map<RequestKey, IdempotentGrant>,
    /// Request ids in grant order, for eviction by age and by count.
    #[serde(with = "tables::seq")]
    idempotency_order: Seq<RequestKey>,
    #[serde(with = "tables::map")]
    keys: Map<String, ApiKey>,
    #[serde(with = "tables::map")]
    key_by_hash: Map<String, String>,
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

    /// Entries in each table, by name: what the state holds (for `/metrics` and the soak).
    /// `expiry` has one entry per lease, `ended` and `ended_order` one per tombstone,
    /// `idempotency` and `idempotency_order` one per remembered request id.
    pub fn table_sizes(&self) -> [(&'static str, usize); 8] {
        [
            ("resources", self.resources.len()),
            ("leases", self.leases.len()),
            ("expiry", self.expiry.len()),
            ("tombstones", self.ended.len()),
            ("tombstone_order", self.ended_order.len()),
            ("request_ids", self.idempotency.len()),
            ("request_id_order", self.idempotency_order.len()),
            ("keys", self.keys.len()),
        ]
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
        while let Some(&(at, token)) = self.expiry.get_min() {
            if at > now {
                break;
            }
            self.end_lease(token, Ended::Expired);
        }
        self.forget_old_tombstones();
        self.forget_old_requests();
    }

    /// Applies one command at the current cluster time.
    pub fn apply_command(&mut self, command: &Command) -> Outcome {
        match command {
            Command::PutResource { name, config } => self.put_resource(name, config),
            Command::DeleteResource { name } => self.delete_resource(name),
            Command::Grant(g) => self.grant(g),
            Command::Release { lease, actual_load } => self.release(*lease, *actual_load),
            Command::Renew { lease, ttl_ms } => self.renew(*lease, *ttl_ms),
            Command::CreateKey { key, expires_in_ms } => self.create_key(key, *expires_in_ms),
            Command::RotateKey {
                name,
                hash,
                expires_in_ms,
            } => self.rotate_key(name, hash, *expires_in_ms),
            Command::DeleteKey { name } => self.delete_key(name),
            Command::Report { lease, report } => self.report(*lease, report),
        }
    }
}

#[cfg(test)]
mod lease_id_tests {
    use super::LeaseId;

    /// Found by the `json_body` fuzz target (path parameters): `3-00000A0010952521`
    /// named the lease `3-00000a0010952521`; so did `+3-…` and `03-…`.
    #[test]
    fn a_lease_id_parses_only_from_its_own_text() {
        let id = LeaseId {
            token: 3,
            nonce: 0xa0010952521,
        };
        assert_eq!(id.to_string(), "3-00000a0010952521");
        assert_eq!("3-00000a0010952521".parse::<LeaseId>(), Ok(id));
        for other in [
            "3-00000A0010952521",
            "+3-00000a0010952521",
            "03-00000a0010952521",
            "3-+0000a0010952521",
            "-00000a0010952521",
            "3-0000a0010952521",
            "18446744073709551616-00000a0010952521",
        ] {
            assert_eq!(other.parse::<LeaseId>(), Err(()), "{other}");
        }
        let max = LeaseId {
            token: u64::MAX,
            nonce: u64::MAX,
        };
        assert_eq!(max.to_string().parse::<LeaseId>(), Ok(max));
        let zero = LeaseId { token: 0, nonce: 0 };
        assert_eq!(zero.to_string().parse::<LeaseId>(), Ok(zero));
    }
}
