//! Resources: the conversion between the API's resource body and the core's config
//! (defaults filled in, validated), put/delete (admin), and the read views with live
//! statistics, filtered by the caller's scope (a client key sees only the resources its
//! patterns name; none at all if they name nothing).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ratequeue_api as api;
use ratequeue_api::ErrorCode;
use ratequeue_core::config::{validate_name, DEFAULT_BACKOFF_MAX_MS, DEFAULT_BACKOFF_MS};
use ratequeue_core::{
    Command, Feedback, LaneConfig, LimitView, Mode, Outcome, Per, RateLimit, ResourceConfig,
};

use super::auth::denied;
use super::error::{json, rejection, unexpected};
use super::leader::{failure, read_barrier, require_leader, ReadQuery};
use super::{ApiError, Body, Caller};
use crate::node::Node;

pub(super) fn check_name(name: &str) -> Result<(), ApiError> {
    validate_name(name).map_err(|e| ApiError::invalid(format!("resource {e}")))
}

pub(super) fn limit_json(l: &LimitView) -> api::Limit {
    api::Limit {
        kind: super::error::api_kind(l.kind),
        limit: l.limit,
        remaining: l.remaining,
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
        mode: match spec.mode.unwrap_or_default() {
            api::Mode::Enforce => Mode::Enforce,
            api::Mode::DryRun => Mode::DryRun,
        },
        feedback: spec.feedback.map(|f| Feedback {
            requests_window_ms: f.requests_window_ms,
            tokens_window_ms: f.tokens_window_ms,
            backoff_ms: f.backoff_ms.unwrap_or(DEFAULT_BACKOFF_MS),
            backoff_max_ms: f.backoff_max_ms.unwrap_or(DEFAULT_BACKOFF_MAX_MS),
        }),
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
        mode: Some(match c.mode {
            Mode::Enforce => api::Mode::Enforce,
            Mode::DryRun => api::Mode::DryRun,
        }),
        feedback: c.feedback.map(|f| api::Feedback {
            requests_window_ms: f.requests_window_ms,
            tokens_window_ms: f.tokens_window_ms,
            backoff_ms: Some(f.backoff_ms),
            backoff_max_ms: Some(f.backoff_max_ms),
        }),
    }
}

super::openapi::errors!(PutErrors, leader; AUTHENTICATED, BODY; Forbidden, CommitTimeout);

#[utoipa::path(
    put,
    path = "/v1/resources/{name}",
    tag = "resources",
    operation_id = "put_resource",
    summary = "Create or replace a resource (admin)",
    description = "At least one limit (`concurrency` or a `rate` bucket).",
    params(("name" = String, Path, description = "The resource", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    request_body(content = api::ResourceSpec),
    responses(
        (status = 201, description = "Created", body = api::PutResourceResponse),
        (status = 200, description = "Replaced", body = api::PutResourceResponse),
        PutErrors,
    ),
)]
pub(super) async fn put_resource(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(name): Path<String>,
    Body(spec): Body<api::ResourceSpec>,
) -> Response {
    if let Err(d) = caller.may_manage() {
        return denied(d).into_response();
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

super::openapi::errors!(DeleteErrors, leader; AUTHENTICATED;
    InvalidRequest, Forbidden, ResourceNotFound, CommitTimeout);

#[utoipa::path(
    delete,
    path = "/v1/resources/{name}",
    tag = "resources",
    operation_id = "delete_resource",
    summary = "Delete a resource (admin)",
    description = "Its waiters get `404 resource_not_found`; its leases end.",
    params(("name" = String, Path, description = "The resource", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    responses((status = 204, description = "Deleted"), DeleteErrors),
)]
pub(super) async fn delete_resource(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    if let Err(e) = caller
        .may_manage()
        .map_err(denied)
        .and_then(|()| check_name(&name))
    {
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

pub(super) async fn resource_view(node: &Node, name: &str) -> Option<api::Resource> {
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
pub(super) const LIST_LEN_MAX: usize = 10_000;

super::openapi::errors!(ListErrors, leader; AUTHENTICATED; InvalidRequest);

#[utoipa::path(
    get,
    path = "/v1/resources",
    tag = "resources",
    operation_id = "list_resources",
    summary = "Every resource the caller may see, with its config and live stats",
    description = "A client key lists the resources its patterns name (none: an empty \
        list); admin and monitor keys see all. At most 10 000.",
    params(ReadQuery),
    responses((status = 200, description = "The resources", body = api::ResourceList), ListErrors),
)]
pub(super) async fn list_resources(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    q: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return ApiError::invalid("bad query string").into_response();
    };
    if !caller.sees_any() {
        return json(api::ResourceList {
            resources: Vec::new(),
        });
    }
    if let Err(r) = read_barrier(&node, &uri, q.stale).await {
        return r;
    }
    let names: Vec<String> = node
        .applied
        .read()
        .state
        .resources()
        .filter(|(n, _)| caller.may_see(n))
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

super::openapi::errors!(GetErrors, leader; AUTHENTICATED;
    InvalidRequest, Forbidden, ResourceNotFound);

#[utoipa::path(
    get,
    path = "/v1/resources/{name}",
    tag = "resources",
    operation_id = "get_resource",
    summary = "One resource's config and live stats",
    params(("name" = String, Path, description = "The resource", pattern = "^[A-Za-z0-9._:-]{1,128}$"), ReadQuery),
    responses((status = 200, description = "The resource", body = api::Resource), GetErrors),
)]
pub(super) async fn get_resource(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(name): Path<String>,
    q: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return ApiError::invalid("bad query string").into_response();
    };
    if let Err(e) = check_name(&name).and_then(|()| caller.may_read(&name).map_err(denied)) {
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
