//! What a cluster is started with: the server binary, the node count, secrets, and
//! extra `serve` flags and environment for every node or for one node.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::block::Block;

/// Extra command-line flags and environment of one node's `ratequeue serve`, applied
/// on every start after the cluster-wide ones (so they win where the server lets a
/// later value override an earlier one, as with environment variables).
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

impl NodeOptions {
    pub fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn env(&mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .push((k.as_ref().to_owned(), v.as_ref().to_owned()));
        self
    }
}

/// A cluster to start. `ClusterConfig::new(bin).nodes(3).arg("--snapshot-every=200")`.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The `ratequeue` binary.
    pub bin: PathBuf,
    /// Initial voters, ids `1..=nodes`.
    pub nodes: u64,
    /// Addresses; `None` picks a free block for this process (`Block::pick`).
    pub block: Option<Block>,
    /// Where data dirs and logs go; `None` makes a temporary dir, removed on drop.
    pub dir: Option<PathBuf>,
    pub admin_token: String,
    pub cluster_secret: String,
    /// `RATEQUEUE_LOG` of every node.
    pub log_filter: String,
    /// Flags and environment for every node (`all`) and per node id.
    pub all: NodeOptions,
    pub per_node: BTreeMap<u64, NodeOptions>,
    /// Nodes die with this process (`ratequeue serve --parent-pid`): a test or harness
    /// killed hard leaves nothing running. Spawn from threads that live as long as the
    /// cluster (the kernel signals on the death of the spawning thread).
    pub exit_with_parent: bool,
    /// How long `Cluster::start` and `wait_leader` wait for a serving leader.
    pub leader_timeout: Duration,
    /// How long `stop` waits for a node to exit after SIGTERM (a leader hands over first).
    pub stop_timeout: Duration,
    /// How long an admin call (`Cluster::admin`: membership changes, resources) keeps
    /// retrying without a definite answer before it gives up (`MEMBERSHIP_TIMEOUT`).
    pub admin_timeout: Duration,
    /// The nodes serve TLS (their `--tls-*` flags come through `node_arg`/`node_env`):
    /// URLs are `https://`, and the kit's HTTP client trusts this CA (PEM) only.
    pub tls_ca_pem: Option<String>,
    /// The kit makes the certificates itself (`test_tls`).
    pub test_tls: Option<TestTls>,
}

/// TLS with certificates the kit makes (`pki.rs`): a CA in `<dir>/tls`, and for node
/// `id` a certificate naming `node-<id>.ratequeue` and its IP, made at its first start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestTls {
    /// The nodes also require API clients to present a certificate from the CA
    /// (`--api-client-ca`); the kit presents `<dir>/tls/client.crt`.
    pub client_auth: bool,
}

impl ClusterConfig {
    pub fn new(bin: impl AsRef<Path>) -> ClusterConfig {
        ClusterConfig {
            bin: bin.as_ref().to_owned(),
            nodes: 3,
            block: None,
            dir: None,
            admin_token: random_token("admin"),
            cluster_secret: random_token("secret"),
            log_filter: "info,openraft=warn".into(),
            all: NodeOptions::default(),
            per_node: BTreeMap::new(),
            exit_with_parent: true,
            leader_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(30),
            admin_timeout: crate::api::MEMBERSHIP_TIMEOUT,
            tls_ca_pem: None,
            test_tls: None,
        }
    }

    pub fn nodes(mut self, n: u64) -> Self {
        self.nodes = n;
        self
    }

    pub fn block(mut self, b: Block) -> Self {
        self.block = Some(b);
        self
    }

    pub fn dir(mut self, d: impl AsRef<Path>) -> Self {
        self.dir = Some(d.as_ref().to_owned());
        self
    }

    pub fn admin_token(mut self, t: impl Into<String>) -> Self {
        self.admin_token = t.into();
        self
    }

    pub fn cluster_secret(mut self, s: impl Into<String>) -> Self {
        self.cluster_secret = s.into();
        self
    }

    pub fn log_filter(mut self, f: impl Into<String>) -> Self {
        self.log_filter = f.into();
        self
    }

    /// A `serve` flag for every node.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.all.arg(a);
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        for a in args {
            self.all.arg(a);
        }
        self
    }

    /// An environment variable for every node.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.all.env(k, v);
        self
    }

    /// A `serve` flag for node `id` only.
    pub fn node_arg(mut self, id: u64, a: impl AsRef<OsStr>) -> Self {
        self.per_node.entry(id).or_default().arg(a);
        self
    }

    /// An environment variable for node `id` only.
    pub fn node_env(mut self, id: u64, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.per_node.entry(id).or_default().env(k, v);
        self
    }

    pub fn exit_with_parent(mut self, on: bool) -> Self {
        self.exit_with_parent = on;
        self
    }

    pub fn leader_timeout(mut self, t: Duration) -> Self {
        self.leader_timeout = t;
        self
    }

    pub fn admin_timeout(mut self, t: Duration) -> Self {
        self.admin_timeout = t;
        self
    }

    pub fn stop_timeout(mut self, t: Duration) -> Self {
        self.stop_timeout = t;
        self
    }

    /// The nodes speak TLS with certificates from the CA `ca_pem` (see `tls_ca_pem`).
    pub fn tls_ca(mut self, ca_pem: impl Into<String>) -> Self {
        self.tls_ca_pem = Some(ca_pem.into());
        self
    }

    /// The nodes speak TLS with certificates the kit makes (see `TestTls`; the
    /// `Cluster`'s `pki()` has the files); `client_auth`: API clients need a certificate.
    pub fn test_tls(mut self, client_auth: bool) -> Self {
        self.test_tls = Some(TestTls { client_auth });
        self
    }

    /// Starts the cluster and waits for a serving leader (`Cluster::start`).
    pub async fn start(self) -> anyhow::Result<crate::Cluster> {
        crate::Cluster::start(self).await
    }
}

/// A fresh random token: `rq-test-<what>-<32 hex digits>`.
pub fn random_token(what: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("rq-test-{what}-{hex}")
}
