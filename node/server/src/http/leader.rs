//! Leader routing: leader-only requests are answered on the serving leader, sent on
//! with a 307 (same path, query, method and body) by a follower that knows the leader,
//! and refused with a 503 `no_leader` otherwise. Linearizable reads pass a ReadIndex
//! round first unless `?stale=true`.

use std::time::Duration;

use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ratequeue_api as api;
use ratequeue_api::ErrorCode;
use serde::Deserialize;

use super::error::{refusal, rejection};
use super::ApiError;
use crate::admission::Failure;
use crate::node::Node;

/// Retry-After sent with 503 during elections.
pub(super) const NO_LEADER_RETRY_MS: u64 = 500;

pub(super) fn redirect_target(base: &str, uri: &Uri) -> String {
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    format!("{}{}", base.trim_end_matches('/'), pq)
}

/// Leader-only requests go through this: Ok on the serving leader, else the error
/// response (a 307 for followers that know the leader, a 503 otherwise).
pub(super) fn require_leader(node: &Node, uri: &Uri) -> Result<(), Response> {
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
pub(super) fn leader_error(node: &Node, uri: &Uri) -> Response {
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

pub(super) fn failure(node: &Node, uri: &Uri, f: Failure) -> Response {
    match f {
        Failure::NotLeader => leader_error(node, uri),
        Failure::Ambiguous => ApiError::new(
            ErrorCode::CommitTimeout,
            "the write may or may not have been applied; retry with the same request_id",
        )
        .into_response(),
        Failure::Refused(r) => refusal(r).into_response(),
        Failure::NotOwner => ApiError::new(
            ErrorCode::Forbidden,
            "the lease was acquired by another key; only that key or an admin may release or renew it",
        )
        .into_response(),
        Failure::Rejected(r) => rejection(r).into_response(),
    }
}

/// The query of a read: `?stale=true` answers from this node's applied state, without
/// going to the leader.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ReadQuery {
    /// Answer from this node's applied state (any node, possibly behind the leader)
    /// instead of a linearizable read on the leader.
    #[serde(default)]
    pub(super) stale: bool,
}

/// How long a read waits for its leader to confirm it still leads: ReadIndex rounds are
/// tried again for this long (each is bounded by a heartbeat's timeout), so a follower
/// slow to answer one heartbeat (a busy machine) does not fail the read.
pub(super) const READ_CONFIRM_MAX: Duration = Duration::from_secs(2);

/// Reads go to the leader after a ReadIndex round, unless `?stale=true`. A round that
/// fails is tried again while this node still serves as leader, for up to
/// `READ_CONFIRM_MAX`; then `503 no_leader` (or a 307 if another leader is known).
pub(super) async fn read_barrier(node: &Node, uri: &Uri, stale: bool) -> Result<(), Response> {
    if stale {
        return Ok(());
    }
    require_leader(node, uri)?;
    let deadline = tokio::time::Instant::now() + READ_CONFIRM_MAX;
    loop {
        if node.raft.ensure_linearizable().await.is_ok() {
            return Ok(());
        }
        let leads = node.admission.is_serving() && !node.is_shutting_down();
        if !leads || tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    if node.leader().is_some_and(|(id, _)| id != node.id) {
        return Err(leader_error(node, uri));
    }
    Err(ApiError::new(
        ErrorCode::NoLeader,
        "this node could not confirm with a quorum that it still leads; retry shortly",
    )
    .retry(NO_LEADER_RETRY_MS)
    .into_response())
}
