//! `rqctl bench`: a closed-loop load generator for a running ratequeue cluster, or for
//! an etcd cluster doing the same job with etcd's own recipes (the side-by-side run of
//! `bench/run.sh`).
//!
//! N clients each loop one operation for a fixed duration after a warm-up, and the
//! report gives operations/s and latency percentiles. Workloads (docs/benchmarks.md):
//! - `cycle`: acquire + release on a resource with ample capacity (no contention);
//! - `contended`: the same on `concurrency: 8` (clients queue);
//! - `rate`: `wait_ms = 0` checks against a 1 000/s request bucket (grants are released;
//!   refusals count as completed checks);
//! - `waiters` (ratequeue only, `waiters.rs`): park N acquires in the queue and report
//!   the leader's resident memory.
//!
//! `--system echo` runs the `cycle` against the bare axum server of
//! `node/server/examples/echo_server.rs` (the same two requests, no Raft): the HTTP
//! ceiling of the machine, measured in the same run.
//!
//! Measurement only: it never retries, and any unexpected answer aborts the run.
//! `ratequeue.rs` and `etcd.rs` hold each system's operations; this file holds the
//! driver, which is the same for all.

mod etcd;
mod ratequeue;
mod waiters;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{Failure, Global};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Ratequeue,
    Etcd,
    /// The HTTP ceiling: `node/server/examples/echo_server.rs`.
    Echo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    Cycle,
    Contended,
    Rate,
    Waiters,
}

/// Slots of the `contended` workload, in both systems.
const CONTENDED_SLOTS: u64 = 8;
/// Admits per second of the `rate` workload, in both systems.
const RATE_PER_SEC: u64 = 1_000;

#[derive(Clone, Debug)]
pub struct Point {
    pub system: System,
    /// The cluster's endpoints (the bench finds the leader among them).
    pub urls: Vec<String>,
    pub token: String,
    pub workload: Workload,
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Resource (ratequeue) or key prefix (etcd) the point uses.
    pub resource: String,
    /// Open-loop pacing: operations per second over all clients (None: closed loop).
    /// Each client starts its operations on a fixed schedule, and a late start counts
    /// in the latency, so a stalled server cannot hide its queue (coordinated omission).
    pub rate: Option<f64>,
    /// Report percentiles per interval of this length too (long sustained runs).
    pub interval: Option<Duration>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub system: System,
    pub workload: Workload,
    pub clients: usize,
    /// The open-loop rate asked for, if any.
    pub target_rate: Option<f64>,
    pub seconds: f64,
    /// Completed operations: acquire+release pairs (or checks for `rate`).
    pub ops: u64,
    pub ops_per_sec: f64,
    /// Refusals among the ops, for `rate`.
    pub rejected: u64,
    /// Latency of the acquire (or the check), microseconds.
    pub acquire_us: Percentiles,
    /// Latency of the whole pair, microseconds.
    pub pair_us: Percentiles,
    /// The acquire latency distribution: `(quantile, microseconds)` at `CDF_QUANTILES`.
    pub acquire_cdf_us: Vec<(f64, u64)>,
    /// The leader's last log index when measuring began and ended (ratequeue only):
    /// how many Raft entries the point wrote, hence how many snapshots it spanned.
    pub log_index: Option<(u64, u64)>,
    /// With `--interval`: the acquire latency of each interval, in order.
    pub intervals: Vec<Interval>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Interval {
    /// Seconds from the start of the measured period to the start of the interval.
    pub start_s: f64,
    pub ops: u64,
    pub acquire_us: Percentiles,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

const CDF_QUANTILES: [f64; 21] = [
    0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995,
    0.998, 0.999, 0.9999, 1.0,
];

/// The value at quantile `q` of sorted, non-empty `samples`.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl Percentiles {
    fn of(sorted: &[u64]) -> Percentiles {
        if sorted.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: quantile(sorted, 0.50),
            p90: quantile(sorted, 0.90),
            p99: quantile(sorted, 0.99),
            p999: quantile(sorted, 0.999),
            max: sorted[sorted.len() - 1],
        }
    }
}

/// One operation as a client saw it.
pub(crate) enum Sample {
    /// Acquired (after `acquire_us`) and released (the pair took `pair_us`).
    Pair { acquire_us: u64, pair_us: u64 },
    /// A `rate` check that was refused.
    Refused { check_us: u64 },
}

/// Samples kept per client (bounded: a long run keeps the first ones).
const SAMPLES_PER_CLIENT_MAX: usize = 200_000;

/// A prepared system: the resource exists, and clients can be made.
enum Target {
    /// ratequeue, or the echo server (same requests, no resource to create).
    Ratequeue(ratequeue::Target),
    Etcd(etcd::Target),
}

/// One closed-loop client of a target.
enum Client {
    Ratequeue(ratequeue::Client),
    Etcd(etcd::Client),
}

