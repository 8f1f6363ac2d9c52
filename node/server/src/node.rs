//! One ratequeue node: storage, Raft and admission wired together behind one handle.
//!
//! Owns start-up (open and validate storage, restore the state from the snapshot,
//! bootstrap an empty initial member, publish the advertised URL), the views the ops
//! endpoints serve (status, readiness, the figures behind the metrics), membership
//! changes, and graceful shutdown (hand leadership to a caught-up follower, flush).
//! Knows nothing about HTTP: the API router is a shell over this handle, and `serve`
//! (above both) binds the listeners.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use openraft::{ChangeMembers, ServerState, SnapshotPolicy};
use ratequeue_api as api;

use crate::admin_token::AdminTokens;
use crate::admission::{self, Admission};
use crate::listener::ConnLimits;
use crate::metrics::Metrics;
use crate::raft::network::{ClusterSecret, PeerNetwork};
use crate::raft::snapshot_schedule::{self, SnapshotSchedule};
use crate::raft::state_machine::{SharedApplied, SnapshotHandle, SnapshotStore, StateMachineStore};
use crate::raft::types::{NodeId, NodeInfo, Raft, SnapshotMeta, StorageError, TypeConfig};
use crate::series::{self, Series};
use crate::storage::{self, LogStore, SledConfig};
use crate::tls::Tls;

/// How long membership calls wait for a learner to catch up or a change to commit.
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stepping-down leader waits for a successor.
pub const HANDOFF_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `/readyz` on the leader waits for a quorum round.
const READY_QUORUM_TIMEOUT: Duration = Duration::from_secs(1);
/// A learner within this many entries of the leader counts as caught up.
const CAUGHT_UP_LAG_MAX: u64 = 64;

/// Everything `ratequeue serve` needs (DESIGN.md §6).
#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    pub api_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub advertise_api_url: String,
    /// How other nodes reach this node's peer listener (may be a DNS name).
    pub advertise_peer_addr: String,
    /// Initial voters: id -> peer address. Bootstrap happens only if this node is one
    /// of them and its data directory was empty.
    pub peers: BTreeMap<NodeId, String>,
    pub data_dir: PathBuf,
    /// The bootstrap admin token(s); `serve` reloads them from their file if any.
    pub admin_token: Arc<AdminTokens>,
    pub cluster_secret: String,
    pub raft: RaftTuning,
    /// TLS on both listeners and to peers (mutual), or plain HTTP when `None`.
    pub tls: Option<Tls>,
    /// Serve plain HTTP on addresses other than loopback (refused otherwise).
    pub insecure: bool,
    /// sled page cache; several nodes may share a machine.
    pub cache_bytes: u64,
    /// On SIGTERM, hand leadership to a caught-up follower first. Off for `dev`, where
    /// every node stops at once and there is nobody to hand over to.
    pub handoff: bool,
    /// Connection caps and timeouts of the API listener.
    pub api_limits: ConnLimits,
    /// Where to serve `/metrics` without authentication as well, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// Let the leader's own fsync overlap replication (`--leader-fsync-overlap`; off by
    /// default: ARCHITECTURE.md, "The leader's fsync overlaps replication").
    pub leader_fsync_overlap: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Entries between snapshots.
    pub snapshot_every: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 150,
            election_min_ms: 1_000,
            election_max_ms: 2_000,
            snapshot_every: 10_000,
        }
    }
}

pub struct Node {
    pub id: NodeId,
    pub raft: Raft,
    pub applied: SharedApplied,
    pub admission: Admission,
    pub metrics: Arc<Metrics>,
    /// The dashboard's per-second series (display only).
    pub series: Arc<Series>,
    pub admin_token: Arc<AdminTokens>,
    advertise_api_url: String,
    /// Control RPCs to other nodes (hand-off, API URL discovery).
    peers: PeerNetwork,
    store: LogStore<TypeConfig>,
    snapshot: SnapshotHandle,
    shutting_down: AtomicBool,
}

impl SnapshotStore for LogStore<TypeConfig> {
    fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        LogStore::save_snapshot(self, meta, data)
    }

    fn load_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
        LogStore::load_snapshot(self)
    }
}

