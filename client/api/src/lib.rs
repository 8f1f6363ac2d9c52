//! ratequeue-api: the HTTP wire types of ratequeue (DESIGN.md §5) and its error codes.
//!
//! Shared by the server and the Rust client so that no HTTP struct is defined twice.
//! Plain serde data only: no HTTP library, no I/O. Request bodies reject unknown
//! fields, so a typo in a field name is a 400 and never silently ignored.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `POST /v1/resources/{name}/acquire`. Every field is optional.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// How long to wait in the queue; 0 = try once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// A label for who holds the lease (host, pod, job): 1–128 printable ASCII
    /// characters, shown in the dashboard's lease list. Decides nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Concurrency,
    Request,
    Load,
    /// The provider refused a call (a reported 429): grants pause until its reset.
    Provider,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub kind: LimitKind,
    pub limit: u64,
    pub remaining: i64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub lease_id: String,
    pub resource: String,
    pub lane: String,
    pub load: u64,
    pub fencing_token: u64,
    pub ttl_ms: u64,
    pub queued_ms: u64,
    pub limits: Vec<Limit>,
    /// On a dry-run resource: what enforce would have done with this acquire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
}

/// What an enforced resource would have done with an acquire that a dry-run resource
/// granted at once (docs/semantics.md, "Dry-run mode").
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shadow {
    pub decision: ShadowDecision,
    /// How long enforce would have made the request wait for the binding limit (0 when
    /// it fits now or never can).
    pub wait_ms: u64,
    /// The limit that would have bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitKind>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowDecision {
    /// Granted at once.
    Grant,
    /// Queued `wait_ms`, then granted.
    Wait,
    /// Refused `would_block` (`wait_ms: 0`).
    WouldBlock,
    /// Refused `wait_timeout`: the wait exceeds the request's `wait_ms`.
    WaitTimeout,
    /// Refused `load_exceeds_limit`.
    LoadExceedsLimit,
}

/// `GET /v1/resources/{name}/waiters/{request_id}`: where a waiting acquire stands in
/// the leader's queue (docs/semantics.md, "Waiter progress").
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaiterProgress {
    pub resource: String,
    pub request_id: String,
    pub lane: String,
    pub priority: i32,
    pub load: u64,
    /// 1 = served next in its lane (higher priorities first, then arrival).
    pub position: u64,
    /// False when more than 1 000 waiters are ahead in the lane: `position` (and the
    /// estimate) is then a lower bound.
    pub position_exact: bool,
    /// Waiters of the resource, every lane, expected to be granted before it (0: it is
    /// the head of line).
    pub ahead_in_resource: u64,
    /// Waiters of the resource, every lane, itself included.
    pub queued_in_resource: u64,
    /// The limit its wait is for; absent when none binds (it waits only for those ahead,
    /// or is about to be granted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_limit: Option<LimitKind>,
    /// For a binding `request` or `load` limit: its index in the resource's `rate` list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_bucket: Option<u32>,
    /// The estimated wait from now until its grant (at least 1).
    pub estimated_wait_ms: u64,
    /// How long it has waited on this leader so far.
    pub waited_ms: u64,
}

/// Whether a resource's limits are enforced (the default) or only evaluated.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    DryRun,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_load: Option<u64>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    Released,
    AlreadyReleased,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseResponse {
    pub state: ReleaseState,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewResponse {
    pub lease_id: String,
    pub fencing_token: u64,
    pub ttl_ms: u64,
}

/// `POST /v1/leases/{id}/report`: what the provider answered the lease's holder
/// (docs/semantics.md, "Provider feedback"). Every field is optional; durations in ms
/// from now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// The provider's remaining requests in its window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_requests: Option<u64>,
    /// The provider's remaining tokens in its window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_requests_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_tokens_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// The provider refused the call with a 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<bool>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportResponse {
    /// How long grants on the resource now pause (0: not paused).
    pub paused_ms: u64,
    /// The resource's limits after the report.
    pub limits: Vec<Limit>,
}

