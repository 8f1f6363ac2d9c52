//! `ratequeue`: `serve` runs one node; `dev` runs a local 3-node cluster in one process,
//! or with `--ephemeral --json` a throwaway cluster of separate processes driven over
//! stdin/stdout for test suites (`ratequeue_testkit::dev`, docs/testkit.md).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use ratequeue_node::admin_token::AdminTokens;
use ratequeue_node::listener::ConnLimits;
use ratequeue_node::node::{Config, RaftTuning};
use ratequeue_node::raft::types::NodeId;
use ratequeue_node::serve;
use ratequeue_node::tls::{Tls, TlsPaths};

/// The request path allocates many small short-lived buffers (HTTP, JSON, batches);
/// glibc malloc showed at the top of the leader's profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ratequeue",
    version,
    about = "Highly available admission controller for rate-limited resources"
)]
struct Cli {
    /// Log filter, RUST_LOG syntax (e.g. `info,openraft=warn`).
    #[arg(
        long,
        env = "RATEQUEUE_LOG",
        default_value = "info,openraft=warn",
        global = true
    )]
    log: String,
    #[arg(
        long,
        env = "RATEQUEUE_LOG_FORMAT",
        value_enum,
        default_value = "human",
        global = true
    )]
    log_format: LogFormat,
    /// Log one line per HTTP request (target `ratequeue::access`, with the request span:
    /// method, path, source, key, resource, lane, lease id, request id, status,
    /// duration). Off by default; the same as adding `ratequeue::access=info` to --log.
    #[arg(long, env = "RATEQUEUE_ACCESS_LOG", global = true)]
    access_log: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node of a cluster.
    Serve(Box<ServeArgs>),
    /// Run a local 3-node cluster in this process, with data under ./.ratequeue-dev; or,
    /// with --ephemeral --json, separate node processes in a temporary dir, controlled
    /// over stdin (docs/testkit.md).
    Dev(DevArgs),
    /// Storage failpoints of a test build (cargo feature `failpoints`; docs/consistency.md).
    #[cfg(feature = "failpoints")]
    #[command(subcommand)]
    Failpoint(FailpointCmd),
}

#[cfg(feature = "failpoints")]
#[derive(Subcommand)]
enum FailpointCmd {
    /// On the data dir of a killed node: undo every write since its last completed
    /// fsync, as a power cut would, then optionally tear or corrupt the last log record.
    /// Prints what it did as JSON.
    PowerCut {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, value_enum, default_value = "keep")]
        tail: TailArg,
    },
}

