//! The outgoing side: openraft's `RaftNetworkFactory` over pooled HTTP clients.
//!
//! Identity before the secret: a connection to a member first checks that the peer is
//! the node it means to reach, and only then sends requests carrying the cluster
//! secret. Over plain HTTP the peer answers an identity challenge (`/raft/identify`: an
//! HMAC keyed with the secret over our random nonce and its id), checked here; with TLS
//! the handshake also verifies the peer's certificate for `node-<id>.ratequeue`
//! (`tls.rs`), and this node presents its own. The check is repeated after any failure,
//! so a member whose address now leads elsewhere is found out again.
//!
//! Error mapping (what openraft does next depends on it):
//! - no answer within the RPC's time budget -> `RPCError::Timeout`;
//! - an AppendEntries body above [`PEER_BODY_BYTES_MAX`] (or a 413) ->
//!   `RPCError::PayloadTooLarge`, so openraft resends fewer entries;
//! - the peer's Raft answered with an error -> `RPCError::RemoteError`;
//! - everything else -> `RPCError::Unreachable`: cannot connect (refused, no route, DNS
//!   failure, connect timeout, TLS handshake refused), a bad peer address, a failed
//!   identity check, a peer that rejects our secret (401) or certificate (403), is
//!   another node (421), speaks another wire format (400, an answer we cannot decode),
//!   answers with any other status (a web server at a wrong address), or resets the
//!   connection. openraft then backs off per `PeerConnection::backoff` (exponential,
//!   with jitter) instead of retrying at once: none of these clears up within
//!   milliseconds, and a retry at once loops hundreds of times a second.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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

use super::secret::{ClusterSecret, NONCE_BYTES};
use super::wire::{self, IdentifyRequest, IdentifyResponse, PEER_BODY_BYTES_MAX};
use crate::raft::types::{NodeId, NodeInfo, TypeConfig};
use crate::storage::Durability;
use crate::tls::Tls;

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
/// Budget of a control request (leadership hand-off, API URL discovery, identity).
const CONTROL_RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a membership change keeps trying to reach a new member that does not
/// accept connections or answer yet (a node just started); a wrong answer fails at once.
const VERIFY_CONNECT_BUDGET: Duration = Duration::from_secs(10);
const VERIFY_RETRY_PAUSE_MAX: Duration = Duration::from_secs(1);
/// Most per-member TLS clients kept (one per member id dialled; members are few).
const TLS_CLIENTS_MAX: usize = 256;
/// How much of a non-200 answer's text is kept in the error.
const ERROR_BODY_CHARS_MAX: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum PeerNetworkError {
    #[error("the cluster secret cannot be sent in an HTTP header: use visible ASCII only")]
    SecretNotHeaderSafe,
    #[error("building the peer HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("building the peer TLS client: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("peer {peer_addr}: {message}")]
    Peer { peer_addr: String, message: String },
    #[error("peer {peer_addr}: {source}")]
    Remote {
        peer_addr: String,
        source: Fatal<NodeId>,
    },
}

/// Creates the connections openraft uses to reach each member. Cheap to clone (the
/// HTTP clients and their connection pools are shared).
#[derive(Clone, Debug)]
pub struct PeerNetwork {
    /// Plain HTTP: one client for every member.
    plain: reqwest::Client,
    /// TLS: one client per member id, each verifying that member's certificate.
    tls: Option<(Tls, TlsClients)>,
    local_ip: Option<IpAddr>,
    secret: ClusterSecret,
    /// `Bearer <secret>`, marked sensitive so that it never shows in `Debug` output.
    auth: HeaderValue,
    /// With the leader's fsync overlapping replication: the commit index sent in
    /// AppendEntries is capped at the leader's durable prefix.
    commit_cap: Option<Durability<NodeId>>,
}

/// The TLS client of each member id dialled.
type TlsClients = Arc<parking_lot::Mutex<BTreeMap<NodeId, reqwest::Client>>>;

fn client_builder(local_ip: Option<IpAddr>) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(local_ip)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .tcp_nodelay(true)
}