fn raft_config(t: RaftTuning) -> anyhow::Result<openraft::Config> {
    let c = openraft::Config {
        cluster_name: "ratequeue".into(),
        heartbeat_interval: t.heartbeat_ms,
        election_timeout_min: t.election_min_ms,
        election_timeout_max: t.election_max_ms,
        install_snapshot_timeout: 10_000,
        max_payload_entries: 256,
        // Builds are triggered per node at an offset of its own (`snapshot_schedule.rs`).
        snapshot_policy: SnapshotPolicy::Never,
        // Keep a short tail after each snapshot for lagging followers; beyond it they
        // get the snapshot. Bounded so the log never grows without limit.
        max_in_snapshot_log_to_keep: t.snapshot_every.min(1_000),
        purge_batch_size: 256,
        snapshot_max_chunk_size: 4 * 1024 * 1024,
        ..Default::default()
    };
    Ok(c.validate()?)
}

fn dir_is_empty(dir: &std::path::Path) -> std::io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

impl Node {
    /// Opens storage, starts Raft and admission, bootstraps if this is a fresh initial
    /// member. Does not bind the listeners (see `serve`).
    pub async fn start(config: &Config) -> anyhow::Result<Arc<Node>> {
        let fresh = dir_is_empty(&config.data_dir)
            .with_context(|| format!("reading data dir {}", config.data_dir.display()))?;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        let sled = SledConfig {
            cache_capacity_bytes: config.cache_bytes,
            ..SledConfig::default()
        };
        #[cfg(not(feature = "failpoints"))]
        let opened = storage::open_with(config.data_dir.join("raft"), &sled);
        #[cfg(feature = "failpoints")]
        crate::clock::watch(&config.data_dir);
        #[cfg(feature = "failpoints")]
        let opened = {
            tracing::warn!("built with storage failpoints (a test build, never for production)");
            storage::failpoint::set_core_sabotages();
            storage::open_failpoints(&config.data_dir, &sled)
        };
        let store: LogStore<TypeConfig> =
            opened.with_context(|| format!("opening storage in {}", config.data_dir.display()))?;
        let durability = if config.leader_fsync_overlap {
            Some(store.overlap_leader_fsync(config.id)?)
        } else {
            None
        };
        let series = Arc::new(Series::default());
        let mut sm = StateMachineStore::open(Arc::new(store.clone()), series.clone())
            .context("restoring the state machine from its snapshot")?;
        if let Some(d) = &durability {
            sm.gate_on(d.clone());
        }
        let applied = sm.applied();
        let snapshot = sm.snapshot_handle();
        let bind_ip: Option<IpAddr> =
            (!config.peer_addr.ip().is_unspecified()).then_some(config.peer_addr.ip());
        let secret = ClusterSecret::new(config.cluster_secret.clone());
        let mut net = PeerNetwork::new(secret, bind_ip, config.tls.clone())
            .context("building the peer client")?;
        if let Some(d) = &durability {
            net = net.with_commit_cap(d.clone());
        }
        let peers = net.clone();
        let raft_cfg = Arc::new(raft_config(config.raft)?);
        let raft = Raft::new(config.id, raft_cfg, net, store.clone(), sm)
            .await
            .context("starting raft")?;
        if let Some(d) = durability {
            tokio::spawn(release_commits(raft.clone(), d));
        }
        tokio::spawn(snapshot_schedule::build_on_schedule(
            raft.clone(),
            SnapshotSchedule::new(config.id, config.raft.snapshot_every),
        ));
        let metrics = Arc::new(Metrics::default());
        let admission = admission::spawn(
            raft.clone(),
            config.id,
            applied.clone(),
            metrics.clone(),
            series.clone(),
        );

        let is_initial = config.peers.contains_key(&config.id);
        if fresh && is_initial && !raft.is_initialized().await? {
            let members: BTreeMap<NodeId, NodeInfo> = config
                .peers
                .iter()
                .map(|(id, addr)| {
                    (
                        *id,
                        NodeInfo {
                            peer_addr: addr.clone(),
                            api_url: String::new(),
                        },
                    )
                })
                .collect();
            tracing::info!(
                ?members,
                "empty data dir: bootstrapping the initial membership"
            );
            if let Err(e) = raft.initialize(members).await {
                // Another initial member may have been faster; identical maps are safe.
                tracing::info!(error = %e, "initialize declined");
            }
        } else if fresh && !is_initial {
            tracing::info!("not an initial member: waiting to be added with the members API");
        }

        let node = Arc::new(Node {
            id: config.id,
            raft,
            applied,
            admission,
            metrics,
            series,
            admin_token: config.admin_token.clone(),
            advertise_api_url: config.advertise_api_url.clone(),
            peers,
            store,
            snapshot,
            shutting_down: AtomicBool::new(false),
        });
        tokio::spawn(publish_api_url(node.clone()));
        tokio::spawn(exit_on_fatal(node.clone()));
        tokio::spawn(sample_series(node.clone()));
        Ok(node)
    }