#[cfg(feature = "failpoints")]
#[derive(Clone, Copy, ValueEnum)]
enum TailArg {
    Keep,
    Torn,
    Corrupt,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Node id (>= 1). Default: from $HOSTNAME's trailing ordinal `-N`, as N+1.
    #[arg(long, env = "RATEQUEUE_ID")]
    id: Option<NodeId>,
    #[arg(long, env = "RATEQUEUE_API_ADDR", default_value = "0.0.0.0:7700")]
    api_addr: SocketAddr,
    #[arg(long, env = "RATEQUEUE_PEER_ADDR", default_value = "0.0.0.0:7701")]
    peer_addr: SocketAddr,
    /// Base URL clients are redirected to. Default: http://<api-addr> (https:// with TLS).
    #[arg(long, env = "RATEQUEUE_ADVERTISE_API_URL")]
    advertise_api_url: Option<String>,
    /// host:port other nodes use for this node's peer listener. Default: this node's
    /// entry in --peers, else --peer-addr.
    #[arg(long, env = "RATEQUEUE_ADVERTISE_PEER_ADDR")]
    advertise_peer_addr: Option<String>,
    /// Initial voters: `1=host:7701,2=host:7701,3=host:7701`.
    #[arg(long, env = "RATEQUEUE_PEERS", default_value = "")]
    peers: String,
    #[arg(long, env = "RATEQUEUE_DATA_DIR", default_value = "./ratequeue-data")]
    data_dir: PathBuf,
    /// File holding the admin token (else env RATEQUEUE_ADMIN_TOKEN).
    #[arg(long, env = "RATEQUEUE_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// File holding the cluster secret (else env RATEQUEUE_CLUSTER_SECRET).
    #[arg(long, env = "RATEQUEUE_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    #[arg(long, env = "RATEQUEUE_HEARTBEAT_MS", default_value_t = 150)]
    heartbeat_ms: u64,
    #[arg(long, env = "RATEQUEUE_ELECTION_TIMEOUT_MS", default_value_t = 1000)]
    election_timeout_ms: u64,
    #[arg(long, env = "RATEQUEUE_SNAPSHOT_EVERY", default_value_t = 10_000)]
    snapshot_every: u64,
    #[arg(long, env = "RATEQUEUE_CACHE_MB", default_value_t = 64)]
    cache_mb: u64,
    /// Exit as soon as process PID, the supervisor that started this node, is gone (a
    /// test or dev supervisor; on Linux the kernel kills the node with its parent).
    #[arg(long, env = "RATEQUEUE_PARENT_PID")]
    parent_pid: Option<u32>,
    /// This node's certificate chain (PEM, leaf first). It must carry the DNS name
    /// `node-<id>.ratequeue` and the names clients use. Turns on TLS on both listeners
    /// and mutual TLS between peers; needs --tls-key and --tls-ca.
    #[arg(long, env = "RATEQUEUE_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "RATEQUEUE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that the other members' certificates must chain to.
    #[arg(long, env = "RATEQUEUE_TLS_CA", requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// CA bundle (PEM): API clients must present a certificate it signed.
    #[arg(long, env = "RATEQUEUE_API_CLIENT_CA", requires = "tls_cert")]
    api_client_ca: Option<PathBuf>,
    /// Serve plain HTTP on addresses other than loopback (tokens and the cluster secret
    /// then cross the network unencrypted). Without TLS and without this flag, such a
    /// binding is refused.
    #[arg(long, env = "RATEQUEUE_INSECURE", default_value_t = false)]
    insecure: bool,
    /// Serve `GET /metrics` without authentication on this address as well (on the API
    /// port it needs an admin or monitor key). Bind it where only the scraper reaches.
    #[arg(long, env = "RATEQUEUE_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Let the leader's own fsync overlap replication, as etcd's does: the leader counts
    /// its own entry before its fsync and holds back apply, answers and the commit index
    /// it sends until the fsync is done (docs/operations.md). Off by default.
    #[arg(long, env = "RATEQUEUE_LEADER_FSYNC_OVERLAP", default_value_t = false)]
    leader_fsync_overlap: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Bounds of the API listener (docs/operations.md, "Connection limits").
#[derive(clap::Args)]
struct LimitArgs {
    /// Open API connections at once; more are answered 503 and closed.
    #[arg(long, env = "RATEQUEUE_CONNECTIONS_MAX", default_value_t = 4_096)]
    connections_max: usize,
    /// Open API connections at once from one IP address.
    #[arg(
        long,
        env = "RATEQUEUE_CONNECTIONS_PER_SOURCE_MAX",
        default_value_t = 256
    )]
    connections_per_source_max: usize,
    /// A request's headers must arrive within this long (the first request's from accept).
    #[arg(
        long,
        env = "RATEQUEUE_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    header_read_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed.
    #[arg(long, env = "RATEQUEUE_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    idle_timeout_ms: u64,
    /// Requests in flight at once on one HTTP/2 connection.
    #[arg(long, env = "RATEQUEUE_H2_STREAMS_MAX", default_value_t = 128)]
    h2_streams_max: u32,
}

impl LimitArgs {
    fn limits(&self) -> anyhow::Result<ConnLimits> {
        if self.connections_max == 0
            || self.connections_per_source_max == 0
            || self.h2_streams_max == 0
            || self.header_read_timeout_ms == 0
            || self.idle_timeout_ms == 0
        {
            bail!("connection limits and timeouts must be positive");
        }
        Ok(ConnLimits {
            connections_max: self.connections_max,
            connections_per_source_max: self.connections_per_source_max,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            h2_streams_max: self.h2_streams_max,
        })
    }
}

