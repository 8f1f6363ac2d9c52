//! `Cluster`: the node processes of one local cluster and their lifecycle: start, stop
//! (SIGTERM), kill (SIGKILL), pause/resume (SIGSTOP/SIGCONT), restart, wipe, reap.
//!
//! Node `id` keeps its data dir `<dir>/node-<id>` and its log `<dir>/node-<id>.log`
//! across restarts (each start is marked in the log). Dropping the cluster kills every
//! node; a temporary dir is removed with it. The HTTP side (status, leaders, membership)
//! is in `api.rs`.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use nix::sys::signal::Signal;

use crate::block::{Block, NODE_ID_MAX};
use crate::config::{ClusterConfig, NodeOptions};
use crate::pki::{node_name, TestPki};
use crate::process::Proc;

/// Log lines shown per node when a test panics with a cluster in scope.
const PANIC_LOG_LINES: usize = 40;

/// Called with the expected members whenever they change (e.g. to retarget clients).
pub type MembersHook = Box<dyn Fn(&[u64]) + Send + Sync>;

pub(crate) struct Node {
    pub(crate) proc: Option<Proc>,
    pub(crate) data_dir: PathBuf,
    pub(crate) log: PathBuf,
    /// May bootstrap when its data dir is empty: an initial member that was never
    /// removed. A removed and wiped node must join through the members API instead.
    pub(crate) bootstrap: bool,
}

pub struct Cluster {
    pub(crate) config: ClusterConfig,
    pub(crate) block: Block,
    pub(crate) dir: PathBuf,
    /// Removed on drop when the kit made the dir.
    _temp: Option<tempfile::TempDir>,
    pub(crate) initial: Vec<u64>,
    /// The members the kit expects (leader agreement is asked of these).
    pub(crate) members: Vec<u64>,
    pub(crate) nodes: BTreeMap<u64, Node>,
    pub(crate) http: reqwest::Client,
    /// The certificates of `ClusterConfig::test_tls`.
    pki: Option<TestPki>,
    started: Instant,
    on_members: Option<MembersHook>,
}

impl Cluster {
    /// Starts the initial voters and waits until a leader serves.
    pub async fn start(config: ClusterConfig) -> anyhow::Result<Cluster> {
        let mut c = Cluster::new(config)?;
        for id in c.initial.clone() {
            c.spawn(id)?;
        }
        c.wait_leader().await?;
        Ok(c)
    }