    /// The leader's id and advertised API URL, when both are known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        if id == self.id {
            return Some((id, self.advertise_api_url.clone()));
        }
        let url = m
            .membership_config
            .membership()
            .get_node(&id)?
            .api_url
            .clone();
        (!url.is_empty()).then_some((id, url))
    }

    /// Cluster time now as far as this node can tell: the serving leader's clock, or
    /// else the cluster time of the last applied entry (a lower bound of the leader's).
    pub fn cluster_time_ms(&self) -> u64 {
        let applied = self.applied.read().state.now_ms();
        self.admission
            .cluster_time_ms()
            .map_or(applied, |t| t.max(applied))
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> api::ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let members = membership
            .nodes()
            .map(|(id, n)| {
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id))
                    .map(|l| l.map_or(0, |l| l.index));
                let matched = if *id == self.id && m.state == ServerState::Leader {
                    m.last_log_index
                } else {
                    matched
                };
                api::Member {
                    id: *id,
                    peer_addr: n.peer_addr.clone(),
                    api_url: if *id == self.id {
                        self.advertise_api_url.clone()
                    } else {
                        n.api_url.clone()
                    },
                    voter: voters.contains(id),
                    matched_index: matched,
                    lag: matched.map(|i| last.saturating_sub(i)),
                }
            })
            .collect();
        let role = match m.state {
            ServerState::Leader => api::NodeRole::Leader,
            ServerState::Follower => api::NodeRole::Follower,
            ServerState::Candidate => api::NodeRole::Candidate,
            ServerState::Learner => api::NodeRole::Learner,
            ServerState::Shutdown => api::NodeRole::Shutdown,
        };
        let (cluster_time_ms, leases) = {
            let a = self.applied.read();
            (a.state.now_ms(), a.state.lease_count() as u64)
        };
        api::ClusterStatus {
            id: self.id,
            role,
            term: m.current_term,
            leader_id: m.current_leader,
            leader_url: self.leader().map(|(_, u)| u),
            members,
            last_log_index: m.last_log_index,
            committed_index: m.last_applied.map(|l| l.index),
            applied_index: m.last_applied.map(|l| l.index),
            snapshot: self.snapshot.meta().and_then(|s| {
                s.last_log_id.map(|l| api::SnapshotInfo {
                    index: l.index,
                    term: l.leader_id.term,
                })
            }),
            storage_bytes: self.storage_bytes(),
            cluster_time_ms,
            leases,
            waiters: self.admission.waiters(),
        }
    }

    /// `/readyz`: serving and knows a leader; never "is leader". A leader must also
    /// still reach a quorum (one ReadIndex round), so a leader cut off from its
    /// majority stops receiving traffic instead of answering `commit_timeout`.
    pub async fn readiness(&self) -> Result<(), String> {
        if self.is_shutting_down() {
            return Err("shutting down".into());
        }
        let m = self.raft.metrics().borrow().clone();
        if let Err(e) = &m.running_state {
            return Err(format!("raft stopped: {e}"));
        }
        if self.leader().is_none() {
            return Err("no known leader".into());
        }
        if m.state == ServerState::Leader {
            let round = tokio::time::timeout(READY_QUORUM_TIMEOUT, self.raft.ensure_linearizable());
            if !matches!(round.await, Ok(Ok(_))) {
                return Err("leader cannot reach a quorum".into());
            }
        }
        Ok(())
    }

    /// Bytes the log store uses on disk (0 if unknown).
    pub fn storage_bytes(&self) -> u64 {
        self.store.size_on_disk().unwrap_or(0)
    }

    /// The gauges `/metrics` shows, read now: `(name, help, value)`.
    pub fn gauges(&self) -> [(&'static str, &'static str, f64); 11] {
        let m = self.raft.metrics().borrow().clone();
        let is_leader = if m.state == ServerState::Leader {
            1.0
        } else {
            0.0
        };
        let (leases, now) = {
            let a = self.applied.read();
            (a.state.lease_count() as f64, a.state.now_ms() as f64)
        };
        [
            (
                "ratequeue_raft_term",
                "Current Raft term.",
                m.current_term as f64,
            ),
            ("ratequeue_raft_is_leader", "1 on the leader.", is_leader),
            (
                "ratequeue_raft_last_log_index",
                "Last log index.",
                m.last_log_index.unwrap_or(0) as f64,
            ),
            (
                "ratequeue_raft_applied_index",
                "Last applied index.",
                m.last_applied.map_or(0, |l| l.index) as f64,
            ),
            (
                "ratequeue_raft_snapshot_index",
                "Last log index in the latest snapshot.",
                m.snapshot.map_or(0, |l| l.index) as f64,
            ),
            (
                "ratequeue_raft_purged_index",
                "Last log index deleted from the log store (entries after it are kept).",
                m.purged.map_or(0, |l| l.index) as f64,
            ),
            (
                "ratequeue_leases_held",
                "Live leases in the applied state.",
                leases,
            ),
            (
                "ratequeue_waiters",
                "Waiters in the admission queue.",
                self.admission.waiters() as f64,
            ),
            (
                "ratequeue_cluster_time_ms",
                "Cluster time of the last applied entry.",
                now,
            ),
            (
                "ratequeue_storage_bytes",
                "Bytes used by the log store.",
                self.storage_bytes() as f64,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory of this process (0 where /proc is missing).",
                crate::metrics::resident_bytes() as f64,
            ),
        ]
    }

    /// Adds a node as a learner, waits for it to catch up, then (by default) promotes it.
    pub async fn add_member(
        &self,
        req: api::AddMember,
    ) -> Result<api::ClusterStatus, MembershipError> {
        let node = NodeInfo {
            peer_addr: req.peer_addr,
            api_url: req.api_url,
        };
        if node.peer_addr.is_empty() || node.api_url.is_empty() {
            return Err(MembershipError::Invalid(
                "peer_addr and api_url are required".into(),
            ));
        }
        // Reachable, and really node `id` of this cluster (its certificate with TLS, an
        // identity proof in any case), before Raft sends it the secret and the log.
        self.peers
            .verify_member(req.id, &node.peer_addr)
            .await
            .map_err(|e| MembershipError::Unverified(e.to_string()))?;
        tokio::time::timeout(
            MEMBERSHIP_TIMEOUT,
            self.raft.add_learner(req.id, node, false),
        )
        .await
        .map_err(|_| timeout_error("adding the learner"))?
        .map_err(raft_error)?;
        let deadline = tokio::time::Instant::now() + MEMBERSHIP_TIMEOUT;
        let mut rx = self.raft.metrics();
        loop {
            let caught_up = {
                let m = rx.borrow_and_update();
                let last = m.last_log_index.unwrap_or(0);
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&req.id).copied())
                    .flatten()
                    .is_some_and(|l| last.saturating_sub(l.index) <= CAUGHT_UP_LAG_MAX)
            };
            if caught_up {
                break;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(timeout_error("waiting for the learner to catch up"));
            }
        }
        if req.voter {
            let change = ChangeMembers::AddVoterIds(BTreeSet::from([req.id]));
            tokio::time::timeout(
                MEMBERSHIP_TIMEOUT,
                self.raft.change_membership(change, false),
            )
            .await
            .map_err(|_| timeout_error("promoting the learner"))?
            .map_err(raft_error)?;
        }
        Ok(self.status())
    }

    /// Removes a member (voter or learner) from the cluster. The leader does not remove
    /// itself: the HTTP layer first hands leadership over (`hand_off_leadership`).
    pub async fn remove_member(&self, id: NodeId) -> Result<api::ClusterStatus, MembershipError> {
        let membership = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        if membership.get_node(&id).is_none() {
            return Err(MembershipError::NotFound(id));
        }
        // A voter leaves through joint consensus; `retain = false` drops it from the
        // node list in the same change, so no second change (which a leader removing
        // itself could no longer make) is needed.
        let change = if membership.voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        tokio::time::timeout(
            MEMBERSHIP_TIMEOUT,
            self.raft.change_membership(change, false),
        )
        .await
        .map_err(|_| timeout_error("removing the member"))?
        .map_err(raft_error)?;
        Ok(self.status())
    }

    /// SIGTERM: refuse new requests, hand leadership to a caught-up follower, flush.
    pub async fn shutdown(&self, handoff: bool) {
        self.shutting_down.store(true, Ordering::Relaxed);
        if handoff {
            self.hand_off_leadership(AfterHandoff::StayQuiet).await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "final flush failed");
        }
        tracing::info!("stopped");
    }

    /// If this node leads, hands leadership to the most caught-up other voter: go quiet
    /// (no heartbeats, so followers' leader lease lapses and they grant the successor's
    /// vote; no elections of our own to compete with it), ask it to elect itself, and
    /// wait for a new leader. True if another node now leads.
    pub async fn hand_off_leadership(&self, after: AfterHandoff) -> bool {
        let m = self.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return false;
        }
        let last = m.last_log_index.unwrap_or(0);
        let membership = m.membership_config.membership().clone();
        let successor = membership
            .voter_ids()
            .filter(|id| *id != self.id)
            .filter_map(|id| {
                let matched = m.replication.as_ref()?.get(&id).copied().flatten()?.index;
                Some((last.saturating_sub(matched), id))
            })
            .min()
            .and_then(|(_, id)| Some((id, membership.get_node(&id)?.clone())));
        let Some((id, n)) = successor else {
            return false;
        };
        tracing::info!(successor = id, "handing leadership over");
        self.raft.runtime_config().heartbeat(false);
        self.raft.runtime_config().elect(false);
        if let Err(e) = self.peers.trigger_election(id, &n.peer_addr).await {
            tracing::warn!(error = %e, "successor did not start an election");
        }
        let moved = self
            .raft
            .wait(Some(HANDOFF_TIMEOUT))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != self.id),
                "handoff",
            )
            .await
            .is_ok();
        if after == AfterHandoff::Resume {
            self.raft.runtime_config().heartbeat(true);
            self.raft.runtime_config().elect(true);
        }
        moved
    }
}

