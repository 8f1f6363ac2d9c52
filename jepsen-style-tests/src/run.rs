//! One run, in Jepsen's phases: start the cluster and create the resources; run the
//! workloads while the nemesis follows its schedule; heal everything; let the workloads
//! run on through a recovery phase; stop them; make the final reads (durable leases,
//! replica views after quiescence); stop the cluster; check the history; report.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use ratequeue_api as api;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::checker::{self, Config, Verdict, COMMIT_TIMEOUT_MS};
use crate::client::{Api, Block};
use crate::history::{Op, Recorder, Type, F, HARNESS, NEMESIS};
use crate::nemesis::{self, Fault, Nemesis};
use crate::net::{self, Net};
use crate::report;
use crate::workload::{self, Ctx, Workload};
use ratequeue_testkit::{Cluster, ClusterConfig};

/// The admin token and cluster secret of every run's nodes.
pub const ADMIN_TOKEN: &str = "jepsen-admin-token-0123456789";
pub const CLUSTER_SECRET: &str = "jepsen-cluster-secret-0123456789";

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub seed: u64,
    pub nodes: u64,
    pub duration: Duration,
    pub faults: Vec<Fault>,
    pub workloads: Vec<Workload>,
    pub out: PathBuf,
    pub bin: PathBuf,
    pub recovery: Duration,
    pub lose_disks: bool,
    pub keep_data: bool,
    pub block: Block,
    pub liveness_bound: Duration,
    /// The command line that reproduces this run (for the report).
    pub command: String,
    /// The server built with `--features ratequeue-node/failpoints`: the cluster runs it
    /// when a storage or disk fault is enabled, and the nemesis runs its power cut.
    pub failpoint_bin: Option<PathBuf>,
    /// Environment given to every node (the failpoints build's broken settings).
    pub node_env: Vec<(String, String)>,
    /// A fault that replaces the one nearest the middle of the schedule (a control's).
    pub middle: Option<Fault>,
    /// More `serve` flags for every node (`--leader-fsync-overlap`).
    pub server_args: Vec<String>,
}

impl RunConfig {
    /// Whether this run needs the failpoints build.
    pub fn needs_failpoints(&self) -> bool {
        self.faults.iter().any(|f| f.needs_failpoints())
            || self.middle.is_some_and(|f| f.needs_failpoints())
            || !self.node_env.is_empty()
    }
}

pub struct RunOutcome {
    pub valid: bool,
    pub verdicts: Vec<Verdict>,
    pub summary: String,
}

