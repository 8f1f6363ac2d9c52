//! `jepsen`: runs ratequeue under faults and checks the history (see `lib.rs`).
//!
//! ```text
//! jepsen --seed 7 --nodes 3 --duration 60s --nemesis all --workload all --out DIR
//! jepsen --ci                      # the short run the test command uses
//! jepsen check DIR/history.jsonl   # re-run the checkers on a recorded history
//! ```
//!
//! Exit status: 0 when every checker passes, 1 when one fails, 2 on a harness error.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use jepsen_style_tests::checker::{self, Config};
use jepsen_style_tests::client::Block;
use jepsen_style_tests::nemesis::{parse_faults, Fault};
use jepsen_style_tests::run::{find_server_bin, run, RunConfig};
use jepsen_style_tests::workload::parse_workloads;
use jepsen_style_tests::{cleanup, history, parse_duration};

#[derive(Parser)]
#[command(
    name = "jepsen",
    about = "Fault injection and history checking for ratequeue"
)]
struct Cli {
    /// Seed of the fault schedule and the clients' choices (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Initial voters: 3 or 5.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Length of the fault phase (then heal, recovery phase, final reads).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Workloads keep running this long after the final heal.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    recovery: Duration,
    /// all, none, or a comma list of kill, pause, partition, membership or single faults
    /// (kill-leader, kill-random, pause-leader, pause-random, partition-halves,
    /// partition-leader, partition-ring, partition-one-way).
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// all, or a comma list of semaphore, rate, durable, idempotent, fencing, dry-run,
    /// report (and batch, not in all).
    #[arg(long, default_value = "all")]
    workload: String,
    /// Output directory (default: target/jepsen/seed-N).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The ratequeue binary (default: $RATEQUEUE_BIN, else next to this executable).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Runs with consecutive seeds.
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Deliberately break the cluster to show the checkers catch it.
    #[arg(long, value_enum)]
    sabotage: Option<Sabotage>,
    /// The deliberately broken server build (`--features
    /// ratequeue-node/sabotage-follower-grants`) for `--sabotage follower-grants` and the
    /// CI mode (default: `ratequeue-sabotaged` next to the server binary).
    #[arg(long)]
    sabotaged_bin: Option<PathBuf>,
    /// The server built with `--features ratequeue-node/failpoints`, for the storage and
    /// disk faults and their controls (default: `ratequeue-failpoints` next to the
    /// server binary; `ci.sh` builds it).
    #[arg(long)]
    failpoints_bin: Option<PathBuf>,
    /// An acquire must succeed this soon after the final heal.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    liveness_bound: Duration,
    /// Keep the nodes' data directories.
    #[arg(long)]
    keep_data: bool,
    /// Start every node with `--leader-fsync-overlap` (the leader's own fsync
    /// overlapping replication), in the CI mode too.
    #[arg(long)]
    leader_fsync_overlap: bool,
    /// The CI mode: a mixed-fault run (3 nodes, every nemesis and workload) that must
    /// pass, then a short sabotaged run that must be caught. Overrides the run flags.
    #[arg(long)]
    ci: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Sabotage {
    /// Mid-run, kill every node and delete every data dir (an unsynced log after a
    /// power cut), then restart and re-create the resources.
    LoseDisks,
    /// Run the broken build whose followers grant from their own applied state, without
    /// Raft (`--sabotaged-bin`).
    FollowerGrants,
    /// The failpoints build acknowledging flushes before they are durable (fsync for real
    /// every 2 s), and a power cut of every node mid-run.
    LyingFsync,
    /// The failpoints build ignoring injected disk errors, under `disk-eio` faults.
    IgnoreDiskErrors,
    /// The failpoints build silently deleting a damaged last log record at start,
    /// under `torn-tail` faults.
    RepairTail,
    /// The failpoints build whose leader stamps cluster time from its wall clock, under
    /// `clock-wall-forward` faults.
    WallClockStamps,
    /// The failpoints build whose dry-run grants charge no bucket (shadows that forget
    /// the traffic they let through), on the `dry-run` workload.
    DryRunUncharged,
    /// The failpoints build that records a reported 429 but keeps granting, on the
    /// `report` workload.
    IgnorePause,
}

impl Sabotage {
    /// The broken settings of the failpoints build, as node environment.
    fn node_env(self) -> Vec<(String, String)> {
        let kv = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        match self {
            Sabotage::LyingFsync => kv("RATEQUEUE_FAILPOINT_LYING_FSYNC_MS", "2000"),
            Sabotage::IgnoreDiskErrors => kv("RATEQUEUE_FAILPOINT_IGNORE_DISK_ERRORS", "1"),
            Sabotage::RepairTail => kv("RATEQUEUE_FAILPOINT_REPAIR_TAIL", "1"),
            Sabotage::WallClockStamps => kv("RATEQUEUE_FAILPOINT_STAMP_WALL", "1"),
            Sabotage::DryRunUncharged => kv("RATEQUEUE_FAILPOINT_DRY_RUN_UNCHARGED", "1"),
            Sabotage::IgnorePause => kv("RATEQUEUE_FAILPOINT_IGNORE_PAUSE", "1"),
            _ => Vec::new(),
        }
    }

