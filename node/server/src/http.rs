//! The client-facing HTTP API (DESIGN.md §5): routing, authentication, leader
//! redirects, request validation and the mapping of outcomes to statuses.
//!
//! Handlers never decide admission: they validate, authenticate, and hand commands to
//! `Admission` (leader) or answer with a redirect (follower). `app(node)` builds the
//! router so tests can call it without sockets.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, LOCATION, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use ratequeue_api as api;
use ratequeue_api::ErrorCode;
use ratequeue_core::config::{validate_name, DEFAULT_LANE, DEFAULT_PRIORITY};
use ratequeue_core::{
    ApiKey, Command, LaneConfig, LeaseId, LeaseView, LimitKind, LimitView, Outcome, Per, RateLimit,
    Refusal, Rejection, ResourceConfig, Role, Table, LOAD_MAX, REQUEST_ID_LEN_MAX, TTL_MS_MAX,
    TTL_MS_MIN,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::admission::{AcquireParams, Failure};
use crate::node::{AfterHandoff, Node};

/// Largest accepted request body.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// Longest an acquire may wait in the queue.
pub const WAIT_MS_MAX: u64 = 3_600_000;
/// Default queue wait when the request names none.
pub const WAIT_MS_DEFAULT: u64 = 30_000;
/// Retry-After sent with 503 during elections.
const NO_LEADER_RETRY_MS: u64 = 500;

/// The one error type of the API: `{"error": {"code", "message", "retry_after_ms"?}}`.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    retry_after_ms: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    fn retry(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms.max(1));
        self
    }

    fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = api::ErrorBody {
            error: api::ErrorDetail {
                code: self.code,
                message: self.message,
                retry_after_ms: self.retry_after_ms,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(ms) = self.retry_after_ms {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// A JSON body: at most `BODY_BYTES_MAX`, unknown fields rejected, every failure a
/// documented `invalid_request` / `payload_too_large`. An empty body means `{}`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, "request body too large")
            } else {
                ApiError::invalid(format!("unreadable body: {e}"))
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes)
            .map(Body)
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
    }
}

/// Who is calling, from `Authorization: Bearer <token>`.
#[derive(Clone, Debug)]
pub enum Caller {
    Admin,
    Key(ApiKey),
}

impl Caller {
    fn may_use(&self, resource: &str) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Key(k) if k.allows(resource) => Ok(()),
            Caller::Key(k) => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("key {:?} may not use resource {resource:?}", k.name),
            )),
        }
    }

    fn must_be_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin
            | Caller::Key(ApiKey {
                role: Role::Admin, ..
            }) => Ok(()),
            Caller::Key(k) => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("key {:?} is not admin", k.name),
            )),
        }
    }
}

/// Hex SHA-256 of an API key's text: the only form stored.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl FromRequestParts<Arc<Node>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, node: &Arc<Node>) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
        if bool::from(token.as_bytes().ct_eq(node.admin_token.as_bytes())) {
            return Ok(Caller::Admin);
        }
        let hash = key_hash(token);
        let applied = node.applied.read();
        match applied.state.key_by_hash(&hash) {
            Some(k) => Ok(Caller::Key(k.clone())),
            None => Err(ApiError::new(ErrorCode::Unauthorized, "unknown token")),
        }
    }
}

fn redirect_target(base: &str, uri: &Uri) -> String {
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    format!("{}{}", base.trim_end_matches('/'), pq)
}

/// Leader-only requests go through this: Ok on the serving leader, else the error
/// response (a 307 for followers that know the leader, a 503 otherwise).
fn require_leader(node: &Node, uri: &Uri) -> Result<(), Response> {
    if node.is_shutting_down() {
        let e = ApiError::new(ErrorCode::ShuttingDown, "node is shutting down")
            .retry(NO_LEADER_RETRY_MS);
        return Err(e.into_response());
    }
    if node.admission.is_serving() {
        return Ok(());
    }
    Err(leader_error(node, uri))
}

