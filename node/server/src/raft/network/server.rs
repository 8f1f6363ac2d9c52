//! The peer listener's router: authenticates, decodes, hands the RPC to Raft, encodes
//! the result (including Raft's own errors) back.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;

use super::secret::ClusterSecret;
use super::wire::{self, WireError};
use crate::raft::types::{NodeId, Raft, TypeConfig};

/// The router of a node's peer listener (serve it with `axum::serve`).
///
/// Every route requires the cluster secret (`Authorization: Bearer …`, 401 otherwise,
/// checked before the body is read). The body limit is [`wire::PEER_BODY_BYTES_MAX`] or
/// the Raft config's `snapshot_max_chunk_size` plus a margin, whichever is larger.
/// `api_url` is this node's advertised client API URL, served to peers.
pub fn peer_router(raft: Raft, secret: ClusterSecret, api_url: String) -> Router {
    let chunk_bytes = usize::try_from(raft.config().snapshot_max_chunk_size).unwrap_or(usize::MAX);
    let body_bytes_max =
        wire::PEER_BODY_BYTES_MAX.max(chunk_bytes.saturating_add(wire::BODY_MARGIN_BYTES));
    let node_id = raft.metrics().borrow().id;
    let auth = Auth { secret, node_id };
    Router::new()
        .route(wire::PATH_APPEND_ENTRIES, post(append_entries))
        .route(wire::PATH_VOTE, post(vote))
        .route(wire::PATH_INSTALL_SNAPSHOT, post(install_snapshot))
        .route(wire::PATH_TRIGGER_ELECT, post(trigger_elect))
        .route(
            wire::PATH_API_URL,
            post(move || {
                let url = api_url.clone();
                async move { reply(&url) }
            }),
        )
        .route_layer(middleware::from_fn_with_state(auth, authenticate))
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .with_state(raft)
}

#[derive(Clone)]
struct Auth {
    secret: ClusterSecret,
    node_id: NodeId,
}

/// Rejects requests without the cluster secret (401) and requests meant for another
/// node id (421), before any body is read.
async fn authenticate(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    let presented = bearer_token(request.headers());
    if !presented.is_some_and(|token| auth.secret.matches(token)) {
        tracing::warn!(
            path = %request.uri().path(),
            credentials = if presented.is_some() { "wrong" } else { "missing" },
            "peer request rejected: bad cluster secret"
        );
        return (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, "Bearer realm=\"ratequeue-peer\"")],
            "cluster secret missing or wrong\n",
        )
            .into_response();
    }
    if let Some(target) = request.headers().get(wire::HEADER_TARGET_ID) {
        let meant_for = target.to_str().ok().and_then(|t| t.parse::<NodeId>().ok());
        if meant_for != Some(auth.node_id) {
            tracing::warn!(
                ?target,
                node_id = auth.node_id,
                "peer request meant for another node: check the members' peer addresses"
            );
            return (
                StatusCode::MISDIRECTED_REQUEST,
                format!("this peer address serves node {}\n", auth.node_id),
            )
                .into_response();
        }
    }
    next.run(request).await
}

fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let scheme = b"Bearer ";
    (value.len() >= scheme.len() && value[..scheme.len()].eq_ignore_ascii_case(scheme))
        .then(|| &value[scheme.len()..])
}

async fn append_entries(State(raft): State<Raft>, body: Bytes) -> Response {
    match wire::decode::<AppendEntriesRequest<TypeConfig>>(&body) {
        Ok(rpc) => reply(&raft.append_entries(rpc).await),
        Err(e) => bad_request(&e),
    }
}

async fn vote(State(raft): State<Raft>, body: Bytes) -> Response {
    match wire::decode::<VoteRequest<NodeId>>(&body) {
        Ok(rpc) => reply(&raft.vote(rpc).await),
        Err(e) => bad_request(&e),
    }
}

/// One chunk of a snapshot; openraft keeps the partial snapshot between chunks and
/// installs it when the chunk marked `done` arrives.
async fn install_snapshot(State(raft): State<Raft>, body: Bytes) -> Response {
    match wire::decode::<InstallSnapshotRequest<TypeConfig>>(&body) {
        Ok(rpc) => reply(&raft.install_snapshot(rpc).await),
        Err(e) => bad_request(&e),
    }
}

/// Asks this node to start an election at once: a leader that is shutting down calls
/// it on its most caught-up follower (openraft 0.9 has no leadership transfer).
async fn trigger_elect(State(raft): State<Raft>, body: Bytes) -> Response {
    match wire::decode::<()>(&body) {
        Ok(()) => {
            tracing::info!("election triggered by a peer");
            reply(&raft.trigger().elect().await)
        }
        Err(e) => bad_request(&e),
    }
}

fn reply<T: Serialize>(result: &T) -> Response {
    match wire::encode(result) {
        Ok(body) => ([(CONTENT_TYPE, wire::CONTENT_TYPE_BINCODE)], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding a peer response");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
        }
    }
}

fn bad_request(e: &WireError) -> Response {
    tracing::warn!(error = %e, "undecodable peer request");
    (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
}