    /// A cluster with nothing started yet.
    pub fn new(mut config: ClusterConfig) -> anyhow::Result<Cluster> {
        if config.nodes == 0 || config.nodes > NODE_ID_MAX {
            bail!("a cluster has 1..={NODE_ID_MAX} nodes");
        }
        if !config.bin.is_file() {
            bail!(
                "server binary {} not found: build it first (cargo build --workspace --bins)",
                config.bin.display()
            );
        }
        let block = config.block.unwrap_or_else(|| Block::pick(config.nodes));
        let (dir, temp) = match &config.dir {
            Some(d) => {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("ratequeue-cluster-")
                    .tempdir()
                    .context("creating a temporary dir")?;
                (t.path().to_owned(), Some(t))
            }
        };
        let pki = match config.test_tls {
            Some(_) => {
                let pki = TestPki::new(dir.join("tls"))?;
                config.tls_ca_pem = Some(pki.ca_pem().to_owned());
                Some(pki)
            }
            None => None,
        };
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .connect_timeout(Duration::from_secs(2))
            .local_address(IpAddr::V4(block.client_ip()));
        if let Some(pem) = &config.tls_ca_pem {
            let ca = reqwest::Certificate::from_pem(pem.as_bytes()).context("the TLS CA")?;
            http = http
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca);
        }
        if let (Some(pki), Some(t)) = (&pki, config.test_tls) {
            if t.client_auth {
                let (cert, key) = pki.client_files()?;
                let mut pem = std::fs::read(cert)?;
                pem.extend(std::fs::read(key)?);
                http = http.identity(reqwest::Identity::from_pem(&pem)?);
            }
        }
        let http = http.build()?;
        let initial: Vec<u64> = (1..=config.nodes).collect();
        Ok(Cluster {
            config,
            block,
            dir,
            _temp: temp,
            members: initial.clone(),
            initial,
            nodes: BTreeMap::new(),
            http,
            pki,
            started: Instant::now(),
            on_members: None,
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn block(&self) -> Block {
        self.block
    }

    /// Where data dirs and logs are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn admin_token(&self) -> &str {
        &self.config.admin_token
    }

    /// The kit's HTTP client (no redirects followed, no pooling, from the client address).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The certificates the kit made (`ClusterConfig::test_tls`): replace a node's with
    /// `write_node` before its next start to test identity checks.
    pub fn pki(&self) -> Option<&TestPki> {
        self.pki.as_ref()
    }

    /// `http://127.A.B.id:7700`, or `https://…` when the nodes speak TLS.
    pub fn url(&self, id: u64) -> String {
        let url = self.block.url(id);
        match &self.config.tls_ca_pem {
            Some(_) => url.replacen("http://", "https://", 1),
            None => url,
        }
    }

    pub fn peer_addr(&self, id: u64) -> String {
        self.block.peer_addr(id)
    }

    /// The API URLs of every running node.
    pub fn urls(&self) -> Vec<String> {
        self.running().into_iter().map(|id| self.url(id)).collect()
    }

    pub fn initial(&self) -> &[u64] {
        &self.initial
    }

    pub fn members(&self) -> &[u64] {
        &self.members
    }

    /// Sets the expected members (after a membership change made by hand).
    pub fn set_members(&mut self, mut members: Vec<u64>) {
        members.sort_unstable();
        members.dedup();
        self.members = members;
        if let Some(f) = &self.on_members {
            f(&self.members);
        }
    }

    pub fn add_to_members(&mut self, id: u64) {
        let mut m = self.members.clone();
        m.push(id);
        self.set_members(m);
    }

    pub fn remove_from_members(&mut self, id: u64) {
        let m = self.members.iter().copied().filter(|x| *x != id).collect();
        self.set_members(m);
    }

    /// Calls `f` with the expected members now and whenever they change.
    pub fn on_members_change(&mut self, f: MembersHook) {
        f(&self.members);
        self.on_members = Some(f);
    }

    /// Every node the kit knows (started at least once).
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.proc.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.proc.is_some())
    }

    pub fn is_paused(&self, id: u64) -> bool {
        self.nodes
            .get(&id)
            .and_then(|n| n.proc.as_ref())
            .is_some_and(|p| p.paused)
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.nodes.get(&id)?.proc.as_ref().map(Proc::pid)
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.log"))
    }

    /// Node `id`'s whole log (every start of it).
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    pub fn log_tail(&self, id: u64, lines: usize) -> Vec<String> {
        let text = self.log(id);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    /// Node `id`'s extra flags and environment, used from its next start on.
    pub fn node_options(&mut self, id: u64) -> &mut NodeOptions {
        self.config.per_node.entry(id).or_default()
    }

    fn node(&mut self, id: u64) -> anyhow::Result<&mut Node> {
        if id == 0 || id > NODE_ID_MAX {
            bail!("node ids are 1..={NODE_ID_MAX}");
        }
        let (data_dir, log) = (self.data_dir(id), self.log_path(id));
        Ok(self.nodes.entry(id).or_insert_with(|| Node {
            proc: None,
            data_dir,
            log,
            bootstrap: true,
        }))
    }

    /// Starts node `id` with its data dir and flags (a no-op while it runs). A node
    /// outside the initial members starts empty and waits to be added.
    pub fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let mut cmd = self.command(id)?;
        let elapsed = self.started.elapsed().as_secs_f64();
        let node = self.node(id)?;
        if node.proc.is_some() {
            return Ok(());
        }
        std::fs::create_dir_all(&node.data_dir)
            .with_context(|| format!("creating {}", node.data_dir.display()))?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("opening {}", node.log.display()))?;
        writeln!(
            log,
            "==== testkit: starting node {id} at cluster time {elapsed:.3} s ===="
        )?;
        cmd.stderr(log);
        node.proc = Some(Proc::spawn(&mut cmd)?);
        Ok(())
    }

    /// The `ratequeue serve` command of node `id`. The caller's `RATEQUEUE_*`
    /// variables are not inherited: a node runs on what the kit gives it only.
    fn command(&mut self, id: u64) -> anyhow::Result<Command> {
        let bootstrap = self.node(id)?.bootstrap;
        let peers: Vec<String> = self
            .initial
            .iter()
            .filter(|i| bootstrap || **i != id)
            .map(|i| format!("{i}={}", self.block.peer_addr(*i)))
            .collect();
        let node = &self.nodes[&id];
        let mut cmd = Command::new(&self.config.bin);
        cmd.args(["serve", "--id", &id.to_string()])
            .arg("--api-addr")
            .arg(self.block.api_addr(id).to_string())
            .args(["--peer-addr", &self.block.peer_addr(id)])
            .args(["--advertise-api-url", &self.url(id)])
            .args(["--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(&node.data_dir);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("RATEQUEUE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RATEQUEUE_ADMIN_TOKEN", &self.config.admin_token)
            .env("RATEQUEUE_CLUSTER_SECRET", &self.config.cluster_secret)
            .env("RATEQUEUE_LOG", &self.config.log_filter)
            .env("RUST_BACKTRACE", "1");
        if self.config.exit_with_parent {
            cmd.env("RATEQUEUE_PARENT_PID", std::process::id().to_string());
        }
        if let Some(pki) = &self.pki {
            if !pki.has_node(id) {
                pki.write_node(id, &[node_name(id), self.block.ip(id).to_string()])?;
            }
            cmd.envs(pki.node_env(id));
            if self.config.test_tls.is_some_and(|t| t.client_auth) {
                cmd.env("RATEQUEUE_API_CLIENT_CA", pki.ca_file());
            }
        }
        let per_node = self.config.per_node.get(&id);
        for o in std::iter::once(&self.config.all).chain(per_node) {
            cmd.args(&o.args);
            cmd.envs(o.env.iter().map(|(k, v)| (k, v)));
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        Ok(cmd)
    }

    /// SIGKILL and reap (a no-op for a node that is not running).
    pub fn kill(&mut self, id: u64) {
        if let Some(p) = self.nodes.get_mut(&id).and_then(|n| n.proc.take()) {
            p.kill();
        }
    }

    /// SIGTERM (graceful: a leader hands over first) and wait for the exit, up to the
    /// config's `stop_timeout` (then it is killed and this fails).
    pub async fn stop(&mut self, id: u64) -> anyhow::Result<ExitStatus> {
        let timeout = self.config.stop_timeout;
        let p = self
            .nodes
            .get_mut(&id)
            .and_then(|n| n.proc.take())
            .with_context(|| format!("node {id} is not running"))?;
        p.stop(timeout).await
    }

    /// Kill, then start again with the same data dir and flags.
    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        self.kill(id);
        self.spawn(id)
    }

    fn running_proc(&mut self, id: u64) -> anyhow::Result<&mut Proc> {
        self.nodes
            .get_mut(&id)
            .and_then(|n| n.proc.as_mut())
            .with_context(|| format!("node {id} is not running"))
    }

    /// SIGSTOP.
    pub fn pause(&mut self, id: u64) -> anyhow::Result<()> {
        let p = self.running_proc(id)?;
        p.signal(Signal::SIGSTOP)?;
        p.paused = true;
        Ok(())
    }

    /// SIGCONT to a paused node; a no-op for a node that is not paused, including one
    /// that is not running (killed, stopped, or exited on its own and reaped): there is
    /// nothing to resume, and a caller undoing faults (the fault harness's heals) must not
    /// have to know which of them ended the process meanwhile. Fails only for a node this
    /// cluster never had.
    pub fn resume(&mut self, id: u64) -> anyhow::Result<()> {
        let n = self
            .nodes
            .get_mut(&id)
            .with_context(|| format!("no node {id} in this cluster"))?;
        if let Some(p) = n.proc.as_mut().filter(|p| p.paused) {
            p.signal(Signal::SIGCONT)?;
            p.paused = false;
        }
        Ok(())
    }

    /// Deletes a stopped node's data. `may_bootstrap`: whether it may bootstrap again
    /// when it next starts empty (false for a node removed from the membership: it then
    /// starts outside the initial members and must be added again).
    pub fn wipe(&mut self, id: u64, may_bootstrap: bool) -> anyhow::Result<()> {
        let n = self.node(id)?;
        if n.proc.is_some() {
            bail!("wipe of running node {id}");
        }
        if n.data_dir.exists() {
            std::fs::remove_dir_all(&n.data_dir)
                .with_context(|| format!("removing {}", n.data_dir.display()))?;
        }
        n.bootstrap = may_bootstrap;
        Ok(())
    }

    /// If node `id` has exited on its own: its status (it is reaped and counts as
    /// stopped). `None` while it runs.
    pub fn try_wait(&mut self, id: u64) -> anyhow::Result<Option<ExitStatus>> {
        let Some(n) = self.nodes.get_mut(&id) else {
            return Ok(None);
        };
        let Some(p) = n.proc.as_mut() else {
            return Ok(None);
        };
        let status = p.try_wait()?;
        if status.is_some() {
            n.proc = None;
        }
        Ok(status)
    }

    /// Waits up to `timeout` for node `id`'s process to exit on its own, and reaps it:
    /// its exit status, or `None` if it still runs then (or was not running). For a node
    /// expected to refuse to start: it may log why seconds before it exits (a debug build
    /// symbolising a backtrace on a busy machine).
    pub async fn wait_exit(
        &mut self,
        id: u64,
        timeout: Duration,
    ) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if !self.is_running(id) {
                return Ok(None);
            }
            if let Some(status) = self.try_wait(id)? {
                return Ok(Some(status));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(crate::wait::POLL).await;
        }
    }

    /// Reaps every node that exited on its own: `(id, exit status)`.
    pub fn reap(&mut self) -> Vec<(u64, String)> {
        let mut dead = Vec::new();
        for id in self.running() {
            if let Ok(Some(status)) = self.try_wait(id) {
                dead.push((id, status.to_string()));
            }
        }
        dead
    }

    pub fn kill_all(&mut self) {
        for id in self.ids() {
            self.kill(id);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
        if std::thread::panicking() {
            for id in self.ids() {
                eprintln!("---- node {id} log (last {PANIC_LOG_LINES} lines) ----");
                for l in self.log_tail(id, PANIC_LOG_LINES) {
                    eprintln!("{l}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// A "server" that is a shell script: the process handling is what is tested.
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn cluster(dir: &Path, bin: &Path) -> Cluster {
        Cluster::new(ClusterConfig::new(bin).nodes(1).dir(dir.join("c"))).unwrap()
    }

    #[test]
    fn resume_undoes_a_pause_and_is_a_no_op_on_a_node_that_is_not_running() {
        let t = tempfile::tempdir().unwrap();
        let mut c = cluster(t.path(), &script(t.path(), "long", "exec sleep 600"));
        assert!(c.resume(1).is_err(), "node 1 was never started");
        c.spawn(1).unwrap();
        c.pause(1).unwrap();
        assert!(c.is_paused(1));
        c.resume(1).unwrap();
        assert!(c.is_running(1) && !c.is_paused(1));
        c.resume(1).unwrap(); // not paused: nothing to do
        c.kill(1);
        c.resume(1).unwrap(); // killed: nothing to resume (this failed before)
        assert!(!c.is_running(1));
        c.spawn(1).unwrap();
        c.pause(1).unwrap();
        c.kill(1); // SIGKILL works on a paused process
        c.resume(1).unwrap();
        assert!(!c.is_running(1));
    }

    #[test]
    fn resume_of_a_node_that_exited_on_its_own_and_was_reaped_is_a_no_op() {
        let t = tempfile::tempdir().unwrap();
        let mut c = cluster(t.path(), &script(t.path(), "short", "exit 3"));
        c.spawn(1).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut dead = Vec::new();
        while dead.is_empty() {
            assert!(
                Instant::now() < deadline,
                "the script did not exit within 60 s"
            );
            dead = c.reap();
            std::thread::sleep(Duration::from_millis(10)); // a poll interval, bounded by the deadline
        }
        assert_eq!(dead[0].0, 1);
        assert!(!c.is_running(1));
        c.resume(1).unwrap(); // the harness's final heal did this and failed
    }

    #[tokio::test]
    async fn wait_exit_waits_for_a_slow_exit_and_gives_up_on_a_node_that_stays() {
        let t = tempfile::tempdir().unwrap();
        let mut c = cluster(t.path(), &script(t.path(), "slow", "sleep 1; exit 4"));
        c.spawn(1).unwrap();
        assert_eq!(c.try_wait(1).unwrap(), None, "still in its 1 s sleep");
        let status = c.wait_exit(1, Duration::from_secs(60)).await.unwrap();
        assert_eq!(status.and_then(|s| s.code()), Some(4));
        assert!(!c.is_running(1));
        assert_eq!(c.wait_exit(1, Duration::from_secs(60)).await.unwrap(), None);

        let mut c = cluster(t.path(), &script(t.path(), "long", "exec sleep 600"));
        c.spawn(1).unwrap();
        let status = c.wait_exit(1, Duration::from_millis(300)).await.unwrap();
        assert_eq!(status, None);
        assert!(c.is_running(1));
    }
}
