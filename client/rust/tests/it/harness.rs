//! A cluster of real `ratequeue` processes on their own loopback addresses, for the
//! client's tests (the approach of the server's harness, not its code).
//!
//! The server binary is `$RATEQUEUE_BIN`, else `ratequeue` beside this test's `rqctl`
//! (i.e. `target/debug/ratequeue`). Tests cannot build it: run `cargo build --workspace
//! --bins` first (the project's test command, `scripts/test-all`, does).
//!
//! Each cluster gets its own `127.X.Y.0/24` block (X from the process id in 211..=240, a
//! range the server's harness does not use; Y from a counter); node N listens on
//! `127.X.Y.N:7700` (API) and `:7701` (peers). Waiting is polling with a deadline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ratequeue_client::api;
use ratequeue_client::{Client, Timing};

pub const ADMIN: &str = "client-test-admin-token-0123456789";
const SECRET: &str = "client-test-cluster-secret-0123456789";

static NEXT_BLOCK: AtomicU32 = AtomicU32::new(0);

/// The server binary.
pub fn server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RATEQUEUE_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let beside = PathBuf::from(env!("CARGO_BIN_EXE_rqctl")).with_file_name("ratequeue");
    if beside.exists() {
        return beside;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/ratequeue")
}

pub fn rqctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rqctl"))
}

/// Polls `f` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Client timing for tests: the defaults, with snappier backoff.
pub fn timing() -> Timing {
    Timing {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(500),
        ..Timing::default()
    }
}

pub struct Node {
    pub ip: String,
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

pub struct Cluster {
    pub nodes: BTreeMap<u64, Node>,
    initial: Vec<u64>,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
    block: (u32, u32),
}

impl Cluster {
    /// Starts `n` voters and waits until they agree on a leader that serves.
    pub async fn start(n: u64) -> Cluster {
        let bin = server_bin();
        assert!(
            bin.exists(),
            "server binary {} not found: build it first (cargo build --workspace --bins) \
             or set RATEQUEUE_BIN",
            bin.display()
        );
        let counter = NEXT_BLOCK.fetch_add(1, Ordering::Relaxed);
        let block = (211 + std::process::id() % 30, 1 + counter % 250);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut c = Cluster {
            nodes: BTreeMap::new(),
            initial: (1..=n).collect(),
            dir: tempfile::tempdir().unwrap(),
            http,
            block,
        };
        for id in 1..=n {
            c.add(id);
            c.spawn(id);
        }
        c.leader().await;
        c
    }

    fn ip(&self, id: u64) -> String {
        format!("127.{}.{}.{}", self.block.0, self.block.1, id)
    }

    pub fn url(&self, id: u64) -> String {
        format!("http://{}:7700", self.ip(id))
    }

    pub fn peer_addr(&self, id: u64) -> String {
        format!("{}:7701", self.ip(id))
    }

    /// Every running node's URL.
    pub fn urls(&self) -> Vec<String> {
        self.running().into_iter().map(|id| self.url(id)).collect()
    }

    fn add(&mut self, id: u64) {
        let node = Node {
            ip: self.ip(id),
            child: None,
            data_dir: self.dir.path().join(format!("node-{id}")),
            log: self.dir.path().join(format!("node-{id}.log")),
        };
        self.nodes.insert(id, node);
    }

    fn spawn(&mut self, id: u64) {
        let peers: Vec<String> = self
            .initial
            .iter()
            .map(|i| format!("{i}={}", self.peer_addr(*i)))
            .collect();
        let url = self.url(id);
        let peer = self.peer_addr(id);
        let node = self.nodes.get_mut(&id).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let child = Command::new(server_bin())
            .args(["serve", "--id", &id.to_string()])
            .args(["--api-addr", &format!("{}:7700", node.ip)])
            .args(["--peer-addr", &peer])
            .args(["--advertise-api-url", &url])
            .args(["--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--cache-mb", "16"])
            .env("RATEQUEUE_ADMIN_TOKEN", ADMIN)
            .env("RATEQUEUE_CLUSTER_SECRET", SECRET)
            .env("RATEQUEUE_LOG", "info,openraft=warn")
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        node.child = Some(child);
    }

    /// Starts a process for a node outside the initial membership (it starts empty).
    pub fn spawn_extra(&mut self, id: u64) {
        self.add(id);
        self.spawn(id);
    }

    /// SIGKILL.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.nodes.get_mut(&id).and_then(|n| n.child.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.child.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    pub async fn status(&self, id: u64) -> Option<api::ClusterStatus> {
        let r = self
            .http
            .get(format!("{}/v1/cluster/status", self.url(id)))
            .bearer_auth(ADMIN)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// Waits until every running initial member names the same leader, which serves
    /// leader-only requests itself; returns its id.
    pub async fn leader(&self) -> u64 {
        let running: Vec<u64> = self
            .running()
            .into_iter()
            .filter(|id| self.initial.contains(id))
            .collect();
        eventually(Duration::from_secs(30), "an agreed leader", || async {
            let mut leader = None;
            for id in &running {
                let s = self.status(*id).await?;
                let l = s.leader_id?;
                s.leader_url.as_ref()?;
                if leader.is_some_and(|x| x != l) {
                    return None;
                }
                leader = Some(l);
            }
            let l = leader?;
            let r = self
                .http
                .get(format!("{}/v1/resources", self.url(l)))
                .bearer_auth(ADMIN)
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(l)
        })
        .await
    }

    /// A running node that is not the leader.
    pub async fn follower(&self) -> u64 {
        let l = self.leader().await;
        self.running().into_iter().find(|id| *id != l).unwrap()
    }

    /// An admin client of every running node.
    pub fn client(&self) -> Client {
        self.client_of(&self.urls())
    }

    pub fn client_of(&self, urls: &[String]) -> Client {
        Client::builder()
            .urls(urls.iter().cloned())
            .api_key(ADMIN)
            .timing(timing())
            .build()
            .unwrap()
    }

    /// A raw POST to exactly node `id` (no redirect following): (status, body).
    pub async fn raw_post(&self, id: u64, path: &str, body: serde_json::Value) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.url(id)))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// An `rqctl` command aimed at this cluster with the admin token.
    pub fn rqctl(&self) -> Command {
        let mut cmd = Command::new(rqctl_bin());
        cmd.env("RATEQUEUE_URL", self.urls().join(","))
            .env("RATEQUEUE_API_KEY", ADMIN)
            .stdin(Stdio::null());
        cmd
    }

    /// Creates (or replaces) a resource through the client.
    pub async fn put_resource(&self, name: &str, spec: api::ResourceSpec) {
        self.client().put_resource(name, &spec).await.unwrap();
    }

    pub async fn held(&self, client: &Client, name: &str) -> u64 {
        client.get_resource(name).await.unwrap().stats.held
    }
}

pub fn concurrency(n: u32) -> api::ResourceSpec {
    api::ResourceSpec {
        concurrency: Some(n),
        ..Default::default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
        if std::thread::panicking() {
            for (id, n) in &self.nodes {
                let log = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("---- node {id} log (last 30 lines) ----");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}