/// A 307 to the leader (same path and query; method and body are kept by 307), or a
/// 503 `no_leader` while no other leader is known.
fn leader_error(node: &Node, uri: &Uri) -> Response {
    if let Some((id, url)) = node.leader().filter(|(id, _)| *id != node.id) {
        let location = redirect_target(&url, uri);
        if let (Ok(loc), Ok(leader)) = (
            HeaderValue::from_str(&location),
            HeaderValue::from_str(&id.to_string()),
        ) {
            let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
            r.headers_mut().insert(LOCATION, loc);
            r.headers_mut().insert(api::LEADER_HEADER, leader);
            return r;
        }
    }
    ApiError::new(ErrorCode::NoLeader, "no leader is known; retry shortly")
        .retry(NO_LEADER_RETRY_MS)
        .into_response()
}

fn failure(node: &Node, uri: &Uri, f: Failure) -> Response {
    match f {
        Failure::NotLeader => leader_error(node, uri),
        Failure::Ambiguous => ApiError::new(
            ErrorCode::CommitTimeout,
            "the write may or may not have been applied; retry with the same request_id",
        )
        .into_response(),
        Failure::Refused(r) => refusal(r).into_response(),
        Failure::Rejected(r) => rejection(r).into_response(),
    }
}

fn refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::ResourceNotFound => ApiError::new(ErrorCode::ResourceNotFound, "no such resource"),
        Refusal::LoadExceedsLimit { load_max } => ApiError::new(
            ErrorCode::LoadExceedsLimit,
            format!("load can never fit: the largest per-load bucket holds {load_max}"),
        ),
        Refusal::QueueFull { retry_after_ms } => {
            ApiError::new(ErrorCode::QueueFull, "the resource's queue is full")
                .retry(retry_after_ms)
        }
        Refusal::WouldBlock { retry_after_ms } => {
            ApiError::new(ErrorCode::WouldBlock, "no room now and wait_ms is 0")
                .retry(retry_after_ms)
        }
        Refusal::WaitTimeout { retry_after_ms } => {
            ApiError::new(ErrorCode::WaitTimeout, "waited wait_ms without a grant")
                .retry(retry_after_ms)
        }
    }
}

fn rejection(r: Rejection) -> ApiError {
    match r {
        Rejection::ResourceNotFound => {
            ApiError::new(ErrorCode::ResourceNotFound, "no such resource")
        }
        Rejection::LeaseNotFound => ApiError::new(ErrorCode::LeaseNotFound, "no such lease"),
        Rejection::LeaseExpired => ApiError::new(
            ErrorCode::LeaseExpired,
            "the lease expired; the holder must stop",
        ),
        Rejection::LeaseReleased => ApiError::new(
            ErrorCode::LeaseExpired,
            "the lease was released; the holder must stop",
        ),
        Rejection::GrantEnded => ApiError::new(
            ErrorCode::LeaseExpired,
            "the lease granted to this request_id has already ended; \
             acquire again with a new request_id",
        ),
        Rejection::LoadExceedsLimit { load_max } => ApiError::new(
            ErrorCode::LoadExceedsLimit,
            format!("load can never fit: the largest per-load bucket holds {load_max}"),
        ),
        Rejection::NoRoom { retry_after_ms, .. } => {
            ApiError::new(ErrorCode::WouldBlock, "no room now").retry(retry_after_ms)
        }
        Rejection::TableFull(Table::Leases) => {
            ApiError::new(ErrorCode::QueueFull, "the cluster's lease table is full").retry(1_000)
        }
        Rejection::TableFull(Table::Resources) => {
            ApiError::invalid("the cluster's resource table is full")
        }
        Rejection::TableFull(Table::Keys) => ApiError::invalid("the cluster's key table is full"),
        Rejection::Invalid(m) => ApiError::invalid(m),
    }
}

fn limit_json(l: &LimitView) -> api::Limit {
    let kind = match l.kind {
        LimitKind::Concurrency => api::LimitKind::Concurrency,
        LimitKind::Request => api::LimitKind::Request,
        LimitKind::Load => api::LimitKind::Load,
    };
    api::Limit {
        kind,
        limit: l.limit,
        remaining: l.remaining,
    }
}