/// A resource's provider feedback policy: which buckets take the provider's figures,
/// and the backoff after a 429 that names no reset.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    /// The `per: request` bucket of this window takes `remaining_requests` (default:
    /// the shortest window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_window_ms: Option<u64>,
    /// The `per: load` bucket of this window takes `remaining_tokens` (default: the
    /// shortest window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_window_ms: Option<u64>,
    /// First pause after a 429 without a reset (default 1000), doubled per 429 in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// Longest such pause (default 60000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_max_ms: Option<u64>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    Request,
    Load,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per: Per,
    pub limit: u64,
    pub window_ms: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lane {
    pub weight: u32,
}

/// `PUT /v1/resources/{name}` body, and the `config` of `GET`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate: Vec<Rate>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lanes: BTreeMap<String, Lane>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_ttl_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<u32>,
    /// `enforce` (the default) or `dry_run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Provider feedback policy (reports change nothing without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Feedback>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceStats {
    /// Leases held now.
    pub held: u64,
    /// Waiters per lane (only on the leader; empty on a stale follower read).
    pub queued: BTreeMap<String, u64>,
    pub grants_total: u64,
    pub limits: Vec<Limit>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub name: String,
    pub config: ResourceSpec,
    pub stats: ResourceStats,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceList {
    pub resources: Vec<Resource>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResourceResponse {
    pub name: String,
    pub created: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: resources, keys, membership, every lease.
    Admin,
    /// Leases on the resources its patterns name; reads of those resources.
    Client,
    /// Read only: cluster status, metrics, every resource's view.
    Monitor,
}

/// `POST /v1/keys`. Only `name` and `role` are required.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub name: String,
    pub role: Role,
    /// Glob patterns (`*`, `?`) over resource names (client keys).
    #[serde(default)]
    pub resources: Vec<String>,
    /// Glob patterns over the lanes the key may queue in; empty: every lane.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lanes: Vec<String>,
    /// The highest `priority` the key may ask for; absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_priority: Option<i32>,
    /// Waiters the key may have queued at once (default 1 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_waiters: Option<u32>,
    /// Requests the key may have in flight on one node at once (default 2 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// The key stops authenticating this long after it is created (cluster time);
    /// absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
}

impl CreateKeyRequest {
    /// A key of `role` on `resources`, with the default lanes, priority, quotas and no
    /// expiry.
    pub fn new(name: &str, role: Role, resources: Vec<String>) -> CreateKeyRequest {
        CreateKeyRequest {
            name: name.to_owned(),
            role,
            resources,
            lanes: Vec::new(),
            max_priority: None,
            max_waiters: None,
            max_in_flight: None,
            expires_in_ms: None,
        }
    }
}

/// `POST /v1/keys/{name}/rotate`: a new secret for the key, same scope.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// The new secret's lifetime (cluster time); absent: it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
}

/// A key as listed: its scope, quotas and remaining lifetime (never its secret).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub name: String,
    pub role: Role,
    pub resources: Vec<String>,
    pub lanes: Vec<String>,
    pub max_priority: Option<i32>,
    pub max_waiters: u32,
    pub max_in_flight: u32,
    /// Cluster time left before the key expires; `null`: never; 0: expired.
    pub expires_in_ms: Option<u64>,
}

/// The answer to a create or a rotate: the key text is shown only here, once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    pub key: String,
    #[serde(flatten)]
    pub info: Key,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<Key>,
}

/// `POST /v1/cluster/members`: add a node as a learner, then (by default) promote it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub id: u64,
    pub peer_addr: String,
    pub api_url: String,
    #[serde(default = "yes")]
    pub voter: bool,
}

fn yes() -> bool {
    true
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    pub peer_addr: String,
    pub api_url: String,
    pub voter: bool,
    /// Known on the leader only: last log index replicated to this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_index: Option<u64>,
    /// Known on the leader only: entries this member is behind the leader's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub index: u64,
    pub term: u64,
}

