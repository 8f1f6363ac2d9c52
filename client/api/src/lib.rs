//! ratequeue-api: the HTTP wire types of ratequeue (DESIGN.md §5) and its error codes.
//!
//! Shared by the server and the Rust client so that no HTTP struct is defined twice.
//! Plain serde data only: no HTTP library, no I/O. Request bodies reject unknown
//! fields, so a typo in a field name is a 400 and never silently ignored.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `POST /v1/resources/{name}/acquire`. Every field is optional.
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Concurrency,
    Request,
    Load,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub kind: LimitKind,
    pub limit: u64,
    pub remaining: i64,
}

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
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_load: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    Released,
    AlreadyReleased,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseResponse {
    pub state: ReleaseState,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewResponse {
    pub lease_id: String,
    pub fencing_token: u64,
    pub ttl_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    Request,
    Load,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per: Per,
    pub limit: u64,
    pub window_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lane {
    pub weight: u32,
}

/// `PUT /v1/resources/{name}` body, and the `config` of `GET`.
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
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceStats {
    /// Leases held now.
    pub held: u64,
    /// Waiters per lane (only on the leader; empty on a stale follower read).
    pub queued: BTreeMap<String, u64>,
    pub grants_total: u64,
    pub limits: Vec<Limit>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub name: String,
    pub config: ResourceSpec,
    pub stats: ResourceStats,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceList {
    pub resources: Vec<Resource>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResourceResponse {
    pub name: String,
    pub created: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Client,
}

/// `POST /v1/keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub resources: Vec<String>,
}

/// The key text is shown only in the response that created it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    pub name: String,
    pub key: String,
    pub role: Role,
    pub resources: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub name: String,
    pub role: Role,
    pub resources: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<Key>,
}

/// `POST /v1/cluster/members`: add a node as a learner, then (by default) promote it.
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub index: u64,
    pub term: u64,
}

/// `GET /v1/cluster/status`: this node's view of the cluster.
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

/// Every error code of the API (DESIGN.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    ResourceNotFound,
    LeaseNotFound,
    KeyNotFound,
    MemberNotFound,
    LeaseExpired,
    LoadExceedsLimit,
    /// A member being added is unreachable or did not prove it is the node named
    /// (its identity proof, and with TLS its certificate).
    MemberUnverified,
    QueueFull,
    WaitTimeout,
    WouldBlock,
    PayloadTooLarge,
    NoLeader,
    ShuttingDown,
    /// A replicated write did not finish in time: it may or may not have been applied.
    /// Retry acquire with the same `request_id`; release and renew are idempotent.
    CommitTimeout,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidRequest => 400,
            Unauthorized => 401,
            Forbidden => 403,
            ResourceNotFound | LeaseNotFound | KeyNotFound | MemberNotFound => 404,
            LeaseExpired => 410,
            PayloadTooLarge => 413,
            LoadExceedsLimit | MemberUnverified => 422,
            QueueFull | WaitTimeout | WouldBlock => 429,
            Internal => 500,
            NoLeader | ShuttingDown => 503,
            CommitTimeout => 504,
        }
    }

    /// Whether the request certainly did not take effect and may be sent again as is.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::NoLeader | ErrorCode::ShuttingDown)
    }

    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            ResourceNotFound => "resource_not_found",
            LeaseNotFound => "lease_not_found",
            KeyNotFound => "key_not_found",
            MemberNotFound => "member_not_found",
            LeaseExpired => "lease_expired",
            LoadExceedsLimit => "load_exceeds_limit",
            MemberUnverified => "member_unverified",
            QueueFull => "queue_full",
            WaitTimeout => "wait_timeout",
            WouldBlock => "would_block",
            PayloadTooLarge => "payload_too_large",
            NoLeader => "no_leader",
            ShuttingDown => "shutting_down",
            CommitTimeout => "commit_timeout",
            Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<AcquireRequest>(r#"{"lode": 3}"#);
        assert!(err.is_err());
        let ok: AcquireRequest = serde_json::from_str(r#"{"load": 3}"#).unwrap();
        assert_eq!(ok.load, Some(3));
    }
}