#[derive(clap::Args)]
struct DevArgs {
    #[arg(long, default_value = ".ratequeue-dev")]
    dir: PathBuf,
    /// First API port; node N uses port + 10*(N-1) for its API and +1 for peers.
    #[arg(long, default_value_t = 7700)]
    port: u16,
    /// Separate `ratequeue serve` processes on a free loopback block with a fresh
    /// temporary data dir; one JSON line describes them, then commands are read from
    /// stdin (docs/testkit.md). Everything is removed on EOF, `quit`, SIGTERM/SIGINT or
    /// the parent's exit.
    #[arg(long, requires = "json", conflicts_with_all = ["dir", "port"])]
    ephemeral: bool,
    /// JSON lines on stdout (required with --ephemeral).
    #[arg(long, requires = "ephemeral")]
    json: bool,
    /// With --ephemeral: how many nodes.
    #[arg(long, default_value_t = 3, requires = "ephemeral")]
    nodes: u64,
    /// With --ephemeral: the server binary the nodes run (default: this one).
    #[arg(long, requires = "ephemeral")]
    bin: Option<PathBuf>,
    /// With --ephemeral: one more `serve` flag for every node, repeatable
    /// (`--serve-arg=--snapshot-every=200`).
    #[arg(long = "serve-arg", allow_hyphen_values = true, requires = "ephemeral")]
    serve_args: Vec<String>,
    /// With --ephemeral: how long to wait for a serving leader at start.
    #[arg(long, default_value_t = 60_000, requires = "ephemeral")]
    leader_timeout_ms: u64,
    /// With --ephemeral: the nodes speak TLS with certificates made for this cluster
    /// (the first line's `tls` names the CA file and a client certificate).
    #[arg(long, requires = "ephemeral")]
    tls: bool,
    /// With --tls: API clients must also present a certificate from that CA.
    #[arg(long, requires = "tls")]
    tls_client_auth: bool,
}

fn init_logging(filter: &str, format: LogFormat, access_log: bool) {
    let access = ratequeue_node::http::access::TARGET;
    let filter = if access_log {
        format!("{filter},{access}=info")
    } else if filter.contains(access) {
        filter.to_owned()
    } else {
        format!("{filter},{access}=off")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: log files and shippers get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn parse_peers(s: &str) -> anyhow::Result<BTreeMap<NodeId, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .with_context(|| format!("peer {part:?}: want ID=HOST:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .with_context(|| format!("peer id {id:?}"))?;
        if id == 0 {
            bail!("peer ids start at 1");
        }
        if out.insert(id, addr.trim().to_owned()).is_some() {
            bail!("peer id {id} given twice");
        }
    }
    Ok(out)
}

/// `ratequeue-2` -> 3 (StatefulSet ordinal + 1).
fn id_from_hostname() -> Option<NodeId> {
    let host = std::env::var("HOSTNAME").ok()?;
    let ordinal: NodeId = host.rsplit_once('-')?.1.parse().ok()?;
    Some(ordinal + 1)
}

/// The admin token(s): from the file (reloaded on change and SIGHUP), else the
/// environment (fixed).
fn admin_tokens(file: Option<&Path>) -> anyhow::Result<AdminTokens> {
    match file {
        Some(f) => AdminTokens::from_file(f),
        None => {
            let v = std::env::var("RATEQUEUE_ADMIN_TOKEN").context(
                "admin token missing: set RATEQUEUE_ADMIN_TOKEN or pass --admin-token-file",
            )?;
            AdminTokens::fixed(&v)
        }
    }
}

fn secret(file: Option<&Path>, env: &str, what: &str) -> anyhow::Result<String> {
    let value = match file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("reading {what} file {}", f.display()))?,
        None => std::env::var(env)
            .with_context(|| format!("{what} missing: set {env} or pass the --…-file flag"))?,
    };
    let value = value.trim().to_owned();
    if value.len() < 8 {
        bail!("{what} must be at least 8 characters");
    }
    Ok(value)
}