/// What a leader does after asking a follower to take over.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AfterHandoff {
    /// Stopping: no heartbeats, no elections, whatever the hand-off's outcome.
    StayQuiet,
    /// Staying up (e.g. about to be removed): heartbeats and elections resume.
    Resume,
}

/// Why a membership change was not made. The HTTP layer maps each to an error code.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    #[error("no member {0}")]
    NotFound(NodeId),
    /// The new member is unreachable or could not prove its identity.
    #[error("{0}")]
    Unverified(String),
    /// The change may still commit; the caller should look at the cluster status.
    #[error("timed out {0}; check cluster status")]
    Timeout(&'static str),
    /// Raft wants the change made on the leader.
    #[error("{0}")]
    NoLeader(String),
    /// Raft refused the change (for example, another one is in progress).
    #[error("{0}")]
    Refused(String),
}

fn timeout_error(what: &'static str) -> MembershipError {
    MembershipError::Timeout(what)
}

fn raft_error<E: std::fmt::Display>(e: E) -> MembershipError {
    let msg = e.to_string();
    if msg.contains("forward") || msg.contains("ForwardToLeader") {
        return MembershipError::NoLeader(msg);
    }
    MembershipError::Refused(msg)
}

/// Exit code of a node whose Raft stopped on a fatal error.
pub const EXIT_FATAL: i32 = 70;