    /// The faults the control runs under (added to the run's own).
    fn faults(self) -> Vec<Fault> {
        match self {
            Sabotage::IgnoreDiskErrors => vec![Fault::DiskEio],
            Sabotage::RepairTail => vec![Fault::TornTail],
            Sabotage::WallClockStamps => vec![Fault::ClockWallForward],
            _ => Vec::new(),
        }
    }

    /// The workloads of its control run in `jepsen --ci`.
    fn workloads(self) -> &'static str {
        match self {
            Sabotage::DryRunUncharged => "dry-run",
            Sabotage::IgnorePause => "report",
            _ => "semaphore,durable",
        }
    }

    /// The fault placed in the middle of the control run.
    fn middle(self) -> Option<Fault> {
        match self {
            Sabotage::LyingFsync => Some(Fault::PowerCutAll),
            _ => None,
        }
    }
}

impl Sabotage {
    fn name(self) -> &'static str {
        match self {
            Sabotage::LoseDisks => "lose-disks",
            Sabotage::FollowerGrants => "follower-grants",
            Sabotage::LyingFsync => "lying-fsync",
            Sabotage::IgnoreDiskErrors => "ignore-disk-errors",
            Sabotage::RepairTail => "repair-tail",
            Sabotage::WallClockStamps => "wall-clock-stamps",
            Sabotage::DryRunUncharged => "dry-run-uncharged",
            Sabotage::IgnorePause => "ignore-pause",
        }
    }

    /// The flag that reproduces it, for the report's command line.
    fn flag(self) -> String {
        format!(" --sabotage {}", self.name())
    }
}

/// The nodes' extra `serve` flags.
fn server_args(cli: &Cli) -> Vec<String> {
    if cli.leader_fsync_overlap {
        vec!["--leader-fsync-overlap".to_owned()]
    } else {
        Vec::new()
    }
}

/// The harness flag that reproduces [`server_args`], for the report's command line.
fn overlap_flag(cli: &Cli) -> &'static str {
    if cli.leader_fsync_overlap {
        " --leader-fsync-overlap"
    } else {
        ""
    }
}

/// The broken build: `--sabotaged-bin`, else `ratequeue-sabotaged` beside the server.
fn sabotaged_bin(cli: &Cli, server: &std::path::Path) -> anyhow::Result<PathBuf> {
    let p = match &cli.sabotaged_bin {
        Some(p) => p.clone(),
        None => server.with_file_name("ratequeue-sabotaged"),
    };
    anyhow::ensure!(
        p.is_file(),
        "sabotaged server build {} not found: build it with `cargo build --features \
         ratequeue-node/sabotage-follower-grants` and copy target/debug/ratequeue there \
         (jepsen-style-tests/ci.sh does), or pass --sabotaged-bin",
        p.display()
    );
    Ok(p)
}

/// The failpoints build: `--failpoints-bin`, else `ratequeue-failpoints` beside the
/// server (`None` if absent: runs that need it then fail and say how to build it).
fn failpoints_bin(cli: &Cli, server: &std::path::Path) -> Option<PathBuf> {
    let p = match &cli.failpoints_bin {
        Some(p) => p.clone(),
        None => server.with_file_name("ratequeue-failpoints"),
    };
    p.is_file().then_some(p)
}

#[derive(Subcommand)]
enum Cmd {
    /// Re-run the checkers on a recorded history.
    Check { history: PathBuf },
    /// A markdown table of every run under DIR (each `*/results.json`).
    Summarize { dir: PathBuf },
}

/// The CI run's fault phase: with set-up, recovery and final reads, the mixed run and
/// the sabotage control stay within about three minutes on two cores.
const CI_DURATION: Duration = Duration::from_secs(80);
const CI_SABOTAGE_DURATION: Duration = Duration::from_secs(20);
/// The storage, disk and clock run: long enough for each of its twelve faults once.
const CI_STORAGE_DURATION: Duration = Duration::from_secs(90);

fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (t ^ u64::from(std::process::id()).rotate_left(32)) % 1_000_000
}

/// The block of this process's `run`-th cluster, claimed against other harnesses
/// running at the same time (`blocks`).
fn block_for(run: u64, nodes: u64) -> Block {
    jepsen_style_tests::blocks::claim(run, nodes)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let code = match real_main().await {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("jepsen: error: {e:#}");
            2
        }
    };
    cleanup::undo_all();
    std::process::exit(code);
}

async fn real_main() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    if let Some(Cmd::Check { history: path }) = &cli.cmd {
        let ops = history::load(path)?;
        let cfg = Config::from_history(&ops);
        let verdicts = checker::check_all(&ops, &cfg);
        for v in &verdicts {
            println!(
                "[{}] {:<18} {}",
                if v.valid { " ok " } else { "FAIL" },
                v.checker,
                v.summary
            );
        }
        return Ok(verdicts.iter().all(|v| v.valid));
    }
    if let Some(Cmd::Summarize { dir }) = &cli.cmd {
        println!("{}", jepsen_style_tests::report::summarize(dir)?);
        return Ok(true);
    }
    let _janitor = cleanup::Janitor;
    cleanup::spawn_signal_handler();
    let bin = find_server_bin(cli.bin.as_deref())?;
    if cli.ci {
        return ci(&cli, bin).await;
    }
    if cli.nodes != 3 && cli.nodes != 5 {
        anyhow::bail!("--nodes must be 3 or 5");
    }
    let mut faults = parse_faults(&cli.nemesis)?;
    if let Some(sab) = cli.sabotage {
        for f in sab.faults() {
            if !faults.contains(&f) {
                faults.push(f);
            }
        }
    }
    let failpoint_bin = failpoints_bin(&cli, &bin);
    let workloads = parse_workloads(&cli.workload)?;
    let bin = match cli.sabotage {
        Some(Sabotage::FollowerGrants) => sabotaged_bin(&cli, &bin)?,
        _ => bin,
    };
    let first = cli.seed.unwrap_or_else(random_seed);
    let mut all_valid = true;
    let mut lines = Vec::new();
    for k in 0..cli.runs {
        let seed = first + k;
        let out = match &cli.out {
            Some(o) if cli.runs > 1 => o.join(format!("seed-{seed}")),
            Some(o) => o.clone(),
            None => PathBuf::from(format!("target/jepsen/seed-{seed}")),
        };
        let command = format!(
            "cargo run -p jepsen-style-tests --bin jepsen -- --seed {seed} --nodes {} --duration {}s --nemesis {} --workload {}{}",
            cli.nodes,
            cli.duration.as_secs(),
            cli.nemesis,
            cli.workload,
            cli.sabotage.map(Sabotage::flag).unwrap_or_default()
        ) + overlap_flag(&cli);
        let cfg = RunConfig {
            seed,
            nodes: cli.nodes,
            duration: cli.duration,
            faults: faults.clone(),
            workloads: workloads.clone(),
            out,
            bin: bin.clone(),
            recovery: cli.recovery,
            lose_disks: cli.sabotage == Some(Sabotage::LoseDisks),
            keep_data: cli.keep_data,
            block: block_for(k, cli.nodes),
            liveness_bound: cli.liveness_bound,
            command,
            failpoint_bin: failpoint_bin.clone(),
            node_env: cli.sabotage.map(Sabotage::node_env).unwrap_or_default(),
            middle: cli.sabotage.and_then(Sabotage::middle),
            server_args: server_args(&cli),
        };
        let outcome = run(&cfg)
            .await
            .with_context(|| format!("run with seed {seed}"))?;
        println!("{}", outcome.summary);
        all_valid &= outcome.valid;
        lines.push(format!(
            "seed {seed}: {}",
            if outcome.valid { "valid" } else { "INVALID" }
        ));
    }
    if cli.runs > 1 {
        println!("{}", lines.join("\n"));
    }
    Ok(all_valid)
}