impl PeerNetwork {
    /// `local_ip`: the address outgoing peer connections are bound to (this node's own
    /// peer IP, so that per-source firewall rules partition nodes); `None` lets the OS
    /// choose. `tls`: speak HTTPS to members and verify each one's certificate.
    pub fn new(
        secret: ClusterSecret,
        local_ip: Option<IpAddr>,
        tls: Option<Tls>,
    ) -> Result<Self, PeerNetworkError> {
        let mut auth = HeaderValue::try_from(format!("Bearer {}", secret.expose()))
            .map_err(|_| PeerNetworkError::SecretNotHeaderSafe)?;
        auth.set_sensitive(true);
        let plain = client_builder(local_ip)
            .build()
            .map_err(PeerNetworkError::Client)?;
        Ok(PeerNetwork {
            plain,
            tls: tls.map(|t| (t, Arc::default())),
            local_ip,
            secret,
            auth,
            commit_cap: None,
        })
    }

    /// Cap the commit index of every AppendEntries at what `durability` reports held by
    /// a majority of disks (the leader's fsync overlapping replication).
    pub fn with_commit_cap(mut self, durability: Durability<NodeId>) -> Self {
        self.commit_cap = Some(durability);
        self
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The client that reaches member `target` (with TLS: one that accepts only
    /// `target`'s certificate).
    fn http_for(&self, target: NodeId) -> Result<reqwest::Client, PeerNetworkError> {
        let Some((tls, clients)) = &self.tls else {
            return Ok(self.plain.clone());
        };
        let mut clients = clients.lock();
        if let Some(c) = clients.get(&target) {
            return Ok(c.clone());
        }
        let client = client_builder(self.local_ip)
            .use_preconfigured_tls(tls.peer_client_config(target)?)
            .build()
            .map_err(PeerNetworkError::Client)?;
        if clients.len() >= TLS_CLIENTS_MAX {
            clients.clear();
        }
        clients.insert(target, client.clone());
        Ok(client)
    }

    /// Checks that the node at `peer_addr` is member `target` (its identity proof and,
    /// with TLS, its certificate) without sending it the cluster secret: what a
    /// membership change does before it adds a member.
    pub async fn verify_member(
        &self,
        target: NodeId,
        peer_addr: &str,
    ) -> Result<(), PeerNetworkError> {
        let fail = |message: String| PeerNetworkError::Peer {
            peer_addr: peer_addr.to_owned(),
            message,
        };
        let http = self.http_for(target)?;
        let url = peer_url(self.scheme(), peer_addr, wire::PATH_IDENTIFY);
        let deadline = tokio::time::Instant::now() + VERIFY_CONNECT_BUDGET;
        let mut pause = BACKOFF_MIN;
        loop {
            match identify(&http, &self.secret, target, &url, CONTROL_RPC_TIMEOUT).await {
                Ok(()) => return Ok(()),
                // Not listening yet, or listening but not serving yet (a node opens
                // its storage between binding and serving).
                Err(f @ (Failure::Connect(_) | Failure::Timeout))
                    if tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::debug!(target, error = %f, "new member not reachable yet");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(VERIFY_RETRY_PAUSE_MAX);
                }
                Err(f) => return Err(fail(f.to_string())),
            }
        }
    }

    /// Asks member `target` at `peer_addr` (`host:port` of its peer listener) to start
    /// an election now: the leadership hand-off of a leader that is shutting down.
    pub async fn trigger_election(
        &self,
        target: NodeId,
        peer_addr: &str,
    ) -> Result<(), PeerNetworkError> {
        let result: Result<(), Fatal<NodeId>> = self
            .control_rpc(target, peer_addr, wire::PATH_TRIGGER_ELECT)
            .await?;
        result.map_err(|source| PeerNetworkError::Remote {
            peer_addr: peer_addr.to_owned(),
            source,
        })
    }

    /// Asks member `target` at `peer_addr` for its advertised client API URL.
    pub async fn api_url(
        &self,
        target: NodeId,
        peer_addr: &str,
    ) -> Result<String, PeerNetworkError> {
        self.control_rpc(target, peer_addr, wire::PATH_API_URL)
            .await
    }

    /// A request without arguments to a member's peer listener (outside Raft's own
    /// RPCs), after checking its identity, with its answer decoded as `T`.
    async fn control_rpc<T: serde::de::DeserializeOwned>(
        &self,
        target: NodeId,
        peer_addr: &str,
        path: &str,
    ) -> Result<T, PeerNetworkError> {
        let fail = |message: String| PeerNetworkError::Peer {
            peer_addr: peer_addr.to_owned(),
            message,
        };
        self.verify_member(target, peer_addr).await?;
        let http = self.http_for(target)?;
        let url = peer_url(self.scheme(), peer_addr, path);
        let body = wire::encode(&()).map_err(|e| fail(e.to_string()))?;
        let target_header = HeaderValue::from(target);
        let answer = post(
            &http,
            Some(&self.auth),
            Some(&target_header),
            &url,
            body,
            CONTROL_RPC_TIMEOUT,
        )
        .await
        .map_err(|f| fail(f.to_string()))?;
        wire::decode(&answer).map_err(|e| fail(format!("undecodable answer: {e}")))
    }
}

/// The identity challenge: a fresh nonce to `url`, whose answer must be `target`'s
/// proof. Sends no secret.
async fn identify(
    http: &reqwest::Client,
    secret: &ClusterSecret,
    target: NodeId,
    url: &Result<Url, String>,
    timeout: Duration,
) -> Result<(), Failure> {
    let nonce: [u8; NONCE_BYTES] = rand::random();
    let body = wire::encode(&IdentifyRequest { target, nonce })
        .map_err(|e| Failure::Other(AnyError::error(e.to_string())))?;
    let answer = post(http, None, None, url, body, timeout).await?;
    let answer: IdentifyResponse = wire::decode(&answer).map_err(|e| {
        Failure::Unreachable(AnyError::error(format!(
            "not a ratequeue node (undecodable identity answer: {e})"
        )))
    })?;
    if answer.node != target {
        return Err(Failure::Unreachable(AnyError::error(format!(
            "this address serves node {}, not node {target}",
            answer.node
        ))));
    }
    if !secret.check_proof(target, &nonce, &answer.proof) {
        return Err(Failure::Unreachable(AnyError::error(format!(
            "the node at this address could not prove it is node {target} of this cluster \
             (another cluster secret?)"
        ))));
    }
    Ok(())
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    /// Connects lazily: the address is resolved (DNS or IP) when a connection is made.
    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerConnection {
        let scheme = self.scheme();
        let url = |path| peer_url(scheme, &node.peer_addr, path);
        PeerConnection {
            http: self.http_for(target).map_err(|e| e.to_string()),
            auth: self.auth.clone(),
            secret: self.secret.clone(),
            verified: AtomicBool::new(false),
            target,
            target_header: HeaderValue::from(target),
            node: node.clone(),
            identify: url(wire::PATH_IDENTIFY),
            append_entries: url(wire::PATH_APPEND_ENTRIES),
            vote: url(wire::PATH_VOTE),
            install_snapshot: url(wire::PATH_INSTALL_SNAPSHOT),
            commit_cap: self.commit_cap.clone(),
        }
    }
}

/// openraft's handle on one member.
#[derive(Debug)]
pub struct PeerConnection {
    /// The client for this member, or why none could be built.
    http: Result<reqwest::Client, String>,
    auth: HeaderValue,
    secret: ClusterSecret,
    /// Whether the peer proved its identity since the last failure.
    verified: AtomicBool,
    target: NodeId,
    target_header: HeaderValue,
    node: NodeInfo,
    /// Each endpoint's URL, or why the member's `peer_addr` is unusable.
    identify: Result<Url, String>,
    append_entries: Result<Url, String>,
    vote: Result<Url, String>,
    install_snapshot: Result<Url, String>,
    commit_cap: Option<Durability<NodeId>>,
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
        let answer = self.send(&rpc, body).await.map_err(|f| {
            if !matches!(f, Failure::Timeout | Failure::TooLarge) {
                self.verified.store(false, Ordering::Relaxed);
            }
            self.rpc_error(f, &rpc)
        })?;
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

