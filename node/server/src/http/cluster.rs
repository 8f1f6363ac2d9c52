//! Cluster and operations endpoints: status (read scope: admin or monitor), membership
//! changes (admin), the probes `/healthz` and `/readyz` (open), and `/metrics`: behind
//! the read scope on the API port, open on the separate metrics listener
//! (`--metrics-addr`) when there is one. The scrape-time gauges are gathered here from
//! the node's views and rendered with its counters.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ratequeue_api as api;
use ratequeue_api::ErrorCode;

use super::auth::denied;
use super::error::json;
use super::leader::{leader_error, require_leader, NO_LEADER_RETRY_MS};
use super::{ApiError, Body, Caller};
use crate::node::{AfterHandoff, MembershipError, Node};

super::openapi::errors!(StatusErrors, any_node; AUTHENTICATED; Forbidden);

#[utoipa::path(
    get,
    path = "/v1/cluster/status",
    tag = "cluster",
    operation_id = "cluster_status",
    summary = "This node's view of the cluster (admin and monitor keys)",
    responses((status = 200, description = "The status", body = api::ClusterStatus), StatusErrors),
)]
pub(super) async fn status(State(node): State<Arc<Node>>, caller: Caller) -> Response {
    if let Err(d) = caller.may_read_cluster() {
        return denied(d).into_response();
    }
    json(node.status())
}

super::openapi::errors!(AddMemberErrors, leader; AUTHENTICATED, BODY;
    Forbidden, MemberNotFound, MemberUnverified, CommitTimeout);

#[utoipa::path(
    post,
    path = "/v1/cluster/members",
    tag = "cluster",
    operation_id = "add_member",
    summary = "Add a node: verify it, add it as a learner, catch it up, promote it (admin)",
    description = "The node at `peer_addr` must prove it is node `id` of this cluster \
        (`422 member_unverified` otherwise, with nothing written).",
    request_body(content = api::AddMember),
    responses((status = 200, description = "The status after the change", body = api::ClusterStatus), AddMemberErrors),
)]
pub(super) async fn add_member(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Body(req): Body<api::AddMember>,
) -> Response {
    if let Err(d) = caller.may_manage() {
        return denied(d).into_response();
    }
    if let Err(r) = require_leader(&node, &uri) {
        return r;
    }
    match node.add_member(req).await {
        Ok(status) => json(status),
        Err(e) => membership_error(e).into_response(),
    }
}

super::openapi::errors!(RemoveMemberErrors, leader; AUTHENTICATED;
    InvalidRequest, Forbidden, MemberNotFound, CommitTimeout);

#[utoipa::path(
    delete,
    path = "/v1/cluster/members/{id}",
    tag = "cluster",
    operation_id = "remove_member",
    summary = "Remove a member (admin)",
    description = "Asked to remove itself, the leader first hands leadership over and \
        answers 307 to the new leader.",
    params(("id" = u64, Path, description = "The member's node id")),
    responses((status = 200, description = "The status after the change", body = api::ClusterStatus), RemoveMemberErrors),
)]
pub(super) async fn remove_member(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    id: Result<Path<u64>, axum::extract::rejection::PathRejection>,
) -> Response {
    if let Err(d) = caller.may_manage() {
        return denied(d).into_response();
    }
    // Axum's own rejection is plain text; the API's errors are JSON.
    let Ok(Path(id)) = id else {
        return ApiError::invalid("the member id must be an unsigned integer").into_response();
    };
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
        Err(e) => membership_error(e).into_response(),
    }
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "cluster",
    operation_id = "healthz",
    summary = "200 while the process runs (no quorum needed)",
    security(()),
    responses(
        (status = 200, description = "`ok`", content_type = "text/plain", body = String),
        super::openapi::AnyErrors,
    ),
)]
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "cluster",
    operation_id = "readyz",
    summary = "200 when serving and a leader is known (never \"is leader\")",
    security(()),
    responses(
        (status = 200, description = "`ready`", content_type = "text/plain", body = String),
        (status = 503, description = "Shutting down, no known leader, or a fatal storage error; the reason as text", content_type = "text/plain", body = String),
        (status = 500, description = "`internal`", body = api::ErrorBody),
    ),
)]
pub(super) async fn readyz(State(node): State<Arc<Node>>) -> Response {
    match node.readiness().await {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

super::openapi::errors!(MetricsErrors, any_node; AUTHENTICATED; Forbidden);

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "cluster",
    operation_id = "metrics",
    summary = "Prometheus text (admin and monitor keys)",
    description = "The metrics listener (`--metrics-addr`), when configured, serves the \
        same text without a token.",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4", body = String),
        MetricsErrors,
    ),
)]
pub(super) async fn metrics(State(node): State<Arc<Node>>, caller: Caller) -> Response {
    if let Err(d) = caller.may_read_cluster() {
        return denied(d).into_response();
    }
    open_metrics(State(node)).await
}

/// `/metrics` without authentication: the metrics listener's only route.
pub(super) async fn open_metrics(State(node): State<Arc<Node>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        metrics_text(&node),
    )
        .into_response()
}

fn membership_error(e: MembershipError) -> ApiError {
    let code = match &e {
        MembershipError::Invalid(_) | MembershipError::Refused(_) => ErrorCode::InvalidRequest,
        MembershipError::NotFound(_) => ErrorCode::MemberNotFound,
        MembershipError::Unverified(_) => ErrorCode::MemberUnverified,
        MembershipError::Timeout(_) => ErrorCode::CommitTimeout,
        MembershipError::NoLeader(_) => ErrorCode::NoLeader,
    };
    ApiError::new(code, e.to_string())
}

/// The Prometheus text: the node's counters and its scrape-time gauges.
fn metrics_text(node: &Node) -> String {
    {
        let applied = node.applied.read();
        node.metrics
            .retain_resources(|r| applied.state.resource(r).is_some());
    }
    let mut out = node.metrics.render(&node.gauges());
    let sizes = node.applied.read().state.table_sizes();
    out.push_str(
        "# HELP ratequeue_state_entries Entries in each table of the applied state.\n\
         # TYPE ratequeue_state_entries gauge\n",
    );
    for (table, n) in sizes {
        let _ = writeln!(out, "ratequeue_state_entries{{table=\"{table}\"}} {n}");
    }
    out
}
