//! `rqctl bench`: a closed-loop load generator for a running cluster.
//!
//! N clients each loop acquire -> release against the leader (found from cluster
//! status) for a fixed duration after a warm-up, and the report gives pairs/s and
//! latency percentiles. Workloads (docs/benchmarks.md):
//! - `cycle`: acquire + release on a resource with ample capacity (no contention);
//! - `contended`: the same on `concurrency: 8` (clients queue);
//! - `rate`: `wait_ms = 0` acquires against a request bucket (grants are released;
//!   `would_block` answers count as completed checks).
//!
//! Measurement only: it never retries, and any unexpected answer aborts the run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratequeue_api as api;
use serde_json::json;

use crate::cli::{Failure, Global};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    Cycle,
    Contended,
    Rate,
}

#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub url: String,
    pub token: String,
    pub workload: Workload,
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Resource to (re)create for the run.
    pub resource: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    pub workload: String,
    pub clients: usize,
    pub seconds: f64,
    /// Completed operations: acquire+release pairs (or checks for `rate`).
    pub ops: u64,
    pub ops_per_sec: f64,
    /// Rejections (`would_block`) among the ops, for `rate`.
    pub rejected: u64,
    /// Latency of the acquire request, microseconds.
    pub acquire_us: Percentiles,
    /// Latency of the whole pair, microseconds.
    pub pair_us: Percentiles,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(samples: &mut [u64]) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples[i.min(samples.len() - 1)]
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: samples[samples.len() - 1],
        }
    }
}

/// Samples kept per client (bounded: a long run keeps the first ones).
const SAMPLES_PER_CLIENT_MAX: usize = 200_000;

async fn leader_url(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http
            .get(format!("{url}/v1/cluster/status"))
            .bearer_auth(token)
            .send()
            .await;
        if let Ok(r) = r {
            if let Ok(s) = r.json::<api::ClusterStatus>().await {
                if let Some(u) = s.leader_url {
                    return Ok(u);
                }
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "no leader known at {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn resource_body(w: Workload, clients: usize) -> serde_json::Value {
    match w {
        Workload::Cycle => json!({"concurrency": (clients * 4).max(16), "max_queue": 100_000}),
        Workload::Contended => json!({"concurrency": 8, "max_queue": 100_000}),
        Workload::Rate => json!({
            "rate": [{"per": "request", "limit": 1_000, "window_ms": 1_000}],
            "max_queue": 100_000
        }),
    }
}

pub async fn run(cfg: BenchConfig) -> anyhow::Result<BenchReport> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(cfg.clients + 16)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?;
    let leader = leader_url(&http, &cfg.url, &cfg.token).await?;
    let r = http
        .put(format!("{leader}/v1/resources/{}", cfg.resource))
        .bearer_auth(&cfg.token)
        .json(&resource_body(cfg.workload, cfg.clients))
        .send()
        .await?;
    anyhow::ensure!(
        r.status().is_success(),
        "creating the bench resource: {}",
        r.status()
    );

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let acquire_url = Arc::new(format!("{leader}/v1/resources/{}/acquire", cfg.resource));
    let auth = Arc::new(format!("Bearer {}", cfg.token));
    let body: Arc<Vec<u8>> = Arc::new(serde_json::to_vec(
        &json!({"wait_ms": if cfg.workload == Workload::Rate { 0 } else { 30_000 }}),
    )?);
    let mut tasks = Vec::with_capacity(cfg.clients);
    for _ in 0..cfg.clients {
        let (http, leader) = (http.clone(), leader.clone());
        let (measuring, stop, ops, rejected) = (
            measuring.clone(),
            stop.clone(),
            ops.clone(),
            rejected.clone(),
        );
        let (acquire_url, auth, body) = (acquire_url.clone(), auth.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut acq = Vec::new();
            let mut pair = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let r = http
                    .post(acquire_url.as_str())
                    .header("authorization", auth.as_str())
                    .header("content-type", "application/json")
                    .body(body.as_ref().clone())
                    .send()
                    .await?;
                let status = r.status().as_u16();
                let bytes = r.bytes().await?;
                let t1 = Instant::now();
                if status == 429 {
                    if measuring.load(Ordering::Relaxed) {
                        ops.fetch_add(1, Ordering::Relaxed);
                        rejected.fetch_add(1, Ordering::Relaxed);
                        if acq.len() < SAMPLES_PER_CLIENT_MAX {
                            acq.push((t1 - t0).as_micros() as u64);
                        }
                    }
                    continue;
                }
                anyhow::ensure!(status == 200, "acquire answered {status}: {bytes:?}");
                let lease: api::Lease = serde_json::from_slice(&bytes)?;
                let r = http
                    .post(format!("{leader}/v1/leases/{}/release", lease.lease_id))
                    .header("authorization", auth.as_str())
                    .send()
                    .await?;
                let status = r.status().as_u16();
                let _ = r.bytes().await?;
                anyhow::ensure!(status == 200, "release answered {status}");
                let t2 = Instant::now();
                if measuring.load(Ordering::Relaxed) {
                    ops.fetch_add(1, Ordering::Relaxed);
                    if acq.len() < SAMPLES_PER_CLIENT_MAX {
                        acq.push((t1 - t0).as_micros() as u64);
                        pair.push((t2 - t0).as_micros() as u64);
                    }
                }
            }
            Ok::<_, anyhow::Error>((acq, pair))
        }));
    }
    tokio::time::sleep(cfg.warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(cfg.duration).await;
    measuring.store(false, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    let done = ops.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let (mut acq, mut pair) = (Vec::new(), Vec::new());
    for t in tasks {
        let (a, p) = t.await??;
        acq.extend(a);
        pair.extend(p);
    }
    Ok(BenchReport {
        workload: format!("{:?}", cfg.workload).to_lowercase(),
        clients: cfg.clients,
        seconds,
        ops: done,
        ops_per_sec: done as f64 / seconds,
        rejected: rejected.load(Ordering::Relaxed),
        acquire_us: Percentiles::of(&mut acq),
        pair_us: Percentiles::of(&mut pair),
    })
}

/// `rqctl bench` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, value_enum, default_value = "cycle")]
    workload: Workload,
    /// Client counts to sweep, comma-separated.
    #[arg(long, default_value = "256", value_delimiter = ',')]
    clients: Vec<usize>,
    /// Measured seconds per point.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before each point.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Resource the bench creates (or replaces) and uses.
    #[arg(long, default_value = "rqctl-bench")]
    resource: String,
    /// One JSON report per line instead of a table.
    #[arg(long)]
    json: bool,
}

