//! The outgoing side: openraft's `RaftNetworkFactory` over one pooled HTTP client.
//!
//! Error mapping (what openraft does next depends on it):
//! - cannot connect (refused, no route, DNS failure, connect timeout), a bad peer
//!   address, a peer that rejects our secret (401), is another node (421) or speaks
//!   another wire format (400, or an answer we cannot decode) -> `RPCError::Unreachable`:
//!   openraft backs off per `PeerConnection::backoff` instead of retrying at every
//!   heartbeat, since none of these clears up by itself within milliseconds;
//! - no answer within the RPC's time budget -> `RPCError::Timeout`;
//! - an AppendEntries body above [`PEER_BODY_BYTES_MAX`] (or a 413) ->
//!   `RPCError::PayloadTooLarge`, so openraft resends fewer entries;
//! - the peer's Raft answered with an error -> `RPCError::RemoteError`;
//! - anything else (reset mid-request, undecodable answer) -> `RPCError::Network`.

use std::net::IpAddr;
use std::time::Duration;

use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use openraft::error::{
    Fatal, Infallible, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError,
    RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, RPCTypes, Vote};
use rand::Rng;
use reqwest::Url;
use serde::de::DeserializeOwned;

use super::secret::ClusterSecret;
use super::wire::{self, PEER_BODY_BYTES_MAX};
use crate::raft::types::{NodeId, NodeInfo, TypeConfig};

/// Bound on establishing a TCP connection; a silent peer (dropped SYNs) becomes
/// `Unreachable` after this even when the RPC's own budget is longer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle pooled connections are closed after this; a peer that moved (new IP behind the
/// same DNS name) is reached by a new connection, resolved afresh.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Backoff after `Unreachable`: doubles from the minimum up to the maximum (plus up to
/// 10 % jitter so that the nodes do not retry in lockstep); reset by any success.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Budget of a control request (leadership hand-off, API URL discovery).
const CONTROL_RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// How much of a non-200 answer's text is kept in the error.
const ERROR_BODY_CHARS_MAX: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum PeerNetworkError {
    #[error("the cluster secret cannot be sent in an HTTP header: use visible ASCII only")]
    SecretNotHeaderSafe,
    #[error("building the peer HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("peer {peer_addr}: {message}")]
    Peer { peer_addr: String, message: String },
    #[error("peer {peer_addr}: {source}")]
    Remote {
        peer_addr: String,
        source: Fatal<NodeId>,
    },
}

/// Creates the connections openraft uses to reach each member. Cheap to clone (the
/// HTTP client and its connection pool are shared).
#[derive(Clone, Debug)]
pub struct PeerNetwork {
    http: reqwest::Client,
    /// `Bearer <secret>`, marked sensitive so that it never shows in `Debug` output.
    auth: HeaderValue,
}

impl PeerNetwork {
    /// `local_ip`: the address outgoing peer connections are bound to (this node's own
    /// peer IP, so that per-source firewall rules partition nodes); `None` lets the OS
    /// choose.
    pub fn new(secret: ClusterSecret, local_ip: Option<IpAddr>) -> Result<Self, PeerNetworkError> {
        let mut auth = HeaderValue::try_from(format!("Bearer {}", secret.expose()))
            .map_err(|_| PeerNetworkError::SecretNotHeaderSafe)?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .no_proxy()
            .local_address(local_ip)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .map_err(PeerNetworkError::Client)?;
        Ok(PeerNetwork { http, auth })
    }

    /// Asks the node at `peer_addr` (`host:port` of its peer listener) to start an
    /// election now: the leadership hand-off of a leader that is shutting down.
    pub async fn trigger_election(&self, peer_addr: &str) -> Result<(), PeerNetworkError> {
        let result: Result<(), Fatal<NodeId>> = self
            .control_rpc(peer_addr, wire::PATH_TRIGGER_ELECT)
            .await?;
        result.map_err(|source| PeerNetworkError::Remote {
            peer_addr: peer_addr.to_owned(),
            source,
        })
    }

    /// Asks the node at `peer_addr` for its advertised client API URL.
    pub async fn api_url(&self, peer_addr: &str) -> Result<String, PeerNetworkError> {
        self.control_rpc(peer_addr, wire::PATH_API_URL).await
    }