/// The CI mode: a mixed run and a storage-and-disk run that must pass, and eight
/// sabotaged runs that must fail: one that loses every disk mid-run, the build whose
/// followers grant locally, and the failpoints build with a lying fsync (under a power
/// cut of every node), ignoring disk errors (under `disk-eio`), repairing a damaged
/// log tail (under `torn-tail`), stamping from the wall clock (under
/// `clock-wall-forward`), charging no dry-run grant (the `dry-run` workload) and
/// ignoring a reported 429 (the `report` workload).
async fn ci(cli: &Cli, bin: PathBuf) -> anyhow::Result<bool> {
    let seed = cli.seed.unwrap_or_else(random_seed);
    let broken = sabotaged_bin(cli, &bin)?;
    let failpoints = failpoints_bin(cli, &bin).with_context(|| {
        format!(
            "the failpoints build {} not found: build it with `cargo build --features \
             ratequeue-node/failpoints` and copy target/debug/ratequeue there \
             (jepsen-style-tests/ci.sh does), or pass --failpoints-bin",
            bin.with_file_name("ratequeue-failpoints").display()
        )
    })?;
    let base = cli
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/jepsen/ci"));
    let mixed = RunConfig {
        seed,
        nodes: 3,
        duration: CI_DURATION,
        faults: parse_faults("all")?,
        workloads: parse_workloads("all")?,
        out: base.join(format!("seed-{seed}")),
        bin: bin.clone(),
        recovery: Duration::from_secs(8),
        lose_disks: false,
        keep_data: false,
        block: block_for(0, 3),
        liveness_bound: cli.liveness_bound,
        command: format!(
            "cargo run -p jepsen-style-tests --bin jepsen -- --seed {seed} --nodes 3 --duration {}s --nemesis all --workload all",
            CI_DURATION.as_secs()
        ) + overlap_flag(cli),
        failpoint_bin: Some(failpoints.clone()),
        node_env: Vec::new(),
        middle: None,
        server_args: server_args(cli),
    };
    let storage = RunConfig {
        duration: CI_STORAGE_DURATION,
        faults: parse_faults("storage,disk,clock,kill-leader")?,
        out: base.join(format!("storage-seed-{seed}")),
        block: block_for(1, 3),
        command: format!(
            "cargo run -p jepsen-style-tests --bin jepsen -- --seed {seed} --nodes 3 --duration {}s --nemesis storage,disk,clock,kill-leader --workload all",
            CI_STORAGE_DURATION.as_secs()
        ) + overlap_flag(cli),
        ..mixed.clone()
    };
    let mut lines = Vec::new();
    let mut all_valid = true;
    for (what, cfg) in [
        ("mixed-fault run", &mixed),
        ("storage/disk/clock-fault run", &storage),
    ] {
        let a = run(cfg).await.with_context(|| format!("the {what}"))?;
        println!("{}", a.summary);
        all_valid &= a.valid;
        lines.push(format!(
            "jepsen ci: seed {seed}: {what} {}",
            if a.valid { "VALID" } else { "INVALID" }
        ));
    }
    let mut all_caught = true;
    for (k, sabotage) in [
        Sabotage::LoseDisks,
        Sabotage::FollowerGrants,
        Sabotage::LyingFsync,
        Sabotage::IgnoreDiskErrors,
        Sabotage::RepairTail,
        Sabotage::WallClockStamps,
        Sabotage::DryRunUncharged,
        Sabotage::IgnorePause,
    ]
    .into_iter()
    .enumerate()
    {
        let name = sabotage.name();
        let control = RunConfig {
            duration: CI_SABOTAGE_DURATION,
            faults: sabotage.faults(),
            workloads: parse_workloads(sabotage.workloads())?,
            out: base.join(format!("sabotage-{name}-seed-{seed}")),
            bin: match sabotage {
                Sabotage::FollowerGrants => broken.clone(),
                _ => bin.clone(),
            },
            recovery: Duration::from_secs(4),
            lose_disks: sabotage == Sabotage::LoseDisks,
            block: block_for(2 + k as u64, 3),
            command: format!(
                "cargo run -p jepsen-style-tests --bin jepsen -- --seed {seed} --duration {}s --nemesis none --workload {}{}",
                CI_SABOTAGE_DURATION.as_secs(),
                sabotage.workloads(),
                sabotage.flag()
            ) + overlap_flag(cli),
            node_env: sabotage.node_env(),
            middle: sabotage.middle(),
            ..mixed.clone()
        };
        let b = run(&control)
            .await
            .with_context(|| format!("the sabotage control run ({name})"))?;
        println!("{}", b.summary);
        let caught: Vec<&str> = b
            .verdicts
            .iter()
            .filter(|v| !v.valid)
            .map(|v| v.checker.as_str())
            .collect();
        all_caught &= !caught.is_empty();
        lines.push(format!(
            "jepsen ci: seed {seed}: sabotage ({name}) {}",
            if caught.is_empty() {
                "NOT caught (harness broken)".to_owned()
            } else {
                format!("caught by {}", caught.join(", "))
            }
        ));
    }
    println!("{}", lines.join("\n"));
    Ok(all_valid && all_caught)
}
