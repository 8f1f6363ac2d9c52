//! The tests' clusters: `ratequeue-testkit` running this crate's `ratequeue` binary,
//! with request helpers that panic with context instead of returning errors.

use std::ops::{Deref, DerefMut};
use std::process::ExitStatus;

use reqwest::Method;
use serde_json::{json, Value};

pub use ratequeue_testkit::eventually;
use ratequeue_testkit::ClusterConfig;

pub const ADMIN: &str = "test-admin-token-0123456789";

/// How long a test waits for the cluster to get over a fault (an election, a restarted
/// debug-build node starting and catching up, a membership change) on a busy 2-core
/// machine: a deadline for the condition, not a guess at how long it takes.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// A `ratequeue_testkit::Cluster` (reachable through `Deref`) with panicking helpers.
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
    /// `n` voters with small snapshots (`--snapshot-every 200`) and caches, once a
    /// leader serves.
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, |c| c).await
    }

    /// Like `start`, with the config adjusted by `f` (extra flags, a fixed block, ...).
    pub async fn start_with(n: u64, f: impl FnOnce(ClusterConfig) -> ClusterConfig) -> Cluster {
        let config = ClusterConfig::new(env!("CARGO_BIN_EXE_ratequeue"))
            .nodes(n)
            .admin_token(ADMIN)
            .args(["--snapshot-every", "200", "--cache-mb", "16"]);
        Cluster(f(config).start().await.unwrap())
    }

    /// The agreed, serving leader, once there is one.
    pub async fn wait_leader(&self) -> u64 {
        self.0.wait_leader().await.unwrap()
    }

    /// Starts a node outside the initial membership (it starts empty).
    pub fn spawn_extra(&mut self, id: u64) {
        self.0.spawn(id).unwrap();
    }

    pub fn restart(&mut self, id: u64) {
        self.0.restart(id).unwrap();
    }

    /// SIGTERM and the exit status.
    pub async fn terminate(&mut self, id: u64) -> ExitStatus {
        self.0.stop(id).await.unwrap()
    }

    /// A request to node `id`, following 307s: (status, body).
    pub async fn send(
        &self,
        id: u64,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: &str,
    ) -> (u16, Value) {
        match self.try_send(id, method, path, body, token).await {
            Ok(r) => r,
            Err(e) => panic!("{path} on node {id}: {e:#}"),
        }
    }

    /// Like `send`, but a transport error (node down, timeout) is returned.
    pub async fn try_send(
        &self,
        id: u64,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: &str,
    ) -> anyhow::Result<(u16, Value)> {
        self.0.request(id, method, path, body.as_ref(), token).await
    }

    /// Kills the leader `l`, then waits (up to `DEADLINE`) for a new leader that answers
    /// an acquire of `resource` with `body` with `status` (until then the survivors
    /// elect, redirect or answer 503): that leader and its answer. What a test of
    /// replicated state asks after a failover.
    pub async fn kill_leader_until_acquire(
        &mut self,
        l: u64,
        resource: &str,
        body: Value,
        status: u16,
    ) -> (u64, Value) {
        self.0.kill(l);
        let path = format!("/v1/resources/{resource}/acquire");
        let what = format!("a new leader answering {path} with {status}");
        let c = &*self;
        eventually(DEADLINE, &what, || async {
            let l = c.wait_leader().await;
            let (s, v) = c
                .try_send(l, Method::POST, &path, Some(body.clone()), ADMIN)
                .await
                .ok()?;
            (s == status).then_some((l, v))
        })
        .await
    }

    pub async fn put_resource(&self, name: &str, spec: Value) {
        let l = self.wait_leader().await;
        let path = format!("/v1/resources/{name}");
        let (s, v) = self.send(l, Method::PUT, &path, Some(spec), ADMIN).await;
        assert!(s == 200 || s == 201, "put resource: {s} {v}");
    }

    pub async fn acquire(&self, id: u64, resource: &str, body: Value) -> (u16, Value) {
        let path = format!("/v1/resources/{resource}/acquire");
        self.send(id, Method::POST, &path, Some(body), ADMIN).await
    }

    pub async fn release(&self, id: u64, lease: &str, body: Value) -> (u16, Value) {
        let path = format!("/v1/leases/{lease}/release");
        self.send(id, Method::POST, &path, Some(body), ADMIN).await
    }

    pub async fn renew(&self, id: u64, lease: &str, body: Value) -> (u16, Value) {
        let path = format!("/v1/leases/{lease}/renew");
        self.send(id, Method::POST, &path, Some(body), ADMIN).await
    }
}

pub fn resource(concurrency: u32) -> Value {
    json!({ "concurrency": concurrency })
}

impl Cluster {
    /// `n` voters speaking TLS with the kit's certificates (each naming
    /// `node-<id>.ratequeue` and the node's IP; `pki()` has them), on a block with room
    /// for node ids up to `ids_max` (for nodes added later).
    pub async fn start_tls(n: u64, ids_max: u64) -> Cluster {
        let c = ClusterConfig::new(env!("CARGO_BIN_EXE_ratequeue"))
            .nodes(n)
            .block(ratequeue_testkit::Block::pick(ids_max))
            .admin_token(ADMIN)
            .test_tls(false)
            .start()
            .await
            .unwrap();
        Cluster(c)
    }
}