fn serve_config(a: ServeArgs) -> anyhow::Result<Config> {
    let id =
        a.id.or_else(id_from_hostname)
            .context("--id missing and $HOSTNAME has no ordinal")?;
    if id == 0 {
        bail!("node ids start at 1");
    }
    let peers = parse_peers(&a.peers)?;
    let advertise_peer_addr = a
        .advertise_peer_addr
        .or_else(|| peers.get(&id).cloned())
        .unwrap_or_else(|| a.peer_addr.to_string());
    let tls = match (a.tls_cert, a.tls_key, a.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(
            Tls::load(TlsPaths {
                cert,
                key,
                ca,
                api_client_ca: a.api_client_ca,
            })
            .context("loading TLS files")?,
        ),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok(Config {
        id,
        api_addr: a.api_addr,
        peer_addr: a.peer_addr,
        advertise_api_url: a
            .advertise_api_url
            .unwrap_or_else(|| format!("{scheme}://{}", a.api_addr)),
        advertise_peer_addr,
        peers,
        data_dir: a.data_dir,
        admin_token: Arc::new(admin_tokens(a.admin_token_file.as_deref())?),
        cluster_secret: secret(
            a.cluster_secret_file.as_deref(),
            "RATEQUEUE_CLUSTER_SECRET",
            "cluster secret",
        )?,
        raft: RaftTuning {
            heartbeat_ms: a.heartbeat_ms,
            election_min_ms: a.election_timeout_ms,
            election_max_ms: a.election_timeout_ms * 2,
            snapshot_every: a.snapshot_every,
        },
        tls,
        insecure: a.insecure,
        cache_bytes: a.cache_mb * 1024 * 1024,
        handoff: true,
        api_limits: a.limits.limits()?,
        metrics_addr: a.metrics_addr,
        leader_fsync_overlap: a.leader_fsync_overlap,
    })
}

/// `--parent-pid`: the kernel kills this process when its parent exits (Linux), and a
/// parent already gone before that was set up means exit now.
fn exit_with_parent(pid: u32) -> anyhow::Result<()> {
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .context("PR_SET_PDEATHSIG")?;
    let parent = nix::unistd::getppid().as_raw();
    if u32::try_from(parent).ok() != Some(pid) {
        bail!("--parent-pid {pid}: the parent is gone (parent is now {parent})");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_format, cli.access_log);
    let rt = serve::runtime;
    match cli.command {
        Cmd::Serve(a) => {
            if let Some(pid) = a.parent_pid {
                exit_with_parent(pid)?;
            }
            let config = serve_config(*a)?;
            rt()?.block_on(serve::serve(config, serve::shutdown_signal()))
        }
        Cmd::Dev(a) if a.ephemeral => {
            let bin = match a.bin {
                Some(b) => b,
                None => std::env::current_exe().context("locating this binary")?,
            };
            ratequeue_testkit::dev::run(ratequeue_testkit::dev::DevOptions {
                nodes: a.nodes,
                bin,
                serve_args: a.serve_args,
                leader_timeout: std::time::Duration::from_millis(a.leader_timeout_ms),
                tls: a.tls.then_some(ratequeue_testkit::TestTls {
                    client_auth: a.tls_client_auth,
                }),
            })
        }
        Cmd::Dev(a) => rt()?.block_on(ratequeue_node::dev::run(&a.dir, a.port)),
        #[cfg(feature = "failpoints")]
        Cmd::Failpoint(FailpointCmd::PowerCut { data_dir, tail }) => {
            use ratequeue_node::storage::failpoint::{power_cut, TailFault};
            let tail = match tail {
                TailArg::Keep => TailFault::Keep,
                TailArg::Torn => TailFault::Torn,
                TailArg::Corrupt => TailFault::Corrupt,
            };
            let report = power_cut(&data_dir, tail)
                .with_context(|| format!("power cut of {}", data_dir.display()))?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}
