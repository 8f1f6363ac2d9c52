//! Cluster control: `ratequeue serve` processes on their own loopback addresses.
//!
//! Node `id` runs on `127.A.B.id` (API :7700, peers :7701) with its own data dir and a
//! log file that survives restarts (each start is marked in it). The harness can start,
//! kill -9, restart, SIGSTOP/SIGCONT and wipe nodes, and change membership through the
//! API. Every child's pid is registered with `cleanup`, so nothing outlives the harness.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use ratequeue_api as api;
use reqwest::Method;
use serde_json::Value;

use crate::client::{Api, Block};
use crate::history::Type;

pub const ADMIN_TOKEN: &str = "jepsen-admin-token-0123456789";
pub const CLUSTER_SECRET: &str = "jepsen-cluster-secret-0123456789";

/// How long a membership change may take (the server waits up to 60 s itself).
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Node {
    pub id: u64,
    child: Option<Child>,
    pub paused: bool,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// Whether it may bootstrap when its data dir is empty. False once it has been
    /// removed and wiped: it must then join through the membership API.
    bootstrap: bool,
}

impl Node {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    pub block: Block,
    /// The initial voters (`--peers`).
    pub initial: Vec<u64>,
    /// The harness's view of the current members.
    pub members: Vec<u64>,
    pub nodes: BTreeMap<u64, Node>,
    pub api: std::sync::Arc<Api>,
    started: Instant,
}

impl Cluster {
    pub fn new(bin: &Path, dir: &Path, block: Block, n: u64, api: std::sync::Arc<Api>) -> Cluster {
        Cluster {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            block,
            initial: (1..=n).collect(),
            members: (1..=n).collect(),
            nodes: BTreeMap::new(),
            api,
            started: Instant::now(),
        }
    }

    fn publish_members(&self) {
        *self.api.targets.write() = self.members.clone();
    }

    pub fn set_members(&mut self, members: Vec<u64>) {
        self.members = members;
        self.publish_members();
    }

    fn ensure_node(&mut self, id: u64) {
        let dir = self.dir.clone();
        self.nodes.entry(id).or_insert_with(|| Node {
            id,
            child: None,
            paused: false,
            data_dir: dir.join(format!("data/node-{id}")),
            log: dir.join(format!("node-{id}.log")),
            bootstrap: true,
        });
    }