/// `GET /v1/cluster/status`: this node's view of the cluster.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub id: u64,
    pub role: NodeRole,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub leader_url: Option<String>,
    pub members: Vec<Member>,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot: Option<SnapshotInfo>,
    pub storage_bytes: u64,
    /// Cluster time of the last applied entry (DESIGN.md §3).
    pub cluster_time_ms: u64,
    pub leases: u64,
    /// Waiters in the admission queue (leader only).
    pub waiters: u64,
}

/// Request header the dashboard sets on its calls: a follower that would answer 307
/// forwards the request to the leader itself and returns the leader's answer (the page
/// talks only to the node that served it). Never honoured for acquire.
pub const FORWARD_HEADER: &str = "x-ratequeue-forward";

/// The dashboard's aggregated views (`/v1/dashboard/…`, docs/dashboard.md): one call per
/// view and refresh, never one per resource.
pub mod dashboard {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::{ClusterStatus, Key, Limit, LimitKind, ResourceSpec, Role};

    /// `GET /v1/dashboard/session`: who the presented key is, what it may do (the
    /// server's scope rules; the page shows only what they allow), and the members'
    /// API URLs (where to go when the node serving the page dies).
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Session {
        /// Key name; `admin` for the bootstrap admin token.
        pub name: String,
        pub role: Role,
        /// The key as `GET /v1/keys` lists it (its scope, quotas and expiry); `None`
        /// for the bootstrap admin token.
        pub key: Option<Key>,
        pub may: Permissions,
        /// Every member and its advertised API URL (empty until published).
        pub members: Vec<MemberLink>,
        /// The node that answered.
        pub node_id: u64,
    }

    /// What the key may do, from the server's scope rules.
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Permissions {
        /// Resources, keys and membership (admins).
        pub manage: bool,
        /// The cluster view (admin and monitor keys).
        pub read_cluster: bool,
        /// Acquire, release and renew (all but monitor keys).
        pub hold_leases: bool,
        /// Every resource, not only those its patterns name (admin and monitor keys).
        pub see_every_resource: bool,
        /// Every lease's details, not only its own (admin and monitor keys).
        pub see_every_lease: bool,
    }

    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct MemberLink {
        pub id: u64,
        pub api_url: String,
    }

    /// `GET /v1/dashboard/resources` sort keys.
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum SortKey {
        #[default]
        Name,
        /// Leases held now.
        Held,
        /// The fullest limit: used / limit of the limit closest to (or past) its bound.
        Usage,
        Waiting,
        /// Grants per second over the last 10 s.
        Rate,
    }

    /// One row of the resources list: config and live use.
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ResourceRow {
        pub name: String,
        pub config: ResourceSpec,
        pub held: u64,
        pub limits: Vec<Limit>,
        /// Waiters per lane (leader's queue, sampled each second).
        pub waiting: BTreeMap<String, u64>,
        pub waiting_total: u64,
        /// The fullest limit's used / limit (may exceed 1 while a load bucket is in debt).
        pub usage: f64,
        /// Grants per second over the last 10 s.
        pub grants_per_s: f64,
    }

    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ResourcePage {
        /// Visible resources matching the filter.
        pub total: u64,
        pub offset: u64,
        pub rows: Vec<ResourceRow>,
        pub node_id: u64,
        /// Cluster time of the applied state the rows were read from.
        pub cluster_time_ms: u64,
    }

    /// `GET /v1/dashboard/resources/{name}`: everything the one-resource view shows.
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ResourceDetail {
        pub name: String,
        pub config: ResourceSpec,
        pub held: u64,
        pub grants_total: u64,
        pub limits: Vec<Limit>,
        pub queue: Queue,
        pub leases: Leases,
        /// `None` when the node's series table is full (docs/dashboard.md).
        pub series: Option<Series>,
        pub node_id: u64,
        pub cluster_time_ms: u64,
    }

