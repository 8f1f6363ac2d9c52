//! Tests of the peer transport over real sockets on 127.0.0.1 (ephemeral ports), with
//! real openraft instances on the in-memory stores of `mem`. No sleeps: every wait polls
//! Raft metrics with a deadline.

mod mem;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
use openraft::error::{Fatal, RPCError, RaftError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::VoteRequest;
use openraft::{Config, LogId, SnapshotPolicy, Vote};
use ratequeue_core::Command;
use tokio::net::TcpListener;

use self::mem::{MemLog, MemSm};
use super::client::split_hint;
use super::{peer_router, wire, ClusterSecret, PeerNetwork, PEER_BODY_BYTES_MAX};
use crate::listener::{self, ConnLimits, Plain};
use crate::raft::types::{Batch, NodeId, NodeInfo, Raft};
use crate::storage::Durability;
use crate::tls::test_pki::TestCa;
use crate::tls::{node_name, Tls};

const SECRET: &str = "correct horse battery staple";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Deadline of every wait on Raft metrics (generous: CI machines are slow and shared).
const WAIT: Duration = Duration::from_secs(20);
const RPC_TTL: Duration = Duration::from_secs(2);

struct TestNode {
    id: NodeId,
    raft: Raft,
    sm: MemSm,
    addr: SocketAddr,
}

impl TestNode {
    fn info(&self) -> NodeInfo {
        NodeInfo {
            peer_addr: self.addr.to_string(),
            api_url: format!("http://{}", self.addr),
        }
    }
}

fn config() -> Arc<Config> {
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        install_snapshot_timeout: 5_000,
        ..Config::default()
    };
    Arc::new(config.validate().unwrap())
}

/// A Raft node on in-memory stores, serving `peer_router` on its own listener.
async fn start_node(id: NodeId, config: Arc<Config>) -> TestNode {
    start_node_with(id, config, None).await
}

/// The same, speaking mutual TLS with `tls` when given.
async fn start_node_with(id: NodeId, config: Arc<Config>, tls: Option<Tls>) -> TestNode {
    start_node_capped(id, config, tls, None).await
}

/// The same, with the commit index it sends capped by `cap` when given.
async fn start_node_capped(
    id: NodeId,
    config: Arc<Config>,
    tls: Option<Tls>,
    cap: Option<Durability<NodeId>>,
) -> TestNode {
    let tcp = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let mut net =
        PeerNetwork::new(ClusterSecret::new(SECRET), Some(LOCALHOST), tls.clone()).unwrap();
    if let Some(cap) = cap {
        net = net.with_commit_cap(cap);
    }
    let sm = MemSm::default();
    let raft = Raft::new(id, config, net, MemLog::default(), sm.clone())
        .await
        .unwrap();
    let app = peer_router(
        raft.clone(),
        ClusterSecret::new(SECRET),
        String::new(),
        tls.is_some(),
    );
    let stop = std::future::pending();
    match tls {
        Some(tls) => tokio::spawn(listener::serve(
            tcp,
            tls.peer_handshake(),
            app,
            ConnLimits::peer(),
            Default::default(),
            stop,
        )),
        None => tokio::spawn(listener::serve(
            tcp,
            Plain,
            app,
            ConnLimits::peer(),
            Default::default(),
            stop,
        )),
    };
    TestNode { id, raft, sm, addr }
}

/// Node `id`'s TLS material, signed by `ca`, naming `names`.
fn tls_for(ca: &TestCa, dir: &std::path::Path, names: &[String]) -> Tls {
    Tls::load(ca.write(dir, names)).unwrap()
}

async fn start_cluster(n: NodeId, config: Arc<Config>) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for id in 1..=n {
        nodes.push(start_node(id, config.clone()).await);
    }
    initialize(&nodes).await;
    nodes
}

async fn initialize(nodes: &[TestNode]) {
    let members: BTreeMap<NodeId, NodeInfo> = nodes.iter().map(|n| (n.id, n.info())).collect();
    nodes[0].raft.initialize(members).await.unwrap();
}