/// How long a node whose Raft stopped on a fatal error stays up before exiting, so that
/// `/readyz` (503 `raft stopped: <error>`) and `/v1/cluster/status` can say why to a
/// probe or an operator. It serves no write meanwhile: its Raft is stopped.
pub const FATAL_EXIT_DELAY: Duration = Duration::from_secs(2);

/// A Raft that stopped on its own (storage error, broken invariant) never recovers in
/// this process: exit after [`FATAL_EXIT_DELAY`], so the supervisor restarts the node
/// from its durable state (crash-only). `/readyz` reports the failure until then.
/// With the leader's fsync overlapping replication: whenever the leader's flush releases
/// a commit that AppendEntries held back, send a heartbeat at once, so that followers
/// learn the commit now rather than at the next heartbeat. Ends when Raft has stopped.
pub(crate) async fn release_commits(raft: Raft, durability: storage::Durability<NodeId>) {
    loop {
        durability.commit_released().await;
        tracing::debug!("the leader's fsync released a commit: heartbeat");
        if raft.trigger().heartbeat().await.is_err() {
            return;
        }
    }
}

async fn exit_on_fatal(node: Arc<Node>) {
    let mut rx = node.raft.metrics();
    loop {
        let fatal = match &rx.borrow_and_update().running_state {
            Ok(()) => None,
            Err(e) => Some(e.to_string()),
        };
        let closed = fatal.is_none() && rx.changed().await.is_err();
        if node.is_shutting_down() {
            return;
        }
        if let Some(why) = fatal.or(closed.then(|| "raft task ended".to_owned())) {
            tracing::error!(
                error = %why,
                exit_in_ms = FATAL_EXIT_DELAY.as_millis() as u64,
                "raft stopped on a fatal error; /readyz says so until this node exits"
            );
            tokio::time::sleep(FATAL_EXIT_DELAY).await;
            tracing::error!(error = %why, "raft stopped on a fatal error; exiting");
            std::process::exit(EXIT_FATAL);
        }
    }
}