    /// A request without arguments to another node's peer listener (outside Raft's own
    /// RPCs), with its answer decoded as `T`.
    async fn control_rpc<T: serde::de::DeserializeOwned>(
        &self,
        peer_addr: &str,
        path: &str,
    ) -> Result<T, PeerNetworkError> {
        let fail = |message: String| PeerNetworkError::Peer {
            peer_addr: peer_addr.to_owned(),
            message,
        };
        let url = peer_url(peer_addr, path);
        let body = wire::encode(&()).map_err(|e| fail(e.to_string()))?;
        let answer = post(
            &self.http,
            &self.auth,
            None,
            &url,
            body,
            CONTROL_RPC_TIMEOUT,
        )
        .await
        .map_err(|f| fail(f.to_string()))?;
        wire::decode(&answer).map_err(|e| fail(format!("undecodable answer: {e}")))
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    /// Connects lazily: the address is resolved (DNS or IP) when a connection is made.
    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerConnection {
        let url = |path| peer_url(&node.peer_addr, path);
        PeerConnection {
            http: self.http.clone(),
            auth: self.auth.clone(),
            target,
            target_header: HeaderValue::from(target),
            node: node.clone(),
            append_entries: url(wire::PATH_APPEND_ENTRIES),
            vote: url(wire::PATH_VOTE),
            install_snapshot: url(wire::PATH_INSTALL_SNAPSHOT),
        }
    }
}

/// openraft's handle on one member.
#[derive(Debug)]
pub struct PeerConnection {
    http: reqwest::Client,
    auth: HeaderValue,
    target: NodeId,
    target_header: HeaderValue,
    node: NodeInfo,
    /// Each endpoint's URL, or why the member's `peer_addr` is unusable.
    append_entries: Result<Url, String>,
    vote: Result<Url, String>,
    install_snapshot: Result<Url, String>,
}

type RpcError<E = Infallible> = RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>;

/// What the RPC being sent is, for error reports.
struct Rpc<'a> {
    url: &'a Result<Url, String>,
    action: RPCTypes,
    /// This node's id, taken from the request's vote.
    sender: NodeId,
    timeout: Duration,
    /// AppendEntries only: how many entries, so that a too large one can be split.
    entries: Option<usize>,
}

impl PeerConnection {
    async fn exchange<T, E>(&self, rpc: Rpc<'_>, body: Vec<u8>) -> Result<T, RpcError<E>>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer = post(
            &self.http,
            &self.auth,
            Some(&self.target_header),
            rpc.url,
            body,
            rpc.timeout,
        )
        .await
        .map_err(|f| self.rpc_error(f, &rpc))?;
        let result: Result<T, RaftError<NodeId, E>> = wire::decode(&answer).map_err(|e| {
            RPCError::Unreachable(Unreachable::from(AnyError::error(format!(
                "undecodable answer from node {}: {e}",
                self.target
            ))))
        })?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }

    fn rpc_error<E: std::error::Error>(&self, failure: Failure, rpc: &Rpc<'_>) -> RpcError<E> {
        match failure {
            Failure::Unreachable(e) => RPCError::Unreachable(Unreachable::from(e)),
            Failure::Timeout => RPCError::Timeout(Timeout {
                action: rpc.action,
                id: rpc.sender,
                target: self.target,
                timeout: rpc.timeout,
            }),
            Failure::TooLarge => match rpc.entries {
                Some(n) if n > 1 => {
                    RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(n as u64 / 2))
                }
                _ => RPCError::Network(NetworkError::from(AnyError::error(format!(
                    "node {} refused the {} body as too large",
                    self.target, rpc.action
                )))),
            },
            Failure::Other(e) => RPCError::Network(NetworkError::from(e)),
        }
    }
}

fn encode_error<E: std::error::Error>(e: &wire::WireError) -> RpcError<E> {
    RPCError::Network(NetworkError::new(e))
}

fn sender_of(vote: &Vote<NodeId>) -> NodeId {
    vote.leader_id().voted_for().unwrap_or_default()
}