impl Target {
    async fn prepare(p: &Point, http: &reqwest::Client) -> anyhow::Result<Target> {
        Ok(match p.system {
            System::Ratequeue | System::Echo => {
                Target::Ratequeue(ratequeue::Target::prepare(p, http).await?)
            }
            System::Etcd => Target::Etcd(etcd::Target::prepare(p, http).await?),
        })
    }

    /// The leader's last log index (ratequeue only).
    async fn log_index(&self) -> Option<u64> {
        match self {
            Target::Ratequeue(t) => t.log_index().await,
            Target::Etcd(_) => None,
        }
    }

    async fn client(&self, index: usize) -> anyhow::Result<Client> {
        Ok(match self {
            Target::Ratequeue(t) => Client::Ratequeue(t.client()),
            Target::Etcd(t) => Client::Etcd(t.client(index).await?),
        })
    }
}

impl Client {
    async fn op(&mut self) -> anyhow::Result<Sample> {
        match self {
            Client::Ratequeue(c) => c.op().await,
            Client::Etcd(c) => c.op().await,
        }
    }

    async fn close(self) -> anyhow::Result<()> {
        match self {
            Client::Ratequeue(_) => Ok(()),
            Client::Etcd(c) => c.close().await,
        }
    }
}

/// An HTTP/1.1 client with a connection per concurrent request.
fn http_client(clients: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(clients + 16)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?)
}

pub async fn run(p: Point) -> anyhow::Result<Report> {
    anyhow::ensure!(
        p.workload != Workload::Waiters,
        "the waiters probe is not a closed-loop workload"
    );
    anyhow::ensure!(
        p.system != System::Echo || p.workload == Workload::Cycle,
        "the echo server answers the cycle only"
    );
    let http = http_client(p.clients)?;
    let target = Arc::new(Target::prepare(&p, &http).await?);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(p.clients);
    let clients = p.clients;
    // Set when measuring starts: sample times are taken from it.
    let epoch = Arc::new(std::sync::OnceLock::<Instant>::new());
    for index in 0..p.clients {
        let target = target.clone();
        let (measuring, stop, ops, refused, epoch) = (
            measuring.clone(),
            stop.clone(),
            ops.clone(),
            refused.clone(),
            epoch.clone(),
        );
        let period = p
            .rate
            .map(|r| Duration::from_secs_f64(p.clients as f64 / r.max(0.001)));
        tasks.push(tokio::spawn(async move {
            let mut client = target.client(index).await?;
            let (mut acq, mut pair, mut at_ms) = (Vec::new(), Vec::new(), Vec::new());
            // Clients are staggered over one period so that paced starts spread out.
            let mut next = Instant::now()
                + period.map_or(Duration::ZERO, |d| d.mul_f64(index as f64 / clients as f64));
            while !stop.load(Ordering::Relaxed) {
                let mut late_us = 0;
                if let Some(period) = period {
                    tokio::time::sleep_until(next.into()).await;
                    late_us = us_since(next);
                    next += period;
                }
                let sample = match client.op().await? {
                    Sample::Pair {
                        acquire_us,
                        pair_us,
                    } => Sample::Pair {
                        acquire_us: acquire_us + late_us,
                        pair_us: pair_us + late_us,
                    },
                    Sample::Refused { check_us } => Sample::Refused {
                        check_us: check_us + late_us,
                    },
                };
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                ops.fetch_add(1, Ordering::Relaxed);
                let keep = acq.len() < SAMPLES_PER_CLIENT_MAX;
                if keep {
                    // When the operation ended, for `--interval`; one per kept latency.
                    at_ms.push(epoch.get().map_or(0, |e| e.elapsed().as_millis() as u64));
                }
                match sample {
                    Sample::Pair {
                        acquire_us,
                        pair_us,
                    } if keep => {
                        acq.push(acquire_us);
                        pair.push(pair_us);
                    }
                    Sample::Refused { check_us } => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        if keep {
                            acq.push(check_us);
                        }
                    }
                    Sample::Pair { .. } => {}
                }
            }
            client.close().await?;
            Ok::<_, anyhow::Error>((acq, pair, at_ms))
        }));
    }
    tokio::time::sleep(p.warmup).await;
    let index_before = target.log_index().await;
    let start = Instant::now();
    let _ = epoch.set(start);
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(p.duration).await;
    measuring.store(false, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    let done = ops.load(Ordering::Relaxed);
    let index_after = target.log_index().await;
    stop.store(true, Ordering::Relaxed);
    let (mut acq, mut pair) = (Vec::new(), Vec::new());
    let mut timed: Vec<(u64, u64)> = Vec::new();
    for t in tasks {
        let (a, b, at) = t.await??;
        if p.interval.is_some() {
            timed.extend(at.iter().copied().zip(a.iter().copied()));
        }
        acq.extend(a);
        pair.extend(b);
    }
    let intervals = p
        .interval
        .map(|every| intervals(&mut timed, every, p.duration))
        .unwrap_or_default();
    acq.sort_unstable();
    pair.sort_unstable();
    let acquire_cdf_us = if acq.is_empty() {
        Vec::new()
    } else {
        CDF_QUANTILES
            .iter()
            .map(|&q| (q, quantile(&acq, q)))
            .collect()
    };
    Ok(Report {
        system: p.system,
        workload: p.workload,
        clients: p.clients,
        target_rate: p.rate,
        seconds,
        ops: done,
        ops_per_sec: done as f64 / seconds,
        rejected: refused.load(Ordering::Relaxed),
        acquire_us: Percentiles::of(&acq),
        pair_us: Percentiles::of(&pair),
        acquire_cdf_us,
        log_index: index_before.zip(index_after),
        intervals,
    })
}