/// Closes one point of the dashboard's series per second, with the leader's queue
/// lengths when this node leads (one message to the admission loop). Ends at shutdown.
async fn sample_series(node: Arc<Node>) {
    let mut every = tokio::time::interval(series::SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        if node.is_shutting_down() {
            return;
        }
        let waiting = node.admission.waiting().await;
        node.series.tick(waiting, series::unix_ms());
    }
}

/// Bootstrap members start with an empty `api_url` (the initial maps must be identical
/// on every node). Whenever this node leads, it publishes its own advertised URL, then
/// asks members whose URL is still empty for theirs, so followers can redirect clients
/// and status shows every URL. Retried on the next metrics change while a member is
/// unreachable.
async fn publish_api_url(node: Arc<Node>) {
    let mut rx = node.raft.metrics();
    loop {
        let todo = {
            let m = rx.borrow_and_update();
            // Only once the current membership is applied (committed): openraft refuses
            // a change while another is in progress.
            let settled = m.last_applied >= *m.membership_config.log_id();
            if m.state == ServerState::Leader && settled {
                m.membership_config
                    .membership()
                    .nodes()
                    .filter(|(id, n)| {
                        if **id == node.id {
                            n.api_url != node.advertise_api_url
                        } else {
                            n.api_url.is_empty()
                        }
                    })
                    .map(|(id, n)| (*id, n.clone()))
                    .collect()
            } else {
                Vec::new()
            }
        };
        let mut updates = BTreeMap::new();
        for (id, mut info) in todo {
            if id == node.id {
                info.api_url = node.advertise_api_url.clone();
            } else {
                match node.peers.api_url(id, &info.peer_addr).await {
                    Ok(url) if !url.is_empty() => info.api_url = url,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::debug!(member = id, error = %e, "member API URL not known yet");
                        continue;
                    }
                }
            }
            updates.insert(id, info);
        }
        if !updates.is_empty() {
            let change = ChangeMembers::SetNodes(updates);
            let res = tokio::time::timeout(
                MEMBERSHIP_TIMEOUT,
                node.raft.change_membership(change, false),
            )
            .await;
            match res {
                Ok(Ok(_)) => {
                    tracing::info!("member API URLs published");
                    continue;
                }
                // Typically a membership change still in progress: retry on the next
                // metrics change (its commit), not in a tight loop.
                Ok(Err(e)) => tracing::debug!(error = %e, "API URLs not published yet"),
                Err(_) => tracing::warn!("publishing API URLs timed out"),
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
