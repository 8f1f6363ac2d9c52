//! Cluster and operations endpoints: status (read scope: admin or monitor), membership
//! changes (admin), the probes `/healthz` and `/readyz` (open), and `/metrics`: behind
//! the read scope on the API port, open on the separate metrics listener
//! (`--metrics-addr`) when there is one. The scrape-time gauges are gathered here from
//! the node's views and rendered with its counters.

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

pub(super) async fn status(State(node): State<Arc<Node>>, caller: Caller) -> Response {
    if let Err(d) = caller.may_read_cluster() {
        return denied(d).into_response();
    }
    json(node.status())
}

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

pub(super) async fn remove_member(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(id): Path<u64>,
) -> Response {
    if let Err(d) = caller.may_manage() {
        return denied(d).into_response();
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
        Err(e) => membership_error(e).into_response(),
    }
}

pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

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
    node.metrics.render(&node.gauges())
}