fn json<T: Serialize>(v: T) -> Response {
    axum::Json(v).into_response()
}

pub fn app(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/resources/{name}/acquire", post(acquire))
        .route("/v1/leases/{id}/release", post(release))
        .route("/v1/leases/{id}/renew", post(renew))
        .route("/v1/resources", get(list_resources))
        .route(
            "/v1/resources/{name}",
            get(get_resource).put(put_resource).delete(delete_resource),
        )
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{name}", delete(delete_key))
        .route("/v1/cluster/status", get(status))
        .route("/v1/cluster/members", post(add_member))
        .route("/v1/cluster/members/{id}", delete(remove_member))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(ErrorCode::InvalidRequest, "no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(node)
}

fn check_name(name: &str) -> Result<(), ApiError> {
    validate_name(name).map_err(|e| ApiError::invalid(format!("resource {e}")))
}

fn acquire_params(
    name: String,
    b: api::AcquireRequest,
    node: &Node,
) -> Result<AcquireParams, ApiError> {
    check_name(&name)?;
    let lane = b.lane.unwrap_or_else(|| DEFAULT_LANE.to_owned());
    validate_name(&lane).map_err(|e| ApiError::invalid(format!("lane {e}")))?;
    let load = b.load.unwrap_or(1);
    if load > LOAD_MAX {
        return Err(ApiError::invalid(format!(
            "load must be at most {LOAD_MAX}"
        )));
    }
    let ttl_ms = match b.ttl_ms {
        Some(t) => t,
        None => node
            .applied
            .read()
            .state
            .resource(&name)
            .map_or(30_000, |c| c.default_ttl_ms),
    };
    if !(TTL_MS_MIN..=TTL_MS_MAX).contains(&ttl_ms) {
        return Err(ApiError::invalid(format!(
            "ttl_ms must be in {TTL_MS_MIN}..={TTL_MS_MAX}"
        )));
    }
    let wait_ms = b.wait_ms.unwrap_or(WAIT_MS_DEFAULT);
    if wait_ms > WAIT_MS_MAX {
        return Err(ApiError::invalid(format!(
            "wait_ms must be at most {WAIT_MS_MAX}"
        )));
    }
    if let Some(id) = &b.request_id {
        if id.is_empty() || id.len() > REQUEST_ID_LEN_MAX {
            return Err(ApiError::invalid(format!(
                "request_id must be 1..={REQUEST_ID_LEN_MAX} bytes"
            )));
        }
    }
    Ok(AcquireParams {
        resource: name,
        lane,
        priority: b.priority.unwrap_or(DEFAULT_PRIORITY),
        load,
        ttl_ms,
        wait_ms,
        request_id: b.request_id,
    })
}

async fn acquire(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body<api::AcquireRequest>,
) -> Response {
    node.metrics.http_request();
    if let Err(e) = caller.may_use(&name) {
        return e.into_response();
    }
    let params = match acquire_params(name, body, &node) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    #[cfg(feature = "sabotage-follower-grants")]
    if !node.admission.is_serving() {
        return match crate::sabotage::follower_grant(&node, params) {
            Some(lease) => json(lease),
            None => ApiError::new(ErrorCode::WouldBlock, "no room now")
                .retry(100)
                .into_response(),
        };
    }
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    tracing::debug!(resource = %params.resource, lane = %params.lane, request_id = ?params.request_id, "acquire");
    match node.admission.acquire(params).await {
        Ok(g) => json(lease_json(g.lease, &g.limits, g.queued_ms)),
        Err(f) => failure(&node, &uri, f),
    }
}

/// The acquire response body for a granted lease.
pub(crate) fn lease_json(lease: LeaseView, limits: &[LimitView], queued_ms: u64) -> api::Lease {
    api::Lease {
        lease_id: lease.id.to_string(),
        resource: lease.resource,
        lane: lease.lane,
        load: lease.load,
        fencing_token: lease.id.token,
        ttl_ms: lease.ttl_ms,
        queued_ms,
        limits: limits.iter().map(limit_json).collect(),
    }
}

fn parse_lease(id: &str) -> Result<LeaseId, ApiError> {
    id.parse()
        .map_err(|()| ApiError::new(ErrorCode::LeaseNotFound, "no such lease"))
}

/// A client key may touch a lease only if it may use the lease's resource.
fn may_touch(node: &Node, caller: &Caller, lease: LeaseId) -> Result<(), ApiError> {
    let resource = node
        .applied
        .read()
        .state
        .lease_resource(lease)
        .map(str::to_owned);
    match resource {
        Some(r) => caller.may_use(&r),
        None => Ok(()),
    }
}

async fn release(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<api::ReleaseRequest>,
) -> Response {
    node.metrics.http_request();
    let lease = match parse_lease(&id) {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    if body.actual_load.is_some_and(|a| a > LOAD_MAX) {
        return ApiError::invalid(format!("actual_load must be at most {LOAD_MAX}"))
            .into_response();
    }
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    if let Err(e) = may_touch(&node, &caller, lease) {
        return e.into_response();
    }
    let cmd = Command::Release {
        lease,
        actual_load: body.actual_load,
    };
    match node.admission.write(cmd).await {
        Ok(Outcome::Released { already }) => json(api::ReleaseResponse {
            state: if already {
                api::ReleaseState::AlreadyReleased
            } else {
                api::ReleaseState::Released
            },
        }),
        Ok(Outcome::Rejected(r)) => rejection(r).into_response(),
        Ok(other) => unexpected(other),
        Err(f) => failure(&node, &uri, f),
    }
}

fn unexpected(o: Outcome) -> Response {
    tracing::error!(outcome = ?o, "unexpected outcome");
    ApiError::new(ErrorCode::Internal, "unexpected outcome").into_response()
}

async fn renew(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<api::RenewRequest>,
) -> Response {
    node.metrics.http_request();
    let lease = match parse_lease(&id) {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    if body
        .ttl_ms
        .is_some_and(|t| !(TTL_MS_MIN..=TTL_MS_MAX).contains(&t))
    {
        return ApiError::invalid(format!("ttl_ms must be in {TTL_MS_MIN}..={TTL_MS_MAX}"))
            .into_response();
    }
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    if let Err(e) = may_touch(&node, &caller, lease) {
        return e.into_response();
    }
    match node
        .admission
        .write(Command::Renew {
            lease,
            ttl_ms: body.ttl_ms,
        })
        .await
    {
        Ok(Outcome::Renewed { lease }) => json(api::RenewResponse {
            lease_id: lease.id.to_string(),
            fencing_token: lease.id.token,
            ttl_ms: lease.ttl_ms,
        }),
        Ok(Outcome::Rejected(r)) => rejection(r).into_response(),
        Ok(other) => unexpected(other),
        Err(f) => failure(&node, &uri, f),
    }
}

/// Converts the API's resource body into the core's config (defaults filled in).
pub fn resource_config(spec: api::ResourceSpec) -> Result<ResourceConfig, ApiError> {
    let config = ResourceConfig {
        concurrency: spec.concurrency,
        rate: spec
            .rate
            .iter()
            .map(|r| RateLimit {
                per: match r.per {
                    api::Per::Request => Per::Request,
                    api::Per::Load => Per::Load,
                },
                limit: r.limit,
                window_ms: r.window_ms,
            })
            .collect(),
        lanes: spec
            .lanes
            .iter()
            .map(|(n, l)| (n.clone(), LaneConfig { weight: l.weight }))
            .collect(),
        default_ttl_ms: spec
            .default_ttl_ms
            .unwrap_or(ratequeue_core::config::DEFAULT_TTL_MS),
        max_queue: spec
            .max_queue
            .unwrap_or(ratequeue_core::config::DEFAULT_MAX_QUEUE),
    };
    config.validate().map_err(ApiError::invalid)?;
    Ok(config)
}

pub fn resource_spec(c: &ResourceConfig) -> api::ResourceSpec {
    api::ResourceSpec {
        concurrency: c.concurrency,
        rate: c
            .rate
            .iter()
            .map(|r| api::Rate {
                per: match r.per {
                    Per::Request => api::Per::Request,
                    Per::Load => api::Per::Load,
                },
                limit: r.limit,
                window_ms: r.window_ms,
            })
            .collect(),
        lanes: c
            .lanes
            .iter()
            .map(|(n, l)| (n.clone(), api::Lane { weight: l.weight }))
            .collect(),
        default_ttl_ms: Some(c.default_ttl_ms),
        max_queue: Some(c.max_queue),
    }
}

async fn put_resource(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(name): Path<String>,
    Body(spec): Body<api::ResourceSpec>,
) -> Response {
    if let Err(e) = caller.must_be_admin() {
        return e.into_response();
    }
    let config = match check_name(&name).and_then(|()| resource_config(spec)) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    match node
        .admission
        .write(Command::PutResource {
            name: name.clone(),
            config,
        })
        .await
    {
        Ok(Outcome::ResourcePut { created }) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (
                status,
                axum::Json(api::PutResourceResponse { name, created }),
            )
                .into_response()
        }
        Ok(Outcome::Rejected(r)) => rejection(r).into_response(),
        Ok(other) => unexpected(other),
        Err(f) => failure(&node, &uri, f),
    }
}

async fn delete_resource(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    if let Err(e) = caller.must_be_admin().and_then(|()| check_name(&name)) {
        return e.into_response();
    }
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    match node.admission.write(Command::DeleteResource { name }).await {
        Ok(Outcome::ResourceDeleted { existed: true }) => StatusCode::NO_CONTENT.into_response(),
        Ok(Outcome::ResourceDeleted { existed: false }) => {
            ApiError::new(ErrorCode::ResourceNotFound, "no such resource").into_response()
        }
        Ok(Outcome::Rejected(r)) => rejection(r).into_response(),
        Ok(other) => unexpected(other),
        Err(f) => failure(&node, &uri, f),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    #[serde(default)]
    stale: bool,
}

/// Reads go to the leader after a ReadIndex round, unless `?stale=true`.
async fn read_barrier(node: &Node, uri: &Uri, stale: bool) -> Result<(), Response> {
    if stale {
        return Ok(());
    }
    require_leader(node, uri)?;
    match node.raft.ensure_linearizable().await {
        Ok(_) => Ok(()),
        Err(_) => Err(leader_error(node, uri)),
    }
}

async fn resource_view(node: &Node, name: &str) -> Option<api::Resource> {
    let (config, stats) = {
        let a = node.applied.read();
        (
            a.state.resource(name)?.clone(),
            a.state.resource_stats(name)?,
        )
    };
    let queued: BTreeMap<String, u64> = node
        .admission
        .queued(name)
        .await
        .into_iter()
        .map(|(l, n)| (l, n as u64))
        .collect();
    Some(api::Resource {
        name: name.to_owned(),
        config: resource_spec(&config),
        stats: api::ResourceStats {
            held: stats.held,
            queued,
            grants_total: stats.grants_total,
            limits: stats.limits.iter().map(limit_json).collect(),
        },
    })
}

/// `GET /v1/resources` returns at most this many resources.
const LIST_LEN_MAX: usize = 10_000;

async fn list_resources(
    State(node): State<Arc<Node>>,
    uri: Uri,
    _caller: Caller,
    q: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return ApiError::invalid("bad query string").into_response();
    };
    if let Err(r) = read_barrier(&node, &uri, q.stale).await {
        return r;
    }
    let names: Vec<String> = node
        .applied
        .read()
        .state
        .resources()
        .take(LIST_LEN_MAX)
        .map(|(n, _)| n.to_owned())
        .collect();
    let mut resources = Vec::with_capacity(names.len());
    for n in names {
        if let Some(r) = resource_view(&node, &n).await {
            resources.push(r);
        }
    }
    json(api::ResourceList { resources })
}

async fn get_resource(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(name): Path<String>,
    q: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return ApiError::invalid("bad query string").into_response();
    };
    if let Err(e) = check_name(&name).and_then(|()| caller.may_use(&name)) {
        return e.into_response();
    }
    if let Err(r) = read_barrier(&node, &uri, q.stale).await {
        return r;
    }
    match resource_view(&node, &name).await {
        Some(r) => json(r),
        None => ApiError::new(ErrorCode::ResourceNotFound, "no such resource").into_response(),
    }
}

fn role_json(r: Role) -> api::Role {
    match r {
        Role::Admin => api::Role::Admin,
        Role::Client => api::Role::Client,
    }
}

async fn create_key(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Body(req): Body<api::CreateKeyRequest>,
) -> Response {
    if let Err(e) = caller.must_be_admin() {
        return e.into_response();
    }
    if let Err(e) = validate_name(&req.name) {
        return ApiError::invalid(format!("key {e}")).into_response();
    }
    if req.resources.len() > 64 || req.resources.iter().any(|p| p.is_empty() || p.len() > 256) {
        return ApiError::invalid("resources: at most 64 patterns of 1..=256 bytes")
            .into_response();
    }
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    let key = format!("rq_{}", hex::encode(rand::random::<[u8; 24]>()));
    let role = match req.role {
        api::Role::Admin => Role::Admin,
        api::Role::Client => Role::Client,
    };
    let record = ApiKey {
        name: req.name.clone(),
        hash: key_hash(&key),
        role,
        resources: req.resources.clone(),
    };
    match node.admission.write(Command::PutKey(record)).await {
        Ok(Outcome::KeyPut { .. }) => (
            StatusCode::CREATED,
            axum::Json(api::CreatedKey {
                name: req.name,
                key,
                role: req.role,
                resources: req.resources,
            }),
        )
            .into_response(),
        Ok(Outcome::Rejected(r)) => rejection(r).into_response(),
        Ok(other) => unexpected(other),
        Err(f) => failure(&node, &uri, f),
    }
}

async fn list_keys(State(node): State<Arc<Node>>, uri: Uri, caller: Caller) -> Response {
    if let Err(e) = caller.must_be_admin() {
        return e.into_response();
    }
    if let Err(r) = read_barrier(&node, &uri, false).await {
        return r;
    }
    let keys = node
        .applied
        .read()
        .state
        .keys()
        .map(|k| api::Key {
            name: k.name.clone(),
            role: role_json(k.role),
            resources: k.resources.clone(),
        })
        .collect();
    json(api::KeyList { keys })
}

async fn delete_key(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    if let Err(e) = caller.must_be_admin() {
        return e.into_response();
    }
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    match node.admission.write(Command::DeleteKey { name }).await {
        Ok(Outcome::KeyDeleted { existed: true }) => StatusCode::NO_CONTENT.into_response(),
        Ok(Outcome::KeyDeleted { existed: false }) => {
            ApiError::new(ErrorCode::KeyNotFound, "no such key").into_response()
        }
        Ok(other) => unexpected(other),
        Err(f) => failure(&node, &uri, f),
    }
}

async fn status(State(node): State<Arc<Node>>, _caller: Caller) -> Response {
    json(node.status())
}

async fn add_member(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Body(req): Body<api::AddMember>,
) -> Response {
    if let Err(e) = caller.must_be_admin() {
        return e.into_response();
    }
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    match node.add_member(req).await {
        Ok(status) => json(status),
        Err(e) => e.into_response(),
    }
}

async fn remove_member(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(id): Path<u64>,
) -> Response {
    if let Err(e) = caller.must_be_admin() {
        return e.into_response();
    }
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    // A leader that removed itself would lead on outside the membership until the change
    // commits, a state openraft handles only partly. Hand over first; the 307 sends the
    // caller to the new leader, which makes the change.
    if id == node.id {
        if node.hand_off_leadership(AfterHandoff::Resume).await {
            return leader_error(&node, &uri);
        }
        return ApiError::new(
            ErrorCode::NoLeader,
            "this leader could not hand over before removing itself; retry",
        )
        .retry(NO_LEADER_RETRY_MS)
        .into_response();
    }
    match node.remove_member(id).await {
        Ok(status) => json(status),
        Err(e) => e.into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(node): State<Arc<Node>>) -> Response {
    match node.readiness().await {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        node.render_metrics(),
    )
        .into_response()
}