    /// The leader's queue of one resource.
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Queue {
        pub waiting: u64,
        pub lanes: Vec<LaneQueue>,
        /// The candidate served next; nothing behind it is granted first.
        pub head: Option<HeadOfLine>,
        /// Why the head waits: the limit that frees up last. `None` when nobody waits
        /// or the head fits now (it is being granted).
        pub binding: Option<Binding>,
        /// Some priority groups were left out (at most 256 are listed).
        pub truncated: bool,
    }

    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct LaneQueue {
        pub lane: String,
        pub weight: u32,
        pub waiting: u64,
        /// Highest priority first.
        pub priorities: Vec<PriorityQueue>,
    }

    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PriorityQueue {
        pub priority: i32,
        pub waiting: u64,
        /// How long the group's oldest waiter has waited.
        pub oldest_wait_ms: u64,
    }

    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct HeadOfLine {
        pub lane: String,
        pub priority: i32,
        pub load: u64,
        pub waited_ms: u64,
        /// Its estimated wait from now until its grant (the waiter progress estimate:
        /// the binding limit's refill, or for concurrency the observed hold times).
        pub estimated_wait_ms: u64,
    }

    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Binding {
        pub kind: LimitKind,
        /// When that limit has room for the head if nobody releases first.
        pub free_in_ms: u64,
    }

    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Leases {
        /// Leases held now, by every key.
        pub held: u64,
        /// Those the caller may see (a client key: its own), at most 100, soonest
        /// expiry first.
        pub shown: Vec<HeldLease>,
        /// Leases held by other keys, counted but not shown to this caller.
        pub others: u64,
    }

    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct HeldLease {
        pub fencing_token: u64,
        pub lane: String,
        pub load: u64,
        pub holder: Option<String>,
        /// The key that acquired it; `None`: the bootstrap admin token.
        pub owner: Option<String>,
        /// Cluster time since the grant.
        pub age_ms: u64,
        /// Cluster time until expiry unless renewed.
        pub expires_in_ms: u64,
    }

    /// Per-second points, oldest first; the last point is the second that ended at
    /// `end_unix_ms` (the answering node's wall clock). `null` = not known then (the
    /// leader-only figures before this node led; wait times in a second without grants).
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Series {
        pub step_ms: u64,
        pub end_unix_ms: u64,
        pub grants: Vec<u32>,
        pub load: Vec<u64>,
        pub rejections: Vec<Option<u32>>,
        pub waiting: Vec<Option<u32>>,
        pub wait_p50_ms: Vec<Option<u32>>,
        pub wait_p99_ms: Vec<Option<u32>>,
    }

    /// `GET /v1/dashboard/cluster`: every member's own view, gathered by the answering
    /// node (members are asked in parallel, each with a short timeout).
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Cluster {
        pub node_id: u64,
        pub members: Vec<MemberHealth>,
    }

    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct MemberHealth {
        pub id: u64,
        pub api_url: String,
        pub voter: bool,
        /// Its `/readyz`: true on 200.
        pub ready: bool,
        /// `/readyz`'s text, or why the member could not be reached.
        pub detail: String,
        /// Its `GET /v1/cluster/status`, when it answered.
        pub status: Option<ClusterStatus>,
    }
}

