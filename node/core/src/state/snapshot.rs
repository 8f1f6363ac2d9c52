//! Snapshots: the state's bytes (`[version][bincode]`, equal states give equal bytes),
//! `restore` with bounded decoding, and `check_invariants`, which every restore passes.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::idempotency::IdempotentGrant;
use super::leases::{Ended, Lease, Tombstone};
use super::resources::Resource;
use super::tables::{self, Map, Seq, Set};
use super::{RequestKey, State};
use crate::bucket::Bucket;
use crate::codec::decode_bounded;
use crate::config::{LaneConfig, Mode, RateLimit, ResourceConfig};
use crate::keys::ApiKey;
use crate::{IDEMPOTENCY_WINDOW_LEN_MAX, KEYS_MAX, LEASES_MAX, RESOURCES_MAX, TOMBSTONES_MAX};

/// 2: tombstones carry the lease nonce. 3: leases carry their grant time and holder
/// label. 4: leases carry their owner, the idempotency window is keyed by (owner,
/// resource, request_id), keys carry lanes, a priority bound, quotas and an expiry.
/// 5: tombstones carry when they ended, in an order of their own (`ended_order`), so
/// they are forgotten by age as well as count. Version 4 snapshots are still restored
/// (`StateV4`: the log records and peer messages of a version-4 build are the same, so
/// such a cluster can be rolled); older versions are refused (docs/operations.md,
/// "Upgrading"): the log records and peer messages that would carry them are refused by
/// version too, so no build ever decodes a record of another layout.
/// 6: resource configs carry a mode (enforce or dry run), leases whether their grant was
/// charged to the limits. Versions 5 and 4 are still restored (`StateV5`, `StateV4`:
/// every resource enforced, every lease charged, as those builds did).
/// 7: resource configs carry a feedback policy, resources their provider pause
/// (`paused_until_ms`, `rate_limited_streak`); 6 is still restored (`StateV6`: no policy,
/// not paused).
/// 8: leases keep their dry-run shadow (a retry of its `request_id` gets it again); 7 is
/// still restored (`StateV7`: leases without one). The log records and peer messages
/// are those of version 7.
pub const SNAPSHOT_VERSION: u8 = 8;

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
            if r.paused_until_ms > now.saturating_add(crate::PAUSE_MS_MAX) {
                return Err(format!("{name} is paused beyond any report"));
            }
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
                || l.granted_at_ms > now
                || l.holder
                    .as_deref()
                    .is_some_and(|h| crate::config::validate_holder(h).is_err())
            {
                return Err(format!("lease {token} is mis-indexed"));
            }
        }
        if self
            .ended
            .get_max()
            .is_some_and(|&(t, _)| t >= self.next_token)
        {
            return Err("an ended lease was never issued".into());
        }
        let mut prev_ended = 0;
        let mut seen = BTreeSet::new();
        for &token in self.ended_order.iter() {
            let Some(t) = self.ended.get(&token) else {
                return Err(format!("ended lease {token} is not remembered"));
            };
            if t.ended_at_ms < prev_ended || t.ended_at_ms > now || !seen.insert(token) {
                return Err("tombstones out of order".into());
            }
            prev_ended = t.ended_at_ms;
        }
        if seen.len() != self.ended.len() {
            return Err("tombstone indexes disagree".into());
        }
        let order: BTreeSet<&RequestKey> = self.idempotency_order.iter().collect();
        if order.len() != self.idempotency_order.len()
            || order.len() != self.idempotency.len()
            || !order.iter().all(|id| self.idempotency.contains_key(*id))
            || self
                .idempotency
                .values()
                .any(|g| g.at_ms > now || g.lease.id.token >= self.next_token)
            || self
                .idempotency
                .iter()
                .any(|(k, g)| k.resource != g.lease.resource)
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
        for k in self.keys.values() {
            k.validate()?;
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
        let decode = |e: bincode::error::DecodeError| SnapshotError::Decode(e.to_string());
        let (state, used) = match version {
            SNAPSHOT_VERSION => decode_bounded::<State>(body).map_err(decode)?,
            7 => upgraded(decode_bounded::<StateV7>(body).map_err(decode)?),
            6 => upgraded(decode_bounded::<StateV6>(body).map_err(decode)?),
            5 => upgraded(decode_bounded::<StateV5>(body).map_err(decode)?),
            4 => upgraded(decode_bounded::<StateV4>(body).map_err(decode)?),
            _ => return Err(SnapshotError::Version(version)),
        };
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

/// An older layout decoded (with the bytes it used), as today's state.
fn upgraded<R, L, T>((old, used): (StateOld<R, L, T>, usize)) -> (State, usize)
where
    R: Clone + Into<Resource>,
    L: Clone + Into<Lease>,
    T: TombstonesOld,
{
    (old.upgrade(), used)
}

// The older layouts. bincode writes a struct as its fields in order with nothing around
// them, so a struct nested in a field reads exactly the bytes of its fields written in
// line: a version's layout is the current one's with the parts that changed as type
// parameters (`StateOld`, `ResourceOld`) or nested (`ResourceConfigV6`).

/// A resource config as snapshot versions 4 and 5 laid it out: no mode (enforced).
#[derive(Clone, Deserialize)]
struct ResourceConfigV5 {
    concurrency: Option<u32>,
    rate: Vec<RateLimit>,
    lanes: BTreeMap<String, LaneConfig>,
    default_ttl_ms: u64,
    max_queue: u32,
}

/// A resource config as snapshot version 6 laid it out: version 5's and a mode, no
/// feedback policy.
#[derive(Clone, Deserialize)]
struct ResourceConfigV6 {
    v5: ResourceConfigV5,
    mode: Mode,
}

impl From<ResourceConfigV5> for ResourceConfig {
    fn from(c: ResourceConfigV5) -> Self {
        ResourceConfig {
            concurrency: c.concurrency,
            rate: c.rate,
            lanes: c.lanes,
            default_ttl_ms: c.default_ttl_ms,
            max_queue: c.max_queue,
            mode: Mode::Enforce,
            feedback: None,
        }
    }
}

impl From<ResourceConfigV6> for ResourceConfig {
    fn from(c: ResourceConfigV6) -> Self {
        ResourceConfig {
            mode: c.mode,
            ..c.v5.into()
        }
    }
}

/// A resource as snapshot versions 4 to 6 laid it out (with that version's config): no
/// provider pause.
#[derive(Clone, Deserialize)]
struct ResourceOld<C> {
    config: C,
    buckets: Vec<Bucket>,
    #[serde(with = "tables::set")]
    leases: Set<(u64, u64)>,
    grants_total: u64,
}

impl<C: Into<ResourceConfig>> From<ResourceOld<C>> for Resource {
    fn from(r: ResourceOld<C>) -> Self {
        Resource {
            config: r.config.into(),
            buckets: r.buckets,
            leases: r.leases,
            grants_total: r.grants_total,
            paused_until_ms: 0,
            rate_limited_streak: 0,
        }
    }
}

/// A lease as snapshot versions 4 and 5 laid it out: always charged.
#[derive(Clone, Deserialize)]
struct LeaseV5 {
    nonce: u64,
    resource: String,
    lane: String,
    load: u64,
    ttl_ms: u64,
    expires_at_ms: u64,
    granted_at_ms: u64,
    holder: Option<String>,
    owner: Option<String>,
}

impl From<LeaseV5> for Lease {
    fn from(l: LeaseV5) -> Self {
        Lease {
            nonce: l.nonce,
            resource: l.resource,
            lane: l.lane,
            load: l.load,
            ttl_ms: l.ttl_ms,
            expires_at_ms: l.expires_at_ms,
            granted_at_ms: l.granted_at_ms,
            holder: l.holder,
            owner: l.owner,
            charged: true,
            shadow: None,
        }
    }
}

/// A lease as snapshot versions 6 and 7 laid it out: version 5's and a charged flag, no
/// shadow.
#[derive(Clone, Deserialize)]
struct LeaseV7 {
    v5: LeaseV5,
    charged: bool,
}

impl From<LeaseV7> for Lease {
    fn from(l: LeaseV7) -> Self {
        Lease {
            charged: l.charged,
            ..l.v5.into()
        }
    }
}

/// The tombstones of an older layout (`ended`, and from version 5 `ended_order`), and
/// what they are today.
trait TombstonesOld {
    /// `ended` and `ended_order` of a state whose cluster time is `now_ms`.
    fn upgrade(self, now_ms: u64) -> (Map<u64, Tombstone>, Seq<u64>);
}

/// Tombstones as versions 5 and 6 laid them out: as today.
#[derive(Deserialize)]
struct TombstonesV5 {
    #[serde(with = "tables::map")]
    ended: Map<u64, Tombstone>,
    #[serde(with = "tables::seq")]
    ended_order: Seq<u64>,
}

impl TombstonesOld for TombstonesV5 {
    fn upgrade(self, _now_ms: u64) -> (Map<u64, Tombstone>, Seq<u64>) {
        (self.ended, self.ended_order)
    }
}

/// Tombstones as version 4 laid them out: without an end time, and no `ended_order`.
#[derive(Deserialize)]
struct TombstonesV4 {
    #[serde(with = "tables::map")]
    ended: Map<u64, TombstoneV4>,
}

#[derive(Clone, Copy, Deserialize)]
struct TombstoneV4 {
    how: Ended,
    nonce: u64,
}

impl TombstonesOld for TombstonesV4 {
    /// Version 4 kept no end times: every tombstone counts as ended at the snapshot's
    /// cluster time (kept a full `TOMBSTONE_WINDOW_MS` more), oldest token first, as
    /// version 4 forgot them. Replicas upgrading the same snapshot agree.
    fn upgrade(self, now_ms: u64) -> (Map<u64, Tombstone>, Seq<u64>) {
        let ended: Map<u64, Tombstone> = self
            .ended
            .iter()
            .map(|(&token, t)| {
                let t = Tombstone {
                    how: t.how,
                    nonce: t.nonce,
                    ended_at_ms: now_ms,
                };
                (token, t)
            })
            .collect();
        let ended_order: Seq<u64> = ended.keys().copied().collect();
        (ended, ended_order)
    }
}

/// The state as snapshot versions 4 to 7 laid it out: `R` is that version's resource,
/// `L` its lease, `T` its tombstones.
#[derive(Deserialize)]
#[serde(bound(
    deserialize = "R: Deserialize<'de> + Clone, L: Deserialize<'de> + Clone, \
                             T: Deserialize<'de>"
))]
struct StateOld<R, L, T> {
    now_ms: u64,
    next_token: u64,
    #[serde(with = "tables::map")]
    resources: Map<String, R>,
    #[serde(with = "tables::map")]
    leases: Map<u64, L>,
    #[serde(with = "tables::set")]
    expiry: Set<(u64, u64)>,
    tombstones: T,
    #[serde(with = "tables::map")]
    idempotency: Map<RequestKey, IdempotentGrant>,
    #[serde(with = "tables::seq")]
    idempotency_order: Seq<RequestKey>,
    #[serde(with = "tables::map")]
    keys: Map<String, ApiKey>,
    #[serde(with = "tables::map")]
    key_by_hash: Map<String, String>,
}

