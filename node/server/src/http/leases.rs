//! Leases: acquire (validated into `AcquireParams` for the admission queue, the
//! caller's scope checked: resource, lane, priority), release and renew (only the key
//! that acquired the lease, or an admin; decided by the admission loop without a Raft
//! write when refused), report, the lease body returned to the holder, and a waiting
//! acquire's progress (read from the leader's queue).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use ratequeue_api as api;
use ratequeue_api::ErrorCode;
use ratequeue_core::config::{validate_holder, validate_name, DEFAULT_LANE, DEFAULT_PRIORITY};
use ratequeue_core::{
    Command, LeaseId, LeaseView, LimitView, Outcome, Report, RequestKey, Shadow, ShadowDecision,
    LIMIT_MAX, LOAD_MAX, PAUSE_MS_MAX, REQUEST_ID_LEN_MAX, TTL_MS_MAX, TTL_MS_MIN,
};
use serde::Deserialize;

use super::access;
use super::auth::denied;
use super::error::{json, rejection, unexpected};
use super::leader::{failure, require_leader};
use super::resources::{check_name, limit_json};
use super::{ApiError, Body, Caller};
use crate::admission::{AcquireParams, Toucher};
use crate::node::Node;

/// Longest an acquire may wait in the queue.
pub const WAIT_MS_MAX: u64 = 3_600_000;

/// Default queue wait when the request names none.
pub const WAIT_MS_DEFAULT: u64 = 30_000;

fn acquire_params(
    name: String,
    b: api::AcquireRequest,
    node: &Node,
    caller: &Caller,
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
    if let Some(h) = &b.holder {
        validate_holder(h).map_err(ApiError::invalid)?;
    }
    let priority = b.priority.unwrap_or(DEFAULT_PRIORITY);
    caller.may_acquire(&name, &lane, priority).map_err(denied)?;
    Ok(AcquireParams {
        resource: name,
        lane,
        priority,
        load,
        ttl_ms,
        wait_ms,
        request_id: b.request_id,
        holder: b.holder,
        owner: caller.owner(),
        waiters_max: caller.waiters_max(),
    })
}

/// An acquire up to the point of admission: counted and recorded in the request span,
/// the body validated into `AcquireParams`, the caller's scope checked (resource, lane,
/// priority).
pub(crate) fn admit_request(
    node: &Node,
    caller: &Caller,
    name: String,
    body: api::AcquireRequest,
) -> Result<AcquireParams, ApiError> {
    node.metrics.http_request();
    access::record("resource", &name);
    if let Some(lane) = &body.lane {
        access::record("lane", lane);
    }
    if let Some(id) = &body.request_id {
        access::record("request_id", id);
    }
    acquire_params(name, body, node, caller)
}

super::openapi::errors!(AcquireErrors, leader; AUTHENTICATED, BODY;
    Forbidden, ResourceNotFound, LeaseExpired, LoadExceedsLimit, RequestIdReused, QueueFull,
    WaitTimeout, WouldBlock, CommitTimeout);