/// Every error code of the API (DESIGN.md §5), by its wire name (`as_str`).
///
/// A server newer than its client may answer with a code the client does not know: it
/// decodes as [`ErrorCode::Unknown`] with its wire name kept, so the answer is still a
/// definite API error with its HTTP status and message, never a decoding failure. Match
/// with a wildcard arm: codes are added over time (`#[non_exhaustive]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    ResourceNotFound,
    LeaseNotFound,
    KeyNotFound,
    MemberNotFound,
    /// No acquire with that `request_id` waits (it was granted, refused, or never queued).
    WaiterNotFound,
    /// `POST /v1/keys` with a name that exists (rotate it instead).
    KeyExists,
    LeaseExpired,
    LoadExceedsLimit,
    /// A member being added is unreachable or did not prove it is the node named
    /// (its identity proof, and with TLS its certificate).
    MemberUnverified,
    /// A `request_id` this key already used on this resource with another lane, load or
    /// TTL (after draft-ietf-httpapi-idempotency-key-header: 422).
    RequestIdReused,
    QueueFull,
    WaitTimeout,
    WouldBlock,
    /// The key's `max_waiters` or `max_in_flight` is reached.
    QuotaExceeded,
    /// Too many failed authentications from this source address; retry later.
    AuthThrottled,
    /// The request body did not arrive in time.
    RequestTimeout,
    PayloadTooLarge,
    NoLeader,
    ShuttingDown,
    /// The node is at its connection cap (total or for the source address); retry,
    /// possibly on another node.
    TooManyConnections,
    /// A replicated write did not finish in time: it may or may not have been applied.
    /// Retry acquire with the same `request_id`; release and renew are idempotent.
    CommitTimeout,
    Internal,
    /// A code this version does not know (from a newer server), with its wire name.
    /// Never sent by this version's server; never built with a known name (it would
    /// not compare equal to that code).
    #[serde(untagged)]
    Unknown(String),
}

impl ErrorCode {
    /// The HTTP status the server answers this code with. `Unknown` codes are never
    /// sent by this version: 500 (a client reads the status from the answer itself).
    pub fn status(&self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidRequest => 400,
            Unauthorized => 401,
            Forbidden => 403,
            ResourceNotFound | LeaseNotFound | KeyNotFound | MemberNotFound | WaiterNotFound => 404,
            RequestTimeout => 408,
            KeyExists => 409,
            LeaseExpired => 410,
            PayloadTooLarge => 413,
            LoadExceedsLimit | MemberUnverified | RequestIdReused => 422,
            QueueFull | WaitTimeout | WouldBlock | QuotaExceeded | AuthThrottled => 429,
            Internal | Unknown(_) => 500,
            NoLeader | ShuttingDown | TooManyConnections => 503,
            CommitTimeout => 504,
        }
    }

    /// Whether the request certainly did not take effect and may be sent again as is.
    /// False for `Unknown` codes: nothing is known of them.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ErrorCode::NoLeader | ErrorCode::ShuttingDown | ErrorCode::TooManyConnections
        )
    }

    /// The wire name (`snake_case`).
    pub fn as_str(&self) -> &str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            ResourceNotFound => "resource_not_found",
            LeaseNotFound => "lease_not_found",
            KeyNotFound => "key_not_found",
            MemberNotFound => "member_not_found",
            WaiterNotFound => "waiter_not_found",
            KeyExists => "key_exists",
            LeaseExpired => "lease_expired",
            LoadExceedsLimit => "load_exceeds_limit",
            MemberUnverified => "member_unverified",
            RequestIdReused => "request_id_reused",
            QueueFull => "queue_full",
            WaitTimeout => "wait_timeout",
            WouldBlock => "would_block",
            QuotaExceeded => "quota_exceeded",
            AuthThrottled => "auth_throttled",
            RequestTimeout => "request_timeout",
            PayloadTooLarge => "payload_too_large",
            NoLeader => "no_leader",
            ShuttingDown => "shutting_down",
            TooManyConnections => "too_many_connections",
            CommitTimeout => "commit_timeout",
            Internal => "internal",
            Unknown(name) => name,
        }
    }
}

