//! The tests' clusters: `ratequeue-testkit` running the workspace's `ratequeue` binary,
//! plus the client-side helpers (an admin `Client`, `rqctl`, test timing).
//!
//! The server binary is `$RATEQUEUE_BIN`, else `ratequeue` beside this test's `rqctl`
//! (i.e. `target/debug/ratequeue`). Tests cannot build it: run `cargo build --workspace
//! --bins` first (the project's test command, `scripts/test-all`, does).

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use ratequeue_client::api;
use ratequeue_client::{Client, Timing};
pub use ratequeue_testkit::eventually;
use ratequeue_testkit::ClusterConfig;

pub const ADMIN: &str = "client-test-admin-token-0123456789";

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

/// How long a test's calls keep retrying across a fault (a leader kill, an election): a
/// deadline, not an attempt count.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Client timing for tests: the defaults, with snappier backoff, and retries bounded by
/// their budgets (`DEADLINE`) rather than by attempts. With a node dead, every other
/// attempt is an instant move past it, so the default 50 attempts at a 500 ms backoff
/// cap last only ~6-12 s, which a slow election on a busy 2-core machine outlasts (the
/// JS client's failover test failed so in CI).
pub fn timing() -> Timing {
    Timing {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(500),
        retry_budget: DEADLINE,
        release_budget: DEADLINE,
        attempts_max: 100_000,
        ..Timing::default()
    }
}

/// A `ratequeue_testkit::Cluster` (reachable through `Deref`) with client helpers.
pub struct Cluster(ratequeue_testkit::Cluster);

impl Deref for Cluster {
    type Target = ratequeue_testkit::Cluster;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Cluster {
    /// Starts `n` voters and waits until they agree on a leader that serves.
    pub async fn start(n: u64) -> Cluster {
        let c = ClusterConfig::new(server_bin())
            .nodes(n)
            .admin_token(ADMIN)
            .args(["--cache-mb", "16"])
            .start()
            .await
            .unwrap();
        Cluster(c)
    }

    /// The agreed, serving leader, once there is one.
    pub async fn leader(&self) -> u64 {
        self.0.wait_leader().await.unwrap()
    }

    /// A running node that is not the leader.
    pub async fn follower(&self) -> u64 {
        let l = self.leader().await;
        self.running().into_iter().find(|id| *id != l).unwrap()
    }

    /// Starts a process for a node outside the initial membership (it starts empty).
    pub fn spawn_extra(&mut self, id: u64) {
        self.0.spawn(id).unwrap();
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
            .http()
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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rqctl"));
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