/// Version 7: today's resources, leases without a shadow.
type StateV7 = StateOld<Resource, LeaseV7, TombstonesV5>;
/// Version 6: resources with a mode, no feedback policy or pause.
type StateV6 = StateOld<ResourceOld<ResourceConfigV6>, LeaseV7, TombstonesV5>;
/// Version 5: resources without a mode, leases without a charged flag.
type StateV5 = StateOld<ResourceOld<ResourceConfigV5>, LeaseV5, TombstonesV5>;
/// Version 4: as version 5, with tombstones of no end time.
type StateV4 = StateOld<ResourceOld<ResourceConfigV5>, LeaseV5, TombstonesV4>;

impl<R, L, T> StateOld<R, L, T>
where
    R: Clone + Into<Resource>,
    L: Clone + Into<Lease>,
    T: TombstonesOld,
{
    fn upgrade(self) -> State {
        let (ended, ended_order) = self.tombstones.upgrade(self.now_ms);
        State {
            now_ms: self.now_ms,
            next_token: self.next_token,
            resources: self
                .resources
                .into_iter()
                .map(|(name, r)| (name, r.into()))
                .collect(),
            leases: self
                .leases
                .into_iter()
                .map(|(token, l)| (token, l.into()))
                .collect(),
            expiry: self.expiry,
            ended,
            ended_order,
            idempotency: self.idempotency,
            idempotency_order: self.idempotency_order,
            keys: self.keys,
            key_by_hash: self.key_by_hash,
        }
    }
}