impl ErrorCode {
    /// Every code this version's server sends (every variant but `Unknown`), in the
    /// order of docs/api.md's table. A new variant goes here too: the OpenAPI
    /// description lists these, and a test holds docs/api.md's table to them.
    pub const KNOWN: &'static [ErrorCode] = &[
        ErrorCode::InvalidRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::ResourceNotFound,
        ErrorCode::LeaseNotFound,
        ErrorCode::KeyNotFound,
        ErrorCode::MemberNotFound,
        ErrorCode::WaiterNotFound,
        ErrorCode::RequestTimeout,
        ErrorCode::KeyExists,
        ErrorCode::LeaseExpired,
        ErrorCode::PayloadTooLarge,
        ErrorCode::LoadExceedsLimit,
        ErrorCode::RequestIdReused,
        ErrorCode::MemberUnverified,
        ErrorCode::QueueFull,
        ErrorCode::WaitTimeout,
        ErrorCode::WouldBlock,
        ErrorCode::QuotaExceeded,
        ErrorCode::AuthThrottled,
        ErrorCode::Internal,
        ErrorCode::NoLeader,
        ErrorCode::ShuttingDown,
        ErrorCode::TooManyConnections,
        ErrorCode::CommitTimeout,
    ];
}

/// The schema of a code: one of the names this version sends (a client must still
/// accept others, see [`ErrorCode::Unknown`]).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(ErrorCode::KNOWN.iter().map(|c| c.as_str().to_owned())))
            .description(Some("The error code (docs/api.md, \"Error codes\"); codes are added over time, so a client treats one it does not know as a definite error"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ErrorCode {}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// The binding limit of a `429` (`would_block`, `wait_timeout`, `queue_full`): the one
    /// `retry_after_ms` is computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitKind>,
    /// For a binding `request` or `load` limit: its index in the resource's `rate` list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<u32>,
}

/// `{"error": {"code": …, "message": …}}`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// Header naming the leader's id on a follower's 307.
pub const LEADER_HEADER: &str = "x-ratequeue-leader";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_serialise_as_their_names() {
        for code in [
            ErrorCode::QueueFull,
            ErrorCode::LeaseExpired,
            ErrorCode::NoLeader,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!(ErrorCode::WouldBlock.status(), 429);
        assert_eq!(ErrorCode::LoadExceedsLimit.status(), 422);
    }

    #[test]
    fn an_unknown_code_decodes_with_its_name_and_known_ones_keep_theirs() {
        let body = r#"{"error": {"code": "quota_exceeded_v9", "message": "too many"}}"#;
        let b: ErrorBody = serde_json::from_str(body).unwrap();
        assert_eq!(b.error.code, ErrorCode::Unknown("quota_exceeded_v9".into()));
        assert_eq!(b.error.code.as_str(), "quota_exceeded_v9");
        assert_eq!(b.error.message, "too many");
        assert!(!b.error.code.is_retryable());
        // It encodes back to the same name, and known names still decode as themselves.
        let json = serde_json::to_string(&b.error.code).unwrap();
        assert_eq!(json, "\"quota_exceeded_v9\"");
        for name in ["member_unverified", "no_leader", "internal", "queue_full"] {
            let code: ErrorCode = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert!(!matches!(code, ErrorCode::Unknown(_)), "{name}");
            assert_eq!(code.as_str(), name);
        }
        // A code that is not a string is still a decoding error.
        assert!(serde_json::from_str::<ErrorCode>("7").is_err());
    }

    #[test]
    fn known_codes_are_every_variant_but_unknown_once() {
        let names: std::collections::BTreeSet<&str> =
            ErrorCode::KNOWN.iter().map(ErrorCode::as_str).collect();
        assert_eq!(names.len(), ErrorCode::KNOWN.len());
        for c in ErrorCode::KNOWN {
            assert!(!matches!(c, ErrorCode::Unknown(_)));
            let back: ErrorCode = serde_json::from_str(&format!("\"{c}\"")).unwrap();
            assert_eq!(&back, c);
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<AcquireRequest>(r#"{"lode": 3}"#);
        assert!(err.is_err());
        let ok: AcquireRequest = serde_json::from_str(r#"{"load": 3}"#).unwrap();
        assert_eq!(ok.load, Some(3));
    }
}