/// How many entries to send instead, so that the body fits `PEER_BODY_BYTES_MAX`.
pub(super) fn split_hint(entries: usize, body_bytes: usize) -> u64 {
    let fitting =
        (entries as u128 * PEER_BODY_BYTES_MAX as u128 / body_bytes.max(1) as u128) as u64;
    fitting.clamp(1, (entries as u64).saturating_sub(1).max(1))
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        let entries = rpc.entries.len();
        let body = wire::encode(&rpc).map_err(|e| encode_error(&e))?;
        if body.len() > PEER_BODY_BYTES_MAX && entries > 1 {
            let hint = split_hint(entries, body.len());
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        let call = Rpc {
            url: &self.append_entries,
            action: RPCTypes::AppendEntries,
            sender: sender_of(&rpc.vote),
            timeout: option.hard_ttl(),
            entries: Some(entries),
        };
        self.exchange(call, body).await
    }

    /// One snapshot chunk; openraft's default `full_snapshot` splits the snapshot into
    /// `snapshot_max_chunk_size` pieces and retries a chunk that failed. Each chunk gets
    /// `soft_ttl` (3/4 of `install_snapshot_timeout`), so that a slow chunk ends as our
    /// `Timeout`, which openraft retries, before openraft's hard deadline cancels the
    /// whole transfer. The last chunk includes installing the snapshot on the follower:
    /// configure `install_snapshot_timeout` in seconds, not the default 200 ms.
    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        let body = wire::encode(&rpc).map_err(|e| encode_error(&e))?;
        let call = Rpc {
            url: &self.install_snapshot,
            action: RPCTypes::InstallSnapshot,
            sender: sender_of(&rpc.vote),
            timeout: option.soft_ttl(),
            entries: None,
        };
        self.exchange(call, body).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        let body = wire::encode(&rpc).map_err(|e| encode_error(&e))?;
        let call = Rpc {
            url: &self.vote,
            action: RPCTypes::Vote,
            sender: sender_of(&rpc.vote),
            timeout: option.hard_ttl(),
            entries: None,
        };
        self.exchange(call, body).await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(unreachable_backoff())
    }
}

/// 50 ms, 100 ms, 200 ms, … capped at 1 s, each plus up to 10 % jitter.
fn unreachable_backoff() -> impl Iterator<Item = Duration> + Send + 'static {
    std::iter::successors(Some(BACKOFF_MIN), |d| Some((*d * 2).min(BACKOFF_MAX))).map(|d| {
        let jitter_ms = rand::thread_rng().gen_range(0..=d.as_millis() as u64 / 10);
        d + Duration::from_millis(jitter_ms)
    })
}

/// `http://{peer_addr}{path}`, refusing anything but a plain `host:port`.
fn peer_url(peer_addr: &str, path: &str) -> Result<Url, String> {
    let bad = |why: &str| format!("peer address {peer_addr:?} is not host:port ({why})");
    let url = Url::parse(&format!("http://{peer_addr}{path}")).map_err(|e| bad(&e.to_string()))?;
    let has_host = matches!(url.host_str(), Some(host) if !host.is_empty());
    if !has_host || url.port().is_none() {
        return Err(bad("host and port required"));
    }
    if url.path() != path || url.query().is_some() || !url.username().is_empty() {
        return Err(bad("unexpected path, query or user"));
    }
    Ok(url)
}

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("unreachable: {0}")]
    Unreachable(AnyError),
    #[error("timed out")]
    Timeout,
    #[error("request body too large for the peer")]
    TooLarge,
    #[error("{0}")]
    Other(AnyError),
}

impl From<reqwest::Error> for Failure {
    fn from(e: reqwest::Error) -> Self {
        // A connect timeout is both: it is a connection failure first.
        if e.is_connect() {
            Failure::Unreachable(AnyError::new(&e))
        } else if e.is_timeout() {
            Failure::Timeout
        } else {
            Failure::Other(AnyError::new(&e))
        }
    }
}

/// POSTs one framed body and returns the 200 answer's body.
async fn post(
    http: &reqwest::Client,
    auth: &HeaderValue,
    target: Option<&HeaderValue>,
    url: &Result<Url, String>,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<axum::body::Bytes, Failure> {
    let url = url
        .as_ref()
        .map_err(|why| Failure::Unreachable(AnyError::error(why)))?;
    let mut request = http
        .post(url.clone())
        .header(AUTHORIZATION, auth.clone())
        .header(CONTENT_TYPE, wire::CONTENT_TYPE_BINCODE)
        .timeout(timeout)
        .body(body);
    if let Some(target) = target {
        request = request.header(wire::HEADER_TARGET_ID, target.clone());
    }
    let response = request.send().await?;
    let status = response.status();
    if status == StatusCode::OK {
        return Ok(response.bytes().await?);
    }
    let text = response.text().await.unwrap_or_default();
    let text: String = text.trim().chars().take(ERROR_BODY_CHARS_MAX).collect();
    Err(match status {
        StatusCode::UNAUTHORIZED => Failure::Unreachable(AnyError::error(
            "the peer rejected our cluster secret (401): every member needs the same RATEQUEUE_CLUSTER_SECRET",
        )),
        StatusCode::MISDIRECTED_REQUEST => {
            Failure::Unreachable(AnyError::error(format!("wrong node at this address (421): {text}")))
        }
        StatusCode::BAD_REQUEST => Failure::Unreachable(AnyError::error(format!(
            "the peer cannot decode our requests (400, another version?): {text}"
        ))),
        StatusCode::PAYLOAD_TOO_LARGE => Failure::TooLarge,
        _ => Failure::Other(AnyError::error(format!("HTTP {status}: {text}"))),
    })
}
