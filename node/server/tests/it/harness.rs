//! A cluster of real `ratequeue` processes on their own loopback addresses.
//!
//! Each test cluster gets a distinct `127.X.Y.0/24` block (X from the process id, Y from
//! a counter), node N listens on `127.X.Y.N:7700` (API) and `:7701` (peers), so tests
//! run in parallel without port clashes. Waiting is always polling with a deadline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ratequeue_api as api;
use serde_json::{json, Value};

pub const ADMIN: &str = "test-admin-token-0123456789";
pub const SECRET: &str = "test-cluster-secret-0123456789";

static NEXT_BLOCK: AtomicU32 = AtomicU32::new(0);

pub struct NodeProc {
    pub id: u64,
    pub ip: String,
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

pub struct Cluster {
    pub nodes: BTreeMap<u64, NodeProc>,
    pub initial: Vec<u64>,
    /// Nodes expected to agree on a leader (tests update it on membership changes).
    pub members: Vec<u64>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    block: (u32, u32),
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

impl Cluster {
    /// Starts `n` initial voters and waits until they agree on a leader that serves.
    pub async fn start(n: u64) -> Cluster {
        let counter = NEXT_BLOCK.fetch_add(1, Ordering::Relaxed);
        let block = (10 + std::process::id() % 200, 1 + counter % 250);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut c = Cluster {
            nodes: BTreeMap::new(),
            initial: (1..=n).collect(),
            members: (1..=n).collect(),
            dir: tempfile::tempdir().unwrap(),
            http,
            block,
        };
        for id in 1..=n {
            c.add_proc(id);
            c.spawn(id, true);
        }
        c.wait_leader().await;
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

    fn add_proc(&mut self, id: u64) {
        let data_dir = self.dir.path().join(format!("node-{id}"));
        let log = self.dir.path().join(format!("node-{id}.log"));
        self.nodes.insert(
            id,
            NodeProc {
                id,
                ip: self.ip(id),
                child: None,
                data_dir,
                log,
            },
        );
    }

    fn spawn(&mut self, id: u64, _initial: bool) {
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
        let child = Command::new(env!("CARGO_BIN_EXE_ratequeue"))
            .args(["serve", "--id", &id.to_string()])
            .args(["--api-addr", &format!("{}:7700", node.ip)])
            .args(["--peer-addr", &peer])
            .args(["--advertise-api-url", &url])
            .args(["--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--snapshot-every", "200", "--cache-mb", "16"])
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

    /// Adds a process for a node that is not an initial member (it starts empty).
    pub fn spawn_extra(&mut self, id: u64) {
        self.add_proc(id);
        self.spawn(id, false);
    }

    pub fn kill(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        if let Some(mut c) = node.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self, id: u64) -> std::process::ExitStatus {
        let node = self.nodes.get_mut(&id).unwrap();
        let mut c = node.child.take().unwrap();
        let pid = c.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        c.wait().unwrap()
    }

    pub fn restart(&mut self, id: u64) {
        self.kill(id);
        self.spawn(id, self.initial.contains(&id));
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.nodes[&id].log).unwrap_or_default()
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

    /// Waits until every running node names the same leader, the leader serves
    /// admission, and its URL is published; returns the leader id.
    pub async fn wait_leader(&self) -> u64 {
        let running: Vec<u64> = self
            .running()
            .into_iter()
            .filter(|id| self.members.contains(id))
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
            // The leader must answer a leader-only request itself.
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

    pub async fn leader(&self) -> u64 {
        self.wait_leader().await
    }

    /// Sends a request to node `id`, following 307s by hand (method and body kept).
    pub async fn send(
        &self,
        id: u64,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: &str,
    ) -> (u16, Value) {
        match self.try_send(id, method, path, body, token).await {
            Ok(r) => r,
            Err(e) => panic!("{path} on node {id}: {e}"),
        }
    }

    /// Like `send`, but a transport error (node down, timeout) is returned.
    pub async fn try_send(
        &self,
        id: u64,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: &str,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut url = format!("{}{}", self.url(id), path);
        for _ in 0..5 {
            let mut req = self.http.request(method.clone(), &url).bearer_auth(token);
            if let Some(b) = &body {
                req = req.json(b);
            }
            let r = req.send().await?;
            let status = r.status().as_u16();
            if status == 307 {
                url = r.headers()["location"].to_str().unwrap().to_owned();
                continue;
            }
            let text = r.text().await?;
            let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return Ok((status, v));
        }
        panic!("redirect loop for {path}");
    }

    pub async fn put_resource(&self, name: &str, spec: Value) {
        let l = self.leader().await;
        let (s, v) = self
            .send(
                l,
                reqwest::Method::PUT,
                &format!("/v1/resources/{name}"),
                Some(spec),
                ADMIN,
            )
            .await;
        assert!(s == 200 || s == 201, "put resource: {s} {v}");
    }

    pub async fn acquire(&self, id: u64, resource: &str, body: Value) -> (u16, Value) {
        self.send(
            id,
            reqwest::Method::POST,
            &format!("/v1/resources/{resource}/acquire"),
            Some(body),
            ADMIN,
        )
        .await
    }

    pub async fn release(&self, id: u64, lease: &str, body: Value) -> (u16, Value) {
        self.send(
            id,
            reqwest::Method::POST,
            &format!("/v1/leases/{lease}/release"),
            Some(body),
            ADMIN,
        )
        .await
    }

    pub async fn renew(&self, id: u64, lease: &str, body: Value) -> (u16, Value) {
        self.send(
            id,
            reqwest::Method::POST,
            &format!("/v1/leases/{lease}/renew"),
            Some(body),
            ADMIN,
        )
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
        if std::thread::panicking() {
            for n in self.nodes.values() {
                let log = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("---- node {} log (last 40 lines) ----", n.id);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

pub fn resource(concurrency: u32) -> Value {
    json!({ "concurrency": concurrency })
}
