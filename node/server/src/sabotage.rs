//! A deliberately broken build, for the fault-injection harness's negative control only
//! (`jepsen-style-tests`, docs/consistency.md). Compiled in only with the cargo feature
//! `sabotage-follower-grants`; a normal build has none of this.
//!
//! With it, the router mounts `acquire` below instead of the production handler: a
//! follower answers an acquire itself instead of redirecting. It decides against a copy
//! of its own applied state and hands out the lease without a Raft entry, as a limiter
//! that trusted local state would. The grant is never replicated, so it breaks the
//! concurrency limit (the leader grants the same slots), reuses fencing tokens (the
//! follower's next token is the leader's too), and is absent from the final read. The
//! harness must catch it. The production handlers know nothing of this module.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use ratequeue_api as api;
use ratequeue_api::ErrorCode;
use ratequeue_core::{Command, Grant, Outcome};

use crate::admission::AcquireParams;
use crate::http::leases::{self, admit_request, lease_json};
use crate::http::{ApiError, Body, Caller};
use crate::node::Node;

/// `POST /v1/resources/{name}/acquire` in the broken build: the serving leader answers
/// as usual; any other node grants from its own state.
pub async fn acquire(
    State(node): State<Arc<Node>>,
    uri: Uri,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body<api::AcquireRequest>,
) -> Response {
    if node.admission.is_serving() {
        return leases::acquire(State(node), uri, caller, Path(name), Body(body)).await;
    }
    let params = match admit_request(&node, &caller, name, body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match follower_grant(&node, params) {
        Some(lease) => axum::Json(lease).into_response(),
        None => ApiError::new(ErrorCode::WouldBlock, "no room now")
            .retry(100)
            .into_response(),
    }
}

/// Grants from this node's applied state, or `None` (answered `would_block`); never waits.
fn follower_grant(node: &Node, p: AcquireParams) -> Option<api::Lease> {
    let mut state = node.applied.read().state.clone();
    let now_ms = state.now_ms();
    let grant = Grant {
        resource: p.resource,
        lane: p.lane,
        load: p.load,
        ttl_ms: p.ttl_ms,
        request_id: p.request_id,
        nonce: rand::random(),
        holder: p.holder,
        owner: p.owner,
        wait_ms: p.wait_ms,
    };
    match state.apply_entry(now_ms, &[Command::Grant(grant)]).pop() {
        Some(Outcome::Granted { lease, limits, .. }) => Some(lease_json(lease, &limits, 0)),
        _ => None,
    }
}