/// PUTs every resource through the leader until each is acknowledged.
pub async fn put_resources(api: &Api) -> anyhow::Result<()> {
    for (name, spec) in workload::resources() {
        let body = serde_json::to_value(&spec)?;
        let mut last = String::new();
        let mut done = false;
        for _ in 0..100 {
            let targets = api.targets();
            let node = targets
                .get(rand::random::<usize>() % targets.len().max(1))
                .copied()
                .unwrap_or(1);
            let a = api
                .call(
                    node,
                    Method::PUT,
                    &format!("/v1/resources/{name}"),
                    Some(&body),
                    Duration::from_secs(5),
                )
                .await;
            if a.kind == Type::Ok {
                done = true;
                break;
            }
            last = a.error.unwrap_or_default();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !done {
            bail!("creating resource {name}: {last}");
        }
    }
    Ok(())
}

pub async fn run(cfg: &RunConfig) -> anyhow::Result<RunOutcome> {
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    for stale in ["data", "nodes"] {
        let p = cfg.out.join(stale);
        if p.exists() {
            std::fs::remove_dir_all(&p)?;
        }
    }
    let nodes_dir = cfg.out.join("nodes");
    std::fs::create_dir_all(&nodes_dir)?;
    println!(
        "jepsen: seed {} | {} nodes | {:?} | nemesis {} | workloads {} | out {}",
        cfg.seed,
        cfg.nodes,
        cfg.duration,
        run_fault_names(cfg),
        cfg.workloads
            .iter()
            .map(|w| w.name())
            .collect::<Vec<_>>()
            .join(","),
        cfg.out.display()
    );

    // Network faults need iptables; without it, run the others and say so loudly.
    let mut partitions_skipped: Option<String> = None;
    let net = if cfg.faults.iter().any(|f| f.is_partition()) {
        match net::ensure_iptables() {
            Ok(()) => Some(Net::new(&net::chain_for(cfg.block))?),
            Err(why) => {
                println!(
                    "jepsen: !!! PARTITIONS SKIPPED: {why}; running the other nemeses only !!!"
                );
                partitions_skipped = Some(why);
                None
            }
        }
    } else {
        None
    };

    let rec = Recorder::new(Some(&cfg.out.join("history.jsonl")))?;
    let initial: Vec<u64> = (1..=cfg.nodes).collect();
    let api = Arc::new(Api::new(cfg.block, ADMIN_TOKEN, initial.clone())?);
    let server_bin = if cfg.needs_failpoints() {
        cfg.failpoint_bin.clone().context(
            "storage and disk faults need the server built with --features \
             ratequeue-node/failpoints (--failpoints-bin; jepsen-style-tests/ci.sh builds it)",
        )?
    } else {
        cfg.bin.clone()
    };
    let mut config = ClusterConfig::new(&server_bin)
        .nodes(cfg.nodes)
        .block(cfg.block)
        .dir(&nodes_dir)
        .admin_token(ADMIN_TOKEN)
        .cluster_secret(CLUSTER_SECRET)
        .args(["--snapshot-every", "500", "--cache-mb", "16"])
        .args(&cfg.server_args);
    for (k, v) in &cfg.node_env {
        config = config.env(k, v);
    }
    let mut c = Cluster::new(config)?;
    // Clients talk to the current members; the nemesis changes them.
    let targets = api.targets.clone();
    c.on_members_change(Box::new(move |m| *targets.write() = m.to_vec()));
    for id in &initial {
        c.spawn(*id)?;
    }
    c.wait_serving_leader(Duration::from_secs(60))
        .await
        .context("the cluster did not elect a leader")?;
    put_resources(&api).await?;
    let cluster = Arc::new(Mutex::new(c));

    let middle = cfg.middle.or(cfg.lose_disks.then_some(Fault::LoseDisks));
    let steps = nemesis::schedule_with_middle(
        cfg.seed,
        &cfg.faults,
        cfg.duration.as_millis() as u64,
        middle,
    );
    let checker_cfg = Config {
        resources: workload::resources(),
        // One in-flight write, the longest pause, and a margin for timer jitter.
        stamp_skew_ms: COMMIT_TIMEOUT_MS + nemesis::max_pause_ms(&steps) as f64 + 1_000.0,
        liveness_bound_ms: cfg.liveness_bound.as_millis() as f64,
        durable_workload: "durable".into(),
    };
    let mut setup = Op::new(HARNESS, Type::Info, F::Setup);
    let mut v = checker_cfg.to_value();
    if let Value::Object(m) = &mut v {
        m.insert("seed".into(), json!(cfg.seed));
        m.insert("nodes".into(), json!(cfg.nodes));
        m.insert("schedule".into(), serde_json::to_value(&steps)?);
    }
    setup.value = Some(v);
    rec.record(setup);

    let ctx = Ctx::new(api.clone(), rec.clone(), checker_cfg.stamp_skew_ms as u64);
    let workers = workload::spawn(&ctx, &cfg.workloads, cfg.seed);
    let recreate_api = api.clone();
    let recreate: Arc<
        dyn Fn() -> futures::future::BoxFuture<'static, anyhow::Result<()>> + Send + Sync,
    > = Arc::new(move || {
        let api = recreate_api.clone();
        Box::pin(async move { put_resources(&api).await })
    });
    let mut nem = Nemesis::new(cluster.clone(), net, rec.clone(), recreate);
    nem.failpoint_bin = cfg.needs_failpoints().then(|| server_bin.clone());
    let deadline = tokio::time::Instant::now() + cfg.duration;
    nem.run(&steps, deadline).await;
    tokio::time::sleep_until(deadline).await;

    println!("jepsen: healing every fault");
    let mut heal = Op::new(NEMESIS, Type::Info, F::HealAll);
    match nem.heal_all().await {
        Ok(v) => heal.value = Some(v),
        Err(e) => {
            println!("jepsen: heal failed: {e:#}");
            heal.value = Some(json!({"error": format!("{e:#}")}));
        }
    }
    rec.record(heal);
    tokio::time::sleep(cfg.recovery).await;
    ctx.stop.store(true, Ordering::Relaxed);
    for w in workers {
        if tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .is_err()
        {
            println!("jepsen: a worker did not stop within 30 s");
        }
    }

    println!("jepsen: final reads");
    final_durable_reads(&api, &rec).await;
    let crashed = {
        let c = cluster.lock().await;
        converge(&c, &rec, Duration::from_secs(30)).await;
        let mut crashed = Vec::new();
        for id in c.ids() {
            let log = c.log(id);
            let panics = log.lines().filter(|l| l.contains("panicked at")).count();
            if panics > 0 {
                crashed.push(json!({"node": id, "panics": panics}));
            }
        }
        crashed
    };
    let data_dirs: Vec<PathBuf> = {
        let mut c = cluster.lock().await;
        c.kill_all();
        c.ids().into_iter().map(|id| c.data_dir(id)).collect()
    };
    let iptables_rules_left = nem
        .net
        .as_ref()
        .map(|n| n.rules().len().saturating_sub(1))
        .unwrap_or(0);
    let skipped_faults = nem.skipped.clone();
    drop(nem);
    rec.flush()?;
    if !cfg.keep_data {
        // The node logs stay beside the report; the data goes.
        for d in data_dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    let ops = rec.ops();
    let verdicts = checker::check_all(&ops, &checker_cfg);
    let register = ctx.register.lock();
    let extra = json!({
        "partitions_skipped": partitions_skipped,
        "skipped_faults": skipped_faults,
        "node_panics": crashed,
        "iptables_rules_left_at_end": iptables_rules_left,
        "fenced_register": {"accepted": register.accepted, "rejected": register.rejected},
    });
    drop(register);
    let meta = report::Meta {
        seed: cfg.seed,
        nodes: cfg.nodes,
        duration_s: cfg.duration.as_secs_f64(),
        nemesis: run_fault_names(cfg),
        workloads: cfg.workloads.iter().map(|w| w.name().to_owned()).collect(),
        command: cfg.command.clone(),
    };
    let summary = report::write(&cfg.out, &meta, &ops, &verdicts, &checker_cfg, extra)?;
    let valid = verdicts.iter().all(|v| v.valid);
    Ok(RunOutcome {
        valid,
        verdicts,
        summary,
    })
}

fn run_fault_names(cfg: &RunConfig) -> String {
    let mut s = fault_names(&cfg.faults, cfg.lose_disks);
    if let Some(m) = cfg.middle {
        s.push_str(&format!("+{}(mid-run)", m.name()));
    }
    for (k, v) in &cfg.node_env {
        s.push_str(&format!(" [{k}={v}]"));
    }
    for a in &cfg.server_args {
        s.push_str(&format!(" [{a}]"));
    }
    s
}

fn fault_names(faults: &[Fault], lose_disks: bool) -> String {
    let mut v: Vec<&str> = faults.iter().map(|f| f.name()).collect();
    if lose_disks {
        v.push("lose-disks(sabotage)");
    }
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

/// Renews every acknowledged durable lease (a linearizable check that it still exists)
/// and reads the durable resource's `held` count, each until the answer is definite.
async fn final_durable_reads(api: &Api, rec: &Recorder) {
    let ops = rec.ops();
    let leases: Vec<(String, String)> = checker::grants(&ops)
        .into_values()
        .filter(|g| g.workload.as_deref() == Some("durable"))
        .map(|g| (g.lease_id, g.resource))
        .collect();
    let mut node = api.targets().first().copied().unwrap_or(1);
    for (lease, resource) in &leases {
        for _ in 0..10 {
            let mut inv = Op::new(HARNESS, Type::Invoke, F::Renew);
            inv.workload = Some("final".into());
            inv.lease_id = Some(lease.clone());
            inv.resource = Some(resource.clone());
            let inv = rec.record(inv);
            let body = json!({"ttl_ms": workload::DURABLE_TTL_MS});
            let a = api
                .call(
                    node,
                    Method::POST,
                    &format!("/v1/leases/{lease}/renew"),
                    Some(&body),
                    Duration::from_secs(5),
                )
                .await;
            let mut done = inv.complete(a.kind);
            done.node = Some(a.node);
            done.error = a.error.clone();
            if let Some(t) = a.body.get("fencing_token").and_then(Value::as_u64) {
                done.fencing_token = Some(t);
            }
            rec.record(done);
            let definite =
                a.kind == Type::Ok || matches!(a.code(), Some("lease_expired" | "lease_not_found"));
            if definite {
                node = a.node;
                break;
            }
            node = next_node(api, node);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    for _ in 0..20 {
        let mut inv = Op::new(HARNESS, Type::Invoke, F::Read);
        inv.resource = Some("durable".into());
        let inv = rec.record(inv);
        let a = api
            .call(
                node,
                Method::GET,
                "/v1/resources/durable",
                None,
                Duration::from_secs(5),
            )
            .await;
        let mut done = inv.complete(a.kind);
        done.node = Some(a.node);
        done.error = a.error.clone();
        let parsed = serde_json::from_value::<api::Resource>(a.body.clone());
        if let (Type::Ok, Ok(r)) = (a.kind, &parsed) {
            done.value = Some(json!({"held": r.stats.held, "grants_total": r.stats.grants_total}));
        } else if a.kind == Type::Ok {
            done.kind = Type::Info;
        }
        let ok = done.kind == Type::Ok;
        rec.record(done);
        if ok {
            break;
        }
        node = next_node(api, node);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn next_node(api: &Api, node: u64) -> u64 {
    let t = api.targets();
    let i = t
        .iter()
        .position(|x| *x == node)
        .map_or(0, |i| (i + 1) % t.len().max(1));
    t.get(i).copied().unwrap_or(node)
}

/// One replica's state as the API exposes it, with the applied index it belongs to
/// (read twice around the view; `None` if it moved meanwhile or the node did not answer).
async fn node_view(c: &Cluster, id: u64) -> Option<(u64, Value)> {
    let before = c.status(id).await?;
    // Stale reads are answered by the node itself; anything but a 200 is no view.
    let r = c
        .http()
        .get(format!("{}/v1/resources?stale=true", c.url(id)))
        .bearer_auth(c.admin_token())
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let body: Value = r.json().await.ok()?;
    let after = c.status(id).await?;
    let idx = before.applied_index?;
    if after.applied_index != Some(idx) {
        return None;
    }
    let list: api::ResourceList = serde_json::from_value(body).ok()?;
    let resources: Vec<Value> = list
        .resources
        .iter()
        .map(|r| {
            // Queue lengths exist on the leader only: not part of the replicated state.
            json!({"name": r.name, "config": r.config, "held": r.stats.held,
                   "grants_total": r.stats.grants_total, "limits": r.stats.limits})
        })
        .collect();
    Some((
        idx,
        json!({"leases": after.leases, "cluster_time_ms": after.cluster_time_ms, "resources": resources}),
    ))
}

/// Waits until every member reports the same applied index with a stable view, then
/// records the views (or, after `timeout`, whatever could be read).
async fn converge(c: &Cluster, rec: &Recorder, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut views = Vec::new();
        for id in c.members() {
            views.push((*id, node_view(c, *id).await));
        }
        let indexes: Vec<Option<u64>> =
            views.iter().map(|(_, v)| v.as_ref().map(|x| x.0)).collect();
        let agreed = indexes.iter().all(|i| i.is_some() && *i == indexes[0]);
        if agreed || tokio::time::Instant::now() > deadline {
            for (id, v) in views {
                let mut op = Op::new(
                    HARNESS,
                    if v.is_some() { Type::Ok } else { Type::Fail },
                    F::NodeView,
                );
                op.node = Some(id);
                match v {
                    Some((idx, view)) => {
                        op.value = Some(json!({"applied_index": idx, "view": view}))
                    }
                    None => op.error = Some("no stable view".into()),
                }
                rec.record(op);
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The `ratequeue` binary: `--bin`, `$RATEQUEUE_BIN`, or next to this executable.
pub fn find_server_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let candidate = match explicit {
        Some(p) => p.to_owned(),
        None => match std::env::var_os("RATEQUEUE_BIN") {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe()?
                .parent()
                .map(|d| d.join("ratequeue"))
                .context("no directory for the current executable")?,
        },
    };
    if !candidate.is_file() {
        bail!(
            "server binary {} not found: run `cargo build -p ratequeue-node` or pass --bin",
            candidate.display()
        );
    }
    Ok(candidate)
}