/// Clients per point: each is a task with its own HTTP/1.1 connection.
const CLIENTS_MAX: usize = 4_096;

pub async fn main(global: &Global, args: Args) -> Result<u8, Failure> {
    let fail = |e: anyhow::Error| Failure {
        error: e,
        json: args.json,
        exit: 1,
    };
    let url = global
        .url
        .as_deref()
        .and_then(|u| u.split(',').map(str::trim).find(|u| !u.is_empty()))
        .ok_or_else(|| fail(anyhow::anyhow!("bench needs --url or RATEQUEUE_URL")))?
        .trim_end_matches('/')
        .to_owned();
    let token = global
        .api_key
        .clone()
        .ok_or_else(|| fail(anyhow::anyhow!("bench needs an admin --api-key")))?;
    if !args.json {
        println!(
            "{:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "workload", "clients", "ops/s", "acq p50", "acq p99", "acq p999", "pair p99"
        );
    }
    for &clients in &args.clients {
        if clients == 0 || clients > CLIENTS_MAX {
            return Err(fail(anyhow::anyhow!(
                "clients must be in 1..={CLIENTS_MAX}"
            )));
        }
        let cfg = BenchConfig {
            url: url.clone(),
            token: token.clone(),
            workload: args.workload,
            clients,
            duration: Duration::from_secs_f64(args.duration.max(0.1)),
            warmup: Duration::from_secs_f64(args.warmup.max(0.0)),
            resource: args.resource.clone(),
        };
        let r = run(cfg).await.map_err(fail)?;
        if args.json {
            println!("{}", serde_json::to_string(&r).map_err(|e| fail(e.into()))?);
        } else {
            let ms = |us: u64| format!("{:.2}ms", us as f64 / 1000.0);
            println!(
                "{:>9} {:>8} {:>10.0} {:>9} {:>9} {:>9} {:>9}",
                r.workload,
                r.clients,
                r.ops_per_sec,
                ms(r.acquire_us.p50),
                ms(r.acquire_us.p99),
                ms(r.acquire_us.p999),
                ms(r.pair_us.p99)
            );
        }
    }
    Ok(0)
}