#[utoipa::path(
    post,
    path = "/v1/resources/{name}/acquire",
    tag = "leases",
    operation_id = "acquire",
    summary = "Wait in the resource's queue, then get a lease",
    description = "Queues until every limit of the resource has room (or `wait_ms` passes), \
        then answers with the lease, once its grant is committed. A retry with the same \
        `request_id` (same key and resource) gets the same lease or joins the same waiter. \
        `410 lease_expired`: the lease granted to this `request_id` has already ended.",
    params(("name" = String, Path, description = "The resource", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    request_body(content = Option<api::AcquireRequest>, description = "Every field is optional; an empty body is `{}`"),
    responses((status = 200, description = "The lease", body = api::Lease), AcquireErrors),
)]
pub(crate) async fn acquire(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body<api::AcquireRequest>,
) -> Response {
    let params = match admit_request(&node, &caller, name, body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    match node.admission.acquire(params).await {
        Ok(g) => {
            access::record("lease_id", &g.lease.id.to_string());
            let mut body = lease_json(g.lease, &g.limits, g.queued_ms);
            body.shadow = g.shadow.map(shadow_json);
            json(body)
        }
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
        shadow: None,
    }
}

/// A dry-run grant's shadow as the API shows it.
pub(crate) fn shadow_json(s: Shadow) -> api::Shadow {
    api::Shadow {
        decision: match s.decision {
            ShadowDecision::Grant => api::ShadowDecision::Grant,
            ShadowDecision::Wait => api::ShadowDecision::Wait,
            ShadowDecision::WouldBlock => api::ShadowDecision::WouldBlock,
            ShadowDecision::WaitTimeout => api::ShadowDecision::WaitTimeout,
            ShadowDecision::LoadExceedsLimit => api::ShadowDecision::LoadExceedsLimit,
        },
        wait_ms: s.wait_ms,
        limit: s.binding.map(super::error::api_kind),
    }
}

pub(super) fn parse_lease(id: &str) -> Result<LeaseId, ApiError> {
    id.parse()
        .map_err(|()| ApiError::new(ErrorCode::LeaseNotFound, "no such lease"))
}

fn toucher(caller: &Caller) -> Result<Toucher, ApiError> {
    // A monitor key holds no leases; refuse it before anything is looked up.
    caller.may_hold_leases().map_err(denied)?;
    Ok(Toucher {
        admin: caller.is_admin(),
        owner: caller.owner(),
    })
}

/// Release, renew and report, before and after the admission loop's decision. In order:
/// counted, the lease id recorded in the request span and parsed, the body's `bounds`,
/// the caller allowed to touch leases, this node the leader; then `make(lease)` decided:
/// a refusal is answered as its rejection, the outcome the route expects is turned into
/// its answer by `answer` (which hands back any other, answered as unexpected).
async fn touch(
    node: &Node,
    uri: &Uri,
    caller: &Caller,
    id: &str,
    bounds: Result<(), ApiError>,
    make: impl FnOnce(LeaseId) -> Command,
    answer: impl FnOnce(Outcome) -> Result<Response, Outcome>,
) -> Response {
    node.metrics.http_request();
    access::record("lease_id", id);
    let prologue = parse_lease(id).and_then(|lease| {
        bounds?;
        Ok((lease, toucher(caller)?))
    });
    let (lease, by) = match prologue {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Err(r) = require_leader(node, uri) {
        return r;
    }
    match node.admission.touch(make(lease), lease, by).await {
        Ok(Outcome::Rejected(r)) => rejection(r).into_response(),
        Ok(o) => answer(o).unwrap_or_else(unexpected),
        Err(f) => failure(node, uri, f),
    }
}

super::openapi::errors!(TouchErrors, leader; AUTHENTICATED, BODY;
    Forbidden, LeaseNotFound, LeaseExpired, CommitTimeout);

#[utoipa::path(
    post,
    path = "/v1/leases/{id}/release",
    tag = "leases",
    operation_id = "release",
    summary = "Release a lease (optionally settling its load)",
    description = "Only the key that acquired the lease, or an admin. Idempotent: a release \
        of a released lease answers `already_released`. A refused release, and one whose \
        answer is final, is answered without a Raft write.",
    params(("id" = String, Path, description = "The lease id (`lease_id` of the acquire)")),
    request_body(content = Option<api::ReleaseRequest>, description = "Optional: `actual_load` settles the reserved load"),
    responses((status = 200, description = "Released, or already released", body = api::ReleaseResponse), TouchErrors),
)]
pub(super) async fn release(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<api::ReleaseRequest>,
) -> Response {
    let bounds = match body.actual_load {
        Some(a) if a > LOAD_MAX => Err(ApiError::invalid(format!(
            "actual_load must be at most {LOAD_MAX}"
        ))),
        _ => Ok(()),
    };
    let make = |lease| Command::Release {
        lease,
        actual_load: body.actual_load,
    };
    touch(&node, &uri, &caller, &id, bounds, make, |o| match o {
        Outcome::Released { already } => Ok(json(api::ReleaseResponse {
            state: if already {
                api::ReleaseState::AlreadyReleased
            } else {
                api::ReleaseState::Released
            },
        })),
        other => Err(other),
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/leases/{id}/renew",
    tag = "leases",
    operation_id = "renew",
    summary = "Extend a lease",
    description = "Only the key that acquired the lease, or an admin. `410 lease_expired` \
        once the lease is gone (expired or released).",
    params(("id" = String, Path, description = "The lease id (`lease_id` of the acquire)")),
    request_body(content = Option<api::RenewRequest>, description = "Optional: `ttl_ms`, else the lease's own"),
    responses((status = 200, description = "Renewed", body = api::RenewResponse), TouchErrors),
)]
pub(super) async fn renew(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<api::RenewRequest>,
) -> Response {
    let bounds = match body.ttl_ms {
        Some(t) if !(TTL_MS_MIN..=TTL_MS_MAX).contains(&t) => Err(ApiError::invalid(format!(
            "ttl_ms must be in {TTL_MS_MIN}..={TTL_MS_MAX}"
        ))),
        _ => Ok(()),
    };
    let make = |lease| Command::Renew {
        lease,
        ttl_ms: body.ttl_ms,
    };
    touch(&node, &uri, &caller, &id, bounds, make, |o| match o {
        Outcome::Renewed { lease } => Ok(json(api::RenewResponse {
            lease_id: lease.id.to_string(),
            fencing_token: lease.id.token,
            ttl_ms: lease.ttl_ms,
        })),
        other => Err(other),
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/leases/{id}/report",
    tag = "leases",
    operation_id = "report",
    summary = "Report what the provider answered the lease's holder",
    description = "Only the key that acquired the lease, or an admin, while the lease is \
        live. The provider's remaining requests and tokens lower the resource's buckets \
        named by its `feedback` policy (never raising any); `rate_limited` (a 429) pauses \
        grants until `retry_after_ms`, else the latest reset given, else the policy's \
        backoff. Replicated like any write. Without a policy it changes nothing.",
    params(("id" = String, Path, description = "The lease id (`lease_id` of the acquire)")),
    request_body(content = Option<api::ReportRequest>, description = "Every field is optional"),
    responses((status = 200, description = "Applied", body = api::ReportResponse), TouchErrors),
)]
pub(super) async fn report(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<api::ReportRequest>,
) -> Response {
    let counts = [body.remaining_requests, body.remaining_tokens];
    let durations = [
        body.reset_requests_ms,
        body.reset_tokens_ms,
        body.retry_after_ms,
    ];
    let bounds = if counts.iter().flatten().any(|&n| n > LIMIT_MAX)
        || durations.iter().flatten().any(|&ms| ms > PAUSE_MS_MAX)
    {
        Err(ApiError::invalid(format!(
            "remaining figures must be at most {LIMIT_MAX}, durations at most {PAUSE_MS_MAX} ms"
        )))
    } else {
        Ok(())
    };
    let report = Report {
        remaining_requests: body.remaining_requests,
        remaining_tokens: body.remaining_tokens,
        reset_requests_ms: body.reset_requests_ms,
        reset_tokens_ms: body.reset_tokens_ms,
        retry_after_ms: body.retry_after_ms,
        rate_limited: body.rate_limited.unwrap_or(false),
    };
    let make = |lease| Command::Report { lease, report };
    touch(&node, &uri, &caller, &id, bounds, make, |o| match o {
        Outcome::Reported { limits, paused_ms } => Ok(json(api::ReportResponse {
            paused_ms,
            limits: limits.iter().map(limit_json).collect(),
        })),
        other => Err(other),
    })
    .await
}

/// The query of a waiter's progress.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct WaiterQuery {
    /// Admins only: the name of the key that made the acquire (default: the caller's
    /// own requests; the admin token's own have no key name).
    #[param(max_length = 128, pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    key: Option<String>,
}

super::openapi::errors!(WaiterErrors, leader; AUTHENTICATED;
    InvalidRequest, Forbidden, WaiterNotFound);

#[utoipa::path(
    get,
    path = "/v1/resources/{name}/waiters/{request_id}",
    tag = "leases",
    operation_id = "waiter_progress",
    summary = "Where a waiting acquire stands (leader)",
    description = "The acquire the caller's key sent with this `request_id` on this \
        resource, while it waits in the leader's queue: its position in its lane, the \
        waiters of the resource served before it, the binding limit and the estimated \
        wait. `404 waiter_not_found` once it is granted, refused or gone (and for an id \
        never queued). Read from the leader's queue, never written; an admin may name \
        another key with `?key=`.",
    params(
        ("name" = String, Path, description = "The resource", pattern = "^[A-Za-z0-9._:-]{1,128}$"),
        ("request_id" = String, Path, description = "The acquire's `request_id`", min_length = 1, max_length = 128),
        WaiterQuery,
    ),
    responses((status = 200, description = "It waits", body = api::WaiterProgress), WaiterErrors),
)]
pub(super) async fn waiter(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path((name, request_id)): Path<(String, String)>,
    q: Result<Query<WaiterQuery>, QueryRejection>,
) -> Response {
    node.metrics.http_request();
    access::record("resource", &name);
    access::record("request_id", &request_id);
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return ApiError::invalid(format!("bad query string: {e}")).into_response(),
    };
    if let Err(e) = check_name(&name) {
        return e.into_response();
    }
    if request_id.is_empty() || request_id.len() > REQUEST_ID_LEN_MAX {
        return ApiError::invalid(format!("request_id must be 1..={REQUEST_ID_LEN_MAX} bytes"))
            .into_response();
    }
    // A monitor key queues nothing; a client key sees only resources it may read.
    if let Err(e) = caller
        .may_hold_leases()
        .and_then(|()| caller.may_read(&name))
    {
        return denied(e).into_response();
    }
    let owner = match q.key {
        None => caller.owner(),
        Some(key) => {
            if let Err(e) = validate_name(&key) {
                return ApiError::invalid(format!("key {e}")).into_response();
            }
            if !caller.is_admin() && caller.key_name() != Some(key.as_str()) {
                return ApiError::new(
                    ErrorCode::Forbidden,
                    "only an admin may see another key's waiters",
                )
                .into_response();
            }
            Some(key)
        }
    };
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    let key = RequestKey {
        owner,
        resource: name,
        request_id,
    };
    match node.admission.progress(key.clone()).await {
        Ok(Some(w)) => {
            let p = w.progress;
            json(api::WaiterProgress {
                resource: key.resource,
                request_id: key.request_id,
                lane: p.lane,
                priority: p.priority,
                load: p.load,
                position: p.position,
                position_exact: p.position_exact,
                ahead_in_resource: p.ahead_in_resource,
                queued_in_resource: p.queued_in_resource,
                binding_limit: p.estimate.binding.map(|b| super::error::api_kind(b.kind)),
                binding_bucket: p.estimate.binding.and_then(|b| b.bucket),
                estimated_wait_ms: p.estimate.wait_ms,
                waited_ms: w.waited_ms,
            })
        }
        Ok(None) => ApiError::new(
            ErrorCode::WaiterNotFound,
            "no acquire with this request_id waits in the queue (granted, refused, or never queued)",
        )
        .into_response(),
        Err(f) => failure(&node, &uri, f),
    }
}