    /// Starts node `id` (creating its directories on first use).
    pub fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        self.ensure_node(id);
        let Some(node) = self.nodes.get_mut(&id) else {
            bail!("no node {id}");
        };
        if node.child.is_some() {
            return Ok(());
        }
        std::fs::create_dir_all(&node.data_dir)?;
        let peers: Vec<String> = self
            .initial
            .iter()
            .filter(|i| node.bootstrap || **i != id)
            .map(|i| format!("{i}={}", self.block.peer_addr(*i)))
            .collect();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("opening {}", node.log.display()))?;
        writeln!(
            log,
            "==== jepsen: starting node {id} at harness time {:.3} s ====",
            self.started.elapsed().as_secs_f64()
        )?;
        let child = Command::new(&self.bin)
            .args(["serve", "--id", &id.to_string()])
            .args(["--api-addr", &format!("{}:7700", self.block.ip(id))])
            .args(["--peer-addr", &self.block.peer_addr(id)])
            .args(["--advertise-api-url", &self.block.url(id)])
            .args(["--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--snapshot-every", "500", "--cache-mb", "16"])
            .env("RATEQUEUE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RATEQUEUE_CLUSTER_SECRET", CLUSTER_SECRET)
            .env("RATEQUEUE_LOG", "info,openraft=warn")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        crate::cleanup::add_pid(child.id());
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// kill -9 (works on a paused process too) and reap.
    pub fn kill(&mut self, id: u64) {
        if let Some(node) = self.nodes.get_mut(&id) {
            if let Some(mut c) = node.child.take() {
                let _ = c.kill();
                let _ = c.wait();
                crate::cleanup::remove_pid(c.id());
            }
            node.paused = false;
        }
    }

    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        self.kill(id);
        self.spawn(id)
    }

    fn signal(&self, id: u64, sig: &str) -> anyhow::Result<()> {
        let pid = self
            .nodes
            .get(&id)
            .and_then(Node::pid)
            .context("node not running")?;
        let st = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?;
        if !st.success() {
            bail!("kill {sig} {pid} failed");
        }
        Ok(())
    }

    pub fn pause(&mut self, id: u64) -> anyhow::Result<()> {
        self.signal(id, "-STOP")?;
        if let Some(n) = self.nodes.get_mut(&id) {
            n.paused = true;
        }
        Ok(())
    }

    pub fn resume(&mut self, id: u64) -> anyhow::Result<()> {
        if self.nodes.get(&id).is_some_and(|n| n.paused) {
            self.signal(id, "-CONT")?;
        }
        if let Some(n) = self.nodes.get_mut(&id) {
            n.paused = false;
        }
        Ok(())
    }

    /// Deletes a stopped node's data; it will never bootstrap again.
    pub fn wipe(&mut self, id: u64, may_bootstrap: bool) -> anyhow::Result<()> {
        if let Some(n) = self.nodes.get_mut(&id) {
            if n.child.is_some() {
                bail!("wipe of running node {id}");
            }
            if n.data_dir.exists() {
                std::fs::remove_dir_all(&n.data_dir)?;
            }
            n.bootstrap = may_bootstrap;
        }
        Ok(())
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.child.is_some())
    }

    pub fn is_paused(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.paused)
    }

    /// Reaps nodes that died on their own; returns their ids and exit statuses.
    pub fn reap(&mut self) -> Vec<(u64, String)> {
        let mut dead = Vec::new();
        for n in self.nodes.values_mut() {
            if let Some(c) = n.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    crate::cleanup::remove_pid(c.id());
                    dead.push((n.id, status.to_string()));
                    n.child = None;
                    n.paused = false;
                }
            }
        }
        dead
    }

    pub fn kill_all(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }

    pub async fn status(&self, id: u64) -> Option<api::ClusterStatus> {
        let a = self
            .api
            .call(
                id,
                Method::GET,
                "/v1/cluster/status",
                None,
                Duration::from_secs(2),
            )
            .await;
        if a.kind != Type::Ok {
            return None;
        }
        serde_json::from_value(a.body).ok()
    }

    /// The node that says it leads with the highest term, among running members.
    pub async fn leader(&self) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None;
        for id in self
            .members
            .iter()
            .filter(|i| self.is_running(**i) && !self.is_paused(**i))
        {
            if let Some(s) = self.status(*id).await {
                if s.role == api::NodeRole::Leader && best.is_none_or(|(t, _)| s.term > t) {
                    best = Some((s.term, s.id));
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// Waits until some member leads and answers a linearizable read itself.
    pub async fn wait_leader(&self, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader().await {
                let a = self
                    .api
                    .call(
                        l,
                        Method::GET,
                        "/v1/resources",
                        None,
                        Duration::from_secs(3),
                    )
                    .await;
                if a.kind == Type::Ok && a.node == l {
                    return Ok(l);
                }
            }
            if Instant::now() > deadline {
                bail!("no serving leader within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends an admin request to the leader until it is answered definitely.
    async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            let l = match self.leader().await {
                Some(l) => l,
                None => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let a = self
                .api
                .call(l, method.clone(), path, body, MEMBERSHIP_TIMEOUT)
                .await;
            match a.kind {
                Type::Ok => return Ok(a.body),
                _ if a.code() == Some("member_not_found") => return Ok(a.body),
                _ => {
                    last = a.error.unwrap_or_default();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        bail!("{method} {path}: gave up: {last}")
    }

    /// Starts `id` empty and adds it as a voter (learner, catch up, promote).
    pub async fn add_member(&mut self, id: u64) -> anyhow::Result<()> {
        self.kill(id);
        self.ensure_node(id);
        self.wipe(id, false)?;
        self.spawn(id)?;
        let body = serde_json::to_value(api::AddMember {
            id,
            peer_addr: self.block.peer_addr(id),
            api_url: self.block.url(id),
            voter: true,
        })?;
        self.admin(Method::POST, "/v1/cluster/members", Some(&body))
            .await?;
        let mut m = self.members.clone();
        if !m.contains(&id) {
            m.push(id);
            m.sort_unstable();
        }
        self.set_members(m);
        Ok(())
    }

    /// Removes `id` from the membership, then stops it and deletes its data.
    pub async fn remove_member(&mut self, id: u64) -> anyhow::Result<()> {
        self.admin(Method::DELETE, &format!("/v1/cluster/members/{id}"), None)
            .await?;
        let m: Vec<u64> = self.members.iter().copied().filter(|x| *x != id).collect();
        self.set_members(m);
        self.kill(id);
        self.wipe(id, false)?;
        Ok(())
    }

    pub fn log_tail(&self, id: u64, lines: usize) -> Vec<String> {
        let text = self
            .nodes
            .get(&id)
            .and_then(|n| std::fs::read_to_string(&n.log).ok())
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}
