//! The peer listener's router: authenticates, decodes, hands the RPC to Raft, encodes
//! the result (including Raft's own errors) back.
//!
//! With mutual TLS the listener has already verified the caller's certificate against
//! the cluster CA; here each Raft message must come from the node its certificate
//! names (the message's vote names its sender), and control requests from a current
//! member. The identity challenge (`/raft/identify`) is the one route without the
//! cluster secret: it reveals nothing but a proof for a nonce of the caller's choice.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use axum::Router;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;

use openraft::Vote;

use super::secret::ClusterSecret;
use super::wire::{self, IdentifyRequest, IdentifyResponse, WireError};
use crate::listener::ClientCert;
use crate::raft::types::{NodeId, Raft, TypeConfig};
use crate::tls::cert_names_node;

/// The router of a node's peer listener (serve it with `listener::serve`).
///
/// Every route but `/raft/identify` requires the cluster secret (`Authorization: Bearer
/// …`, 401 otherwise, checked before the body is read). The body limit is
/// [`wire::PEER_BODY_BYTES_MAX`] or the Raft config's `snapshot_max_chunk_size` plus a
/// margin, whichever is larger. `api_url` is this node's advertised client API URL,
/// served to peers. `mutual_tls`: the listener verified a client certificate, and every
/// request must come from the member it names (403 otherwise).
pub fn peer_router(raft: Raft, secret: ClusterSecret, api_url: String, mutual_tls: bool) -> Router {
    let chunk_bytes = usize::try_from(raft.config().snapshot_max_chunk_size).unwrap_or(usize::MAX);
    let body_bytes_max =
        wire::PEER_BODY_BYTES_MAX.max(chunk_bytes.saturating_add(wire::BODY_MARGIN_BYTES));
    let node_id = raft.metrics().borrow().id;
    let peer = Peer {
        raft,
        secret,
        node_id,
        mutual_tls,
    };
    let authenticated = Router::new()
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
        .route_layer(middleware::from_fn_with_state(peer.clone(), authenticate))
        .layer(DefaultBodyLimit::max(body_bytes_max));
    let identify = Router::new()
        .route(wire::PATH_IDENTIFY, post(identify))
        .layer(DefaultBodyLimit::max(wire::IDENTIFY_BODY_BYTES_MAX));
    authenticated.merge(identify).with_state(peer)
}

#[derive(Clone)]
struct Peer {
    raft: Raft,
    secret: ClusterSecret,
    node_id: NodeId,
    mutual_tls: bool,
}

impl Peer {
    /// With mutual TLS: the caller's certificate must name `sender`.
    fn check_sender(&self, cert: Option<&ClientCert>, sender: NodeId) -> Result<(), Response> {
        if !self.mutual_tls || cert.is_some_and(|c| cert_names_node(&c.0, sender)) {
            return Ok(());
        }
        tracing::warn!(
            sender,
            "peer request refused: the client certificate does not name its sender"
        );
        Err((
            StatusCode::FORBIDDEN,
            format!("the client certificate does not name node {sender}\n"),
        )
            .into_response())
    }

    /// With mutual TLS: the caller's certificate must name a current member.
    fn check_member(&self, cert: Option<&ClientCert>) -> Result<(), Response> {
        if !self.mutual_tls {
            return Ok(());
        }
        let members: Vec<NodeId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        let named = cert.is_some_and(|c| members.iter().any(|id| cert_names_node(&c.0, *id)));
        if named {
            return Ok(());
        }
        tracing::warn!("peer request refused: the client certificate names no member");
        Err((
            StatusCode::FORBIDDEN,
            "the client certificate names no member of this cluster\n",
        )
            .into_response())
    }
}

/// Rejects requests without the cluster secret (401) and requests meant for another
/// node id (421), before any body is read.
async fn authenticate(State(auth): State<Peer>, request: Request, next: Next) -> Response {
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
            return misdirected(auth.node_id);
        }
    }
    next.run(request).await
}

fn misdirected(node_id: NodeId) -> Response {
    (
        StatusCode::MISDIRECTED_REQUEST,
        format!("this peer address serves node {node_id}\n"),
    )
        .into_response()
}

/// Proves this node's identity for the caller's nonce, without revealing the secret.
async fn identify(State(peer): State<Peer>, body: Bytes) -> Response {
    match wire::decode::<IdentifyRequest>(&body) {
        Ok(req) if req.target != peer.node_id => misdirected(peer.node_id),
        Ok(req) => reply(&IdentifyResponse {
            node: peer.node_id,
            proof: peer.secret.proof(peer.node_id, &req.nonce),
        }),
        Err(e) => bad_request(&e),
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let scheme = b"Bearer ";
    (value.len() >= scheme.len() && value[..scheme.len()].eq_ignore_ascii_case(scheme))
        .then(|| &value[scheme.len()..])
}

type Cert = Option<Extension<ClientCert>>;

fn sender_of(vote: &Vote<NodeId>) -> NodeId {
    vote.leader_id().voted_for().unwrap_or_default()
}

async fn append_entries(State(peer): State<Peer>, cert: Cert, body: Bytes) -> Response {
    match wire::decode::<AppendEntriesRequest<TypeConfig>>(&body) {
        Ok(rpc) => match peer.check_sender(cert.as_deref(), sender_of(&rpc.vote)) {
            Ok(()) => {
                let entries = rpc.entries.len();
                tracing::debug!(entries, "append-entries received");
                let res = peer.raft.append_entries(rpc).await;
                tracing::debug!(entries, "append-entries done");
                reply(&res)
            }
            Err(refused) => refused,
        },
        Err(e) => bad_request(&e),
    }
}

async fn vote(State(peer): State<Peer>, cert: Cert, body: Bytes) -> Response {
    match wire::decode::<VoteRequest<NodeId>>(&body) {
        Ok(rpc) => match peer.check_sender(cert.as_deref(), sender_of(&rpc.vote)) {
            Ok(()) => reply(&peer.raft.vote(rpc).await),
            Err(refused) => refused,
        },
        Err(e) => bad_request(&e),
    }
}

/// One chunk of a snapshot; openraft keeps the partial snapshot between chunks and
/// installs it when the chunk marked `done` arrives.
async fn install_snapshot(State(peer): State<Peer>, cert: Cert, body: Bytes) -> Response {
    match wire::decode::<InstallSnapshotRequest<TypeConfig>>(&body) {
        Ok(rpc) => match peer.check_sender(cert.as_deref(), sender_of(&rpc.vote)) {
            Ok(()) => reply(&peer.raft.install_snapshot(rpc).await),
            Err(refused) => refused,
        },
        Err(e) => bad_request(&e),
    }
}

/// Asks this node to start an election at once: a leader that is shutting down calls
/// it on its most caught-up follower (openraft 0.9 has no leadership transfer).
async fn trigger_elect(State(peer): State<Peer>, cert: Cert, body: Bytes) -> Response {
    if let Err(refused) = peer.check_member(cert.as_deref()) {
        return refused;
    }
    match wire::decode::<()>(&body) {
        Ok(()) => {
            tracing::info!("election triggered by a peer");
            reply(&peer.raft.trigger().elect().await)
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