/// Percentiles of `(ms since start, latency us)` samples per interval of `every`.
fn intervals(timed: &mut [(u64, u64)], every: Duration, total: Duration) -> Vec<Interval> {
    let every_ms = every.as_millis().max(1) as u64;
    let n = total.as_millis().div_ceil(u128::from(every_ms)) as u64;
    timed.sort_unstable();
    (0..n)
        .map(|i| {
            let (from, to) = (i * every_ms, (i + 1) * every_ms);
            let lo = timed.partition_point(|&(t, _)| t < from);
            let hi = timed.partition_point(|&(t, _)| t < to);
            let mut lat: Vec<u64> = timed[lo..hi].iter().map(|&(_, us)| us).collect();
            lat.sort_unstable();
            Interval {
                start_s: from as f64 / 1000.0,
                ops: lat.len() as u64,
                acquire_us: Percentiles::of(&lat),
            }
        })
        .collect()
}

/// Microseconds since `t`.
pub(crate) fn us_since(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

/// `rqctl bench` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The system under test: a ratequeue cluster, or an etcd cluster driven through
    /// its v3 JSON gateway with the equivalent recipes (docs/benchmarks.md).
    #[arg(long, value_enum, default_value = "ratequeue")]
    system: System,
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
    /// Resource (etcd: key prefix) the bench creates or replaces, and uses.
    #[arg(long, default_value = "rqctl-bench")]
    resource: String,
    /// Pace the clients to this many operations per second in all (open loop), to
    /// measure latency below saturation; default: closed loop, as fast as answered.
    #[arg(long)]
    rate: Option<f64>,
    /// Also report the acquire latency per interval of this many seconds (sustained
    /// runs: p99 per minute).
    #[arg(long)]
    interval: Option<f64>,
    /// `waiters` workload: acquires to park in the queue.
    #[arg(long, default_value_t = 100_000)]
    waiters: usize,
    /// `waiters` workload: one HTTP/1.1 connection per waiter instead of HTTP/2 (the
    /// server's per-source connection cap and both sides' file limits must allow it).
    #[arg(long)]
    waiters_http1: bool,
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
    let urls: Vec<String> = global
        .url
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(fail(anyhow::anyhow!("bench needs --url or RATEQUEUE_URL")));
    }
    let token = match args.system {
        System::Ratequeue => global
            .api_key
            .clone()
            .ok_or_else(|| fail(anyhow::anyhow!("bench needs an admin --api-key")))?,
        System::Etcd | System::Echo => String::new(),
    };
    if args.workload == Workload::Waiters {
        if args.system != System::Ratequeue {
            return Err(fail(anyhow::anyhow!(
                "the waiters probe is for ratequeue only"
            )));
        }
        let protocol = if args.waiters_http1 {
            waiters::Protocol::Http1
        } else {
            waiters::Protocol::H2
        };
        let r = waiters::run(&urls, &token, &args.resource, args.waiters, protocol)
            .await
            .map_err(fail)?;
        if args.json {
            println!("{}", serde_json::to_string(&r).map_err(|e| fail(e.into()))?);
        } else {
            println!("{r}");
        }
        return Ok(0);
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(fail(anyhow::anyhow!("--rate must be a positive number")));
    }
    if !args.json {
        println!(
            "{:>9} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "system", "workload", "clients", "ops/s", "acq p50", "acq p99", "acq p999", "pair p99"
        );
    }
    for &clients in &args.clients {
        if clients == 0 || clients > CLIENTS_MAX {
            return Err(fail(anyhow::anyhow!(
                "clients must be in 1..={CLIENTS_MAX}"
            )));
        }
        let point = Point {
            system: args.system,
            urls: urls.clone(),
            token: token.clone(),
            workload: args.workload,
            clients,
            duration: Duration::from_secs_f64(args.duration.max(0.1)),
            warmup: Duration::from_secs_f64(args.warmup.max(0.0)),
            resource: args.resource.clone(),
            rate: args.rate,
            interval: args
                .interval
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Duration::from_secs_f64),
        };
        let r = run(point).await.map_err(fail)?;
        if args.json {
            println!("{}", serde_json::to_string(&r).map_err(|e| fail(e.into()))?);
        } else {
            let ms = |us: u64| format!("{:.2}ms", us as f64 / 1000.0);
            println!(
                "{:>9} {:>9} {:>8} {:>10.0} {:>9} {:>9} {:>9} {:>9}",
                format!("{:?}", r.system).to_lowercase(),
                format!("{:?}", r.workload).to_lowercase(),
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