    /// Checks the peer's identity if it is not verified yet, then sends `body`.
    async fn send(&self, rpc: &Rpc<'_>, body: Vec<u8>) -> Result<axum::body::Bytes, Failure> {
        let http = self
            .http
            .as_ref()
            .map_err(|why| Failure::Unreachable(AnyError::error(why)))?;
        if !self.verified.load(Ordering::Relaxed) {
            identify(http, &self.secret, self.target, &self.identify, rpc.timeout).await?;
            self.verified.store(true, Ordering::Relaxed);
        }
        post(
            http,
            Some(&self.auth),
            Some(&self.target_header),
            rpc.url,
            body,
            rpc.timeout,
        )
        .await
    }

    fn rpc_error<E: std::error::Error>(&self, failure: Failure, rpc: &Rpc<'_>) -> RpcError<E> {
        match failure {
            Failure::Unreachable(e) | Failure::Connect(e) => {
                RPCError::Unreachable(Unreachable::from(e))
            }
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
            Failure::Other(e) => RPCError::Unreachable(Unreachable::from(e)),
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
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        if let Some(cap) = &self.commit_cap {
            rpc.leader_commit = cap.cap_commit(rpc.leader_commit);
        }
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
        tracing::debug!(entries, bytes = body.len(), "append-entries sent");
        let res = self.exchange(call, body).await;
        tracing::debug!(entries, ok = res.is_ok(), "append-entries answered");
        res
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

/// `{scheme}://{peer_addr}{path}`, refusing anything but a plain `host:port`.
pub(super) fn peer_url(scheme: &str, peer_addr: &str, path: &str) -> Result<Url, String> {
    let bad = |why: &str| format!("peer address {peer_addr:?} is not host:port ({why})");
    let url =
        Url::parse(&format!("{scheme}://{peer_addr}{path}")).map_err(|e| bad(&e.to_string()))?;
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
    /// No connection (refused, no route, DNS): may clear up when the peer starts.
    #[error("cannot connect: {0}")]
    Connect(AnyError),
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
        // A connect timeout is both: it is a connection failure first. A TLS handshake
        // that failed (a certificate for another node, another CA) is no passing state.
        if e.is_connect() && !caused_by_tls(&e) {
            Failure::Connect(AnyError::new(&e))
        } else if e.is_connect() {
            Failure::Unreachable(AnyError::new(&e))
        } else if e.is_timeout() {
            Failure::Timeout
        } else {
            Failure::Other(AnyError::new(&e))
        }
    }
}

fn caused_by_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // rustls errors reach reqwest wrapped in io::Error.
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

/// POSTs one framed body and returns the 200 answer's body. `auth`: the cluster
/// secret's header, for every request but the identity challenge.
async fn post(
    http: &reqwest::Client,
    auth: Option<&HeaderValue>,
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
        .header(CONTENT_TYPE, wire::CONTENT_TYPE_BINCODE)
        .timeout(timeout)
        .body(body);
    if let Some(auth) = auth {
        request = request.header(AUTHORIZATION, auth.clone());
    }
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
        StatusCode::FORBIDDEN => Failure::Unreachable(AnyError::error(format!(
            "the peer refused our certificate (403): {text}"
        ))),
        StatusCode::MISDIRECTED_REQUEST => {
            Failure::Unreachable(AnyError::error(format!("wrong node at this address (421): {text}")))
        }
        StatusCode::BAD_REQUEST => Failure::Unreachable(AnyError::error(format!(
            "the peer cannot decode our requests (400, another version?): {text}"
        ))),
        StatusCode::PAYLOAD_TOO_LARGE => Failure::TooLarge,
        _ => Failure::Unreachable(AnyError::error(format!(
            "not a ratequeue peer listener? HTTP {status}: {text}"
        ))),
    })
}