/// Waits until every node names the same leader; returns its index in `nodes`.
async fn wait_for_leader(nodes: &[TestNode]) -> usize {
    let first = nodes[0]
        .raft
        .wait(Some(WAIT))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .unwrap();
    let leader = first.current_leader.unwrap();
    for n in nodes {
        n.raft
            .wait(Some(WAIT))
            .current_leader(leader, "the same leader everywhere")
            .await
            .unwrap();
    }
    nodes.iter().position(|n| n.id == leader).unwrap()
}

fn batch(now_ms: u64, names: &[&str]) -> Batch {
    Batch {
        now_ms,
        commands: names
            .iter()
            .map(|n| Command::DeleteResource {
                name: (*n).to_owned(),
            })
            .collect(),
    }
}

fn vote_request(term: u64, candidate: NodeId) -> VoteRequest<NodeId> {
    VoteRequest::new(Vote::new(term, candidate), None)
}

fn node_at(peer_addr: String) -> NodeInfo {
    NodeInfo {
        api_url: format!("http://{peer_addr}"),
        peer_addr,
    }
}

async fn connect(target: NodeId, peer_addr: String, secret: &str) -> super::PeerConnection {
    let mut net = PeerNetwork::new(ClusterSecret::new(secret), Some(LOCALHOST), None).unwrap();
    net.new_client(target, &node_at(peer_addr)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_replicate_a_batch() {
    let nodes = start_cluster(3, config()).await;
    let leader = wait_for_leader(&nodes).await;

    let written = batch(1_234, &["alpha", "beta"]);
    let response = nodes[leader]
        .raft
        .client_write(written.clone())
        .await
        .unwrap();
    let index = response.log_id.index;
    for n in &nodes {
        n.raft
            .wait(Some(WAIT))
            .applied_index_at_least(Some(index), "batch applied")
            .await
            .unwrap();
        assert_eq!(n.sm.batches(), vec![written.clone()], "node {}", n.id);
    }

    // The leadership hand-off request reaches a follower's Raft.
    let follower = &nodes[(leader + 1) % nodes.len()];
    let net = PeerNetwork::new(ClusterSecret::new(SECRET), Some(LOCALHOST), None).unwrap();
    net.trigger_election(follower.id, &follower.addr.to_string())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_secret_get_401_and_do_not_reach_raft() {
    let node = start_node(1, config()).await;
    let url = format!("http://{}/raft/vote", node.addr);
    let body = wire::encode(&vote_request(7, 2)).unwrap();
    let http = reqwest::Client::new();
    let wrong_auth = [
        None,
        Some("Bearer wrong".to_owned()),
        Some(format!("Bearer {SECRET}x")),
        Some(format!("Basic {SECRET}")),
        Some(SECRET.to_owned()),
    ];
    for auth in wrong_auth {
        let mut request = http.post(&url).body(body.clone());
        if let Some(auth) = &auth {
            request = request.header(AUTHORIZATION, auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let text = response.text().await.unwrap();
        assert!(!text.contains(SECRET), "{text}");
    }
    let m = node.raft.metrics().borrow().clone();
    assert_eq!(
        m.vote.leader_id().term,
        0,
        "a rejected request changed the vote"
    );

    // The same request with the secret reaches Raft: the node adopts term 7.
    let response = http
        .post(&url)
        .header(AUTHORIZATION, format!("Bearer {SECRET}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    node.raft
        .wait(Some(WAIT))
        .metrics(|m| m.vote.leader_id().term == 7, "term 7")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_unreachable_for_the_client() {
    let node = start_node(1, config()).await;
    let mut conn = connect(1, node.addr.to_string(), "not the secret").await;
    let err = conn
        .vote(vote_request(3, 2), RPCOption::new(RPC_TTL))
        .await
        .unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    assert_eq!(node.raft.metrics().borrow().vote.leader_id().term, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_bodies_get_400() {
    let node = start_node(1, config()).await;
    let url = format!("http://{}/raft/vote", node.addr);
    let mut wrong_version = wire::encode(&vote_request(7, 2)).unwrap();
    wrong_version[0] = wire::WIRE_VERSION + 1;
    let mut trailing = wire::encode(&vote_request(7, 2)).unwrap();
    trailing.push(0);
    for body in [
        vec![],
        wrong_version,
        trailing,
        vec![wire::WIRE_VERSION, 0xff, 0xff],
    ] {
        let response = reqwest::Client::new()
            .post(&url)
            .header(AUTHORIZATION, format!("Bearer {SECRET}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    assert_eq!(node.raft.metrics().borrow().vote.leader_id().term, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_or_a_bad_address_is_unreachable() {
    let closed = {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        listener.local_addr().unwrap()
    };
    for addr in [
        closed.to_string(),
        "no port".to_owned(),
        "127.0.0.1:1/path".to_owned(),
    ] {
        let mut conn = connect(2, addr.clone(), SECRET).await;
        let err = conn
            .vote(vote_request(1, 1), RPCOption::new(RPC_TTL))
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{addr}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_times_out() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut conn = connect(2, addr.to_string(), SECRET).await;
    let ttl = Duration::from_millis(200);
    let err = conn
        .vote(vote_request(1, 1), RPCOption::new(ttl))
        .await
        .unwrap_err();
    match err {
        RPCError::Timeout(t) => {
            assert_eq!((t.id, t.target, t.timeout), (1, 2, ttl));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// Serves `answer` to every request, like a peer of another version, a broken proxy or
/// whatever web server listens at a wrong address. Records each request's
/// `Authorization` header.
async fn fake_peer(
    answer: (StatusCode, Vec<u8>),
) -> (SocketAddr, Arc<parking_lot::Mutex<Vec<Option<String>>>>) {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let answer = answer.clone();
        let log = log.clone();
        async move {
            let auth = headers
                .get(AUTHORIZATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            log.lock().push(auth);
            answer
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_or_failing_peer_is_unreachable() {
    let incompatible = [
        (StatusCode::OK, vec![wire::WIRE_VERSION + 1, 0]),
        (StatusCode::OK, vec![wire::WIRE_VERSION, 0xff, 0xff, 0xff]),
        (
            StatusCode::BAD_REQUEST,
            b"unsupported peer wire format version".to_vec(),
        ),
    ];
    for answer in incompatible {
        let (addr, _) = fake_peer(answer.clone()).await;
        let mut conn = connect(2, addr.to_string(), SECRET).await;
        let err = conn
            .vote(vote_request(1, 1), RPCOption::new(RPC_TTL))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RPCError::Unreachable(_)),
            "{answer:?}: {err:?}"
        );
    }
    // Any other answer too: openraft backs off only after `Unreachable`, and retries
    // a `Network` error at once, hundreds of times a second.
    let (addr, _) = fake_peer((StatusCode::BAD_GATEWAY, b"upstream gone".to_vec())).await;
    let mut conn = connect(2, addr.to_string(), SECRET).await;
    let err = conn
        .vote(vote_request(1, 1), RPCOption::new(RPC_TTL))
        .await
        .unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    assert!(err.to_string().contains("upstream gone"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_address_never_receives_the_secret() {
    // A web server at a mistyped or made-up member address.
    let (addr, seen) = fake_peer((StatusCode::NOT_FOUND, b"no such page".to_vec())).await;
    let net = PeerNetwork::new(ClusterSecret::new(SECRET), Some(LOCALHOST), None).unwrap();
    let err = net.verify_member(2, &addr.to_string()).await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    let mut conn = connect(2, addr.to_string(), SECRET).await;
    for _ in 0..3 {
        let err = conn
            .vote(vote_request(1, 1), RPCOption::new(RPC_TTL))
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }
    assert!(net.api_url(2, &addr.to_string()).await.is_err());
    assert!(net.trigger_election(2, &addr.to_string()).await.is_err());
    let seen = seen.lock().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|auth| auth.is_none()),
        "the secret was sent to an unverified address: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_at_a_wrong_address_is_retried_with_backoff() {
    let nodes = start_cluster(1, config()).await;
    wait_for_leader(&nodes).await;
    let (addr, seen) = fake_peer((StatusCode::NOT_FOUND, b"no such page".to_vec())).await;
    nodes[0]
        .raft
        .add_learner(2, node_at(addr.to_string()), false)
        .await
        .unwrap();
    // Heartbeats every 50 ms would be 60 requests in 3 s; retrying at once after each
    // failure was hundreds a second. With backoff (50 ms doubling to 1 s) it is about
    // 10. A slower machine can only send fewer.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let requests = seen.lock().len();
    assert!(requests >= 1, "the leader never tried the new member");
    assert!(requests <= 25, "{requests} requests in 3 s: no backoff");
}

/// Three nodes with mutual TLS, each certificate naming its node.
async fn start_tls_cluster(ca: &TestCa, dir: &std::path::Path) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let tls = tls_for(ca, &dir.join(format!("n{id}")), &[node_name(id)]);
        nodes.push(start_node_with(id, config(), Some(tls)).await);
    }
    initialize(&nodes).await;
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_tls_cluster_elects_and_replicates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("cluster ca");
    let nodes = start_tls_cluster(&ca, dir.path()).await;
    let leader = wait_for_leader(&nodes).await;
    let written = batch(7, &["over-tls"]);
    let index = nodes[leader]
        .raft
        .client_write(written.clone())
        .await
        .unwrap()
        .log_id
        .index;
    for n in &nodes {
        n.raft
            .wait(Some(WAIT))
            .applied_index_at_least(Some(index), "batch applied")
            .await
            .unwrap();
        assert_eq!(n.sm.batches(), vec![written.clone()], "node {}", n.id);
    }
    // Plain HTTP to a TLS peer listener gets nowhere.
    let mut plain = connect(1, nodes[0].addr.to_string(), SECRET).await;
    let err = plain
        .vote(vote_request(9, 2), RPCOption::new(RPC_TTL))
        .await
        .unwrap_err();
    assert!(!matches!(err, RPCError::RemoteError(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_certificate_names_another_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("cluster ca");
    let node = start_node_with(
        1,
        config(),
        Some(tls_for(&ca, &dir.path().join("n1"), &[node_name(1)])),
    )
    .await;
    // Dialled as node 2, node 1's listener presents node 1's certificate: refused in
    // the handshake, before anything is sent.
    let caller = tls_for(&ca, &dir.path().join("n3"), &[node_name(3)]);
    let net = PeerNetwork::new(
        ClusterSecret::new(SECRET),
        Some(LOCALHOST),
        Some(caller.clone()),
    )
    .unwrap();
    let err = net
        .verify_member(2, &node.addr.to_string())
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    net.verify_member(1, &node.addr.to_string()).await.unwrap();

    // Node 3's certificate cannot send a vote on behalf of node 2.
    let mut net = net;
    let mut conn = net.new_client(1, &node_at(node.addr.to_string())).await;
    let err = conn
        .vote(vote_request(5, 2), RPCOption::new(RPC_TTL))
        .await
        .unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    assert!(err.to_string().contains("403"), "{err}");
    assert_eq!(node.raft.metrics().borrow().vote.leader_id().term, 0);
    // On its own behalf it can.
    let response = conn
        .vote(vote_request(5, 3), RPCOption::new(RPC_TTL))
        .await
        .unwrap();
    assert!(response.vote_granted, "{response:?}");

    // A certificate from another CA does not get through the handshake.
    let stranger = tls_for(
        &TestCa::new("other ca"),
        &dir.path().join("x"),
        &[node_name(2)],
    );
    let net =
        PeerNetwork::new(ClusterSecret::new(SECRET), Some(LOCALHOST), Some(stranger)).unwrap();
    assert!(net.verify_member(1, &node.addr.to_string()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_another_node_id_is_refused() {
    let node = start_node(1, config()).await;
    let mut conn = connect(2, node.addr.to_string(), SECRET).await;
    let err = conn
        .vote(vote_request(3, 3), RPCOption::new(RPC_TTL))
        .await
        .unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    assert!(err.to_string().contains("serves node 1"), "{err}");
    assert_eq!(node.raft.metrics().borrow().vote.leader_id().term, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_name_is_resolved_at_connect_time() {
    let node = start_node(1, config()).await;
    let mut net = PeerNetwork::new(ClusterSecret::new(SECRET), None, None).unwrap();
    let mut conn = net
        .new_client(1, &node_at(format!("localhost:{}", node.addr.port())))
        .await;
    let response = conn
        .vote(vote_request(4, 2), RPCOption::new(RPC_TTL))
        .await
        .unwrap();
    assert!(response.vote_granted, "{response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_errors_come_back_as_remote_errors() {
    let node = start_node(1, config()).await;
    node.raft.shutdown().await.unwrap();
    let mut conn = connect(1, node.addr.to_string(), SECRET).await;
    let err = conn
        .vote(vote_request(2, 2), RPCOption::new(RPC_TTL))
        .await
        .unwrap_err();
    match err {
        RPCError::RemoteError(remote) => {
            assert_eq!(remote.target, 1);
            assert_eq!(remote.target_node, Some(node.info()));
            assert!(
                matches!(remote.source, RaftError::Fatal(Fatal::Stopped)),
                "{:?}",
                remote.source
            );
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_learner_catches_up_through_a_chunked_snapshot() {
    let config = Arc::new(
        Config {
            snapshot_policy: SnapshotPolicy::LogsSinceLast(10),
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            // Tiny chunks: the snapshot crosses the wire in many install-snapshot requests.
            snapshot_max_chunk_size: 256,
            ..(*config()).clone()
        }
        .validate()
        .unwrap(),
    );
    let nodes = start_cluster(1, config.clone()).await;
    wait_for_leader(&nodes).await;
    let leader = &nodes[0];
    let mut written = Vec::new();
    let mut last = None;
    for i in 0..30u64 {
        let b = batch(
            i,
            &["a-resource-name", "another-resource-name", "a-third-one"],
        );
        last = Some(leader.raft.client_write(b.clone()).await.unwrap().log_id);
        written.push(b);
    }
    let last = last.unwrap();
    leader.raft.trigger().snapshot().await.unwrap();
    // The whole log is purged: only a snapshot can bring a new member up to date.
    leader
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| m.snapshot == Some(last) && m.purged == Some(last),
            "snapshot and purge",
        )
        .await
        .unwrap();

    let learner = start_node(2, config).await;
    leader
        .raft
        .add_learner(2, learner.info(), false)
        .await
        .unwrap();
    learner
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| {
                m.snapshot
                    .is_some_and(|s: LogId<NodeId>| s.index >= last.index)
            },
            "snapshot installed on the learner",
        )
        .await
        .unwrap();
    assert!(learner.sm.snapshots_installed() >= 1);
    assert_eq!(learner.sm.batches(), written);

    // And it keeps replicating after the snapshot.
    let after = batch(99, &["after-the-snapshot"]);
    let index = leader
        .raft
        .client_write(after.clone())
        .await
        .unwrap()
        .log_id
        .index;
    learner
        .raft
        .wait(Some(WAIT))
        .applied_index_at_least(Some(index), "later entry")
        .await
        .unwrap();
    written.push(after);
    assert_eq!(learner.sm.batches(), written);
    let voters: BTreeSet<NodeId> = learner
        .raft
        .metrics()
        .borrow()
        .membership_config
        .voter_ids()
        .collect();
    assert_eq!(voters, BTreeSet::from([1]));
}

#[test]
fn the_secret_never_prints() {
    let secret = ClusterSecret::new(SECRET);
    assert_eq!(format!("{secret:?}"), "ClusterSecret(***)");
    let net = PeerNetwork::new(secret.clone(), None, None).unwrap();
    assert!(!format!("{net:?}").contains(SECRET));
    assert!(secret.matches(SECRET.as_bytes()));
    assert!(!secret.matches(b""));
    assert!(!secret.matches(format!("{SECRET} ").as_bytes()));
}

#[test]
fn a_secret_that_cannot_be_a_header_is_refused() {
    assert!(PeerNetwork::new(ClusterSecret::new("line\nbreak"), None, None).is_err());
}

#[test]
fn identity_proofs_bind_the_secret_the_node_and_the_nonce() {
    let secret = ClusterSecret::new(SECRET);
    let nonce = [7; super::secret::NONCE_BYTES];
    let proof = secret.proof(2, &nonce);
    assert!(secret.check_proof(2, &nonce, &proof));
    assert!(!secret.check_proof(3, &nonce, &proof));
    assert!(!secret.check_proof(2, &[8; super::secret::NONCE_BYTES], &proof));
    assert!(!ClusterSecret::new("another secret").check_proof(2, &nonce, &proof));
    assert!(!secret.check_proof(2, &nonce, &proof[..31]));
}

#[test]
fn oversized_append_entries_are_split() {
    assert_eq!(split_hint(100, PEER_BODY_BYTES_MAX * 2), 50);
    assert_eq!(split_hint(100, PEER_BODY_BYTES_MAX + 1), 99);
    assert_eq!(split_hint(2, PEER_BODY_BYTES_MAX * 10), 1);
    assert_eq!(split_hint(1_000, usize::MAX), 1);
}

/// With the leader's fsync overlapping replication, the commit index a leader sends is
/// capped at its durable prefix, over real sockets to real followers: a follower does not
/// apply an entry while the leader's own copy is not durable, and learns the commit as
/// soon as the leader's flush releases it (a prompted heartbeat, not the next periodic
/// one: periodic heartbeats and elections are off here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_index_sent_waits_for_the_leaders_durable_prefix() {
    let caps: Vec<Durability<NodeId>> = (0..3).map(|_| Durability::new()).collect();
    let mut nodes = Vec::new();
    for (id, cap) in (1..=3).zip(&caps) {
        nodes.push(start_node_capped(id, config(), None, Some(cap.clone())).await);
    }
    initialize(&nodes).await;
    let leader = wait_for_leader(&nodes).await;
    let first = nodes[leader]
        .raft
        .client_write(batch(1, &["before"]))
        .await
        .unwrap()
        .log_id;
    for n in &nodes {
        n.raft
            .wait(Some(WAIT))
            .applied_index_at_least(Some(first.index), "first batch applied")
            .await
            .unwrap();
        n.raft.runtime_config().elect(false);
    }
    nodes[leader].raft.runtime_config().heartbeat(false);

    // The leader's next entries count as acknowledged before its fsync.
    let cap = &caps[leader];
    let early = LogId::new(first.leader_id, first.index + 1_000);
    cap.acknowledged_early(&early);
    let written = batch(2, &["held"]);
    let index = nodes[leader]
        .raft
        .client_write(written.clone())
        .await
        .unwrap()
        .log_id
        .index;
    let followers: Vec<&TestNode> = nodes.iter().filter(|n| n.id != nodes[leader].id).collect();
    for f in &followers {
        f.raft
            .wait(Some(WAIT))
            .metrics(|m| m.last_log_index >= Some(index), "entry received")
            .await
            .unwrap();
        // Every AppendEntries after the commit (entries, the commit's own heartbeat)
        // carried the capped index: within a heartbeat round the follower must not apply.
        let applied = f
            .raft
            .wait(Some(Duration::from_millis(500)))
            .applied_index_at_least(Some(index), "held entry applied")
            .await;
        assert!(
            applied.is_err(),
            "node {} applied before the leader's fsync",
            f.id
        );
    }

    // The flush: the release prompts a heartbeat that carries the commit at once.
    let prompt = tokio::spawn(crate::node::release_commits(
        nodes[leader].raft.clone(),
        cap.clone(),
    ));
    cap.flushed(&early);
    for f in &followers {
        f.raft
            .wait(Some(WAIT))
            .applied_index_at_least(Some(index), "held entry applied after the flush")
            .await
            .unwrap();
        assert!(f.sm.batches().contains(&written), "node {}", f.id);
    }
    prompt.abort();
}
