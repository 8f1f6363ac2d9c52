//! The waiters probe: parks N acquires in one resource's queue and reports the leader's
//! resident memory before and after (`process_resident_memory_bytes` of `/metrics`).
//!
//! A waiting acquire is an open request. Over HTTP/1.1 that is a connection each, and
//! 100 000 of them would need more file descriptors than a process usually may open, so
//! by default the probe speaks HTTP/2 (prior knowledge) with `STREAMS_PER_CONNECTION`
//! requests on each connection; `--waiters-http1` opens one HTTP/1.1 connection per
//! waiter instead, to measure what a waiter costs that way. The resource has `concurrency: 1`, held by the probe's own lease, so
//! every other acquire waits. At the end the probe drops every request and checks that
//! the leader cancels all the waiters.

use std::time::{Duration, Instant};

use serde_json::json;

use super::http_client;
use super::ratequeue::{leader_url, put_resource};

/// The server's default bound of requests in flight on one HTTP/2 connection
/// (`--h2-streams-max`, 128): more would wait on the client's side, not in the queue.
const STREAMS_PER_CONNECTION: usize = 128;
/// The most waiters the probe parks (the cluster's own bound is 1 000 000).
const WAITERS_MAX: usize = 1_000_000;
/// How long the queue may take to fill, or to drain after the probe lets go.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How the probe's acquires reach the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/2, `STREAMS_PER_CONNECTION` waiters per connection.
    H2,
    /// HTTP/1.1, one connection per waiter.
    Http1,
}

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub protocol: Protocol,
    pub waiters: usize,
    pub rss_before_bytes: u64,
    pub rss_bytes: u64,
    pub bytes_per_waiter: u64,
    /// From the first request to the leader reporting every waiter queued.
    pub park_seconds: f64,
    /// From dropping the requests to the leader reporting an empty queue.
    pub cancel_seconds: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        write!(
            f,
            "waiters {} over {} | leader RSS {:.1} MiB (before {:.1} MiB, {} B per waiter) | parked in {:.1} s, cancelled in {:.1} s",
            self.waiters,
            match self.protocol {
                Protocol::H2 => "HTTP/2",
                Protocol::Http1 => "HTTP/1.1",
            },
            mib(self.rss_bytes),
            mib(self.rss_before_bytes),
            self.bytes_per_waiter,
            self.park_seconds,
            self.cancel_seconds
        )
    }
}

/// `(waiters, resident bytes)` from the leader's metrics.
async fn sample(http: &reqwest::Client, leader: &str, token: &str) -> anyhow::Result<(u64, u64)> {
    let text = http
        .get(format!("{leader}/metrics"))
        .bearer_auth(token)
        .send()
        .await?
        .text()
        .await?;
    let gauge = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .map(|v| v as u64)
            .ok_or_else(|| anyhow::anyhow!("{name} missing from the leader's metrics"))
    };
    Ok((
        gauge("ratequeue_waiters")?,
        gauge("process_resident_memory_bytes")?,
    ))
}

/// Polls the leader's metrics until `done(waiters)`.
async fn settle(
    http: &reqwest::Client,
    leader: &str,
    token: &str,
    done: impl Fn(u64) -> bool,
) -> anyhow::Result<(u64, u64)> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let s = sample(http, leader, token).await?;
        if done(s.0) {
            return Ok(s);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the queue did not settle: {} waiters",
            s.0
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn run(
    urls: &[String],
    token: &str,
    resource: &str,
    n: usize,
    protocol: Protocol,
) -> anyhow::Result<Report> {
    anyhow::ensure!(
        (1..=WAITERS_MAX).contains(&n),
        "waiters must be in 1..={WAITERS_MAX}"
    );
    let http = http_client(4)?;
    let leader = leader_url(&http, urls, token).await?;
    let spec = json!({"concurrency": 1, "max_queue": n});
    put_resource(&http, &leader, token, resource, &spec).await?;
    let acquire = format!("{leader}/v1/resources/{resource}/acquire");
    let held = http
        .post(&acquire)
        .bearer_auth(token)
        .json(&json!({"ttl_ms": 3_600_000, "wait_ms": 0}))
        .send()
        .await?;
    anyhow::ensure!(
        held.status().is_success(),
        "the holding acquire answered {}",
        held.status()
    );
    let (queued, rss_before) = sample(&http, &leader, token).await?;
    anyhow::ensure!(queued == 0, "the leader already has {queued} waiters");

    let start = Instant::now();
    let body = serde_json::to_vec(&json!({ "wait_ms": 3_600_000 }))?;
    let mut requests = tokio::task::JoinSet::new();
    let per_connection = match protocol {
        Protocol::H2 => STREAMS_PER_CONNECTION,
        // One client for all: concurrent HTTP/1.1 requests each open a connection.
        Protocol::Http1 => n,
    };
    for c in 0..n.div_ceil(per_connection) {
        let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        let client = match protocol {
            Protocol::H2 => builder.http2_prior_knowledge(),
            Protocol::Http1 => builder.http1_only(),
        }
        .build()?;
        for _ in c * per_connection..((c + 1) * per_connection).min(n) {
            let req = client
                .post(&acquire)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body.clone());
            // Dropped at the end: only the leader's count matters.
            requests.spawn(async move { req.send().await.map(|r| r.status().as_u16()) });
        }
    }
    let (_, rss) = settle(&http, &leader, token, |w| w >= n as u64).await?;
    let park_seconds = start.elapsed().as_secs_f64();
    // Every request still waits: any that ended was refused, and the probe is void.
    anyhow::ensure!(
        requests.try_join_next().is_none(),
        "a parked acquire was answered before the probe let go"
    );

    let start = Instant::now();
    requests.abort_all();
    while requests.join_next().await.is_some() {}
    settle(&http, &leader, token, |w| w == 0).await?;
    Ok(Report {
        protocol,
        waiters: n,
        rss_before_bytes: rss_before,
        rss_bytes: rss,
        bytes_per_waiter: rss.saturating_sub(rss_before) / n as u64,
        park_seconds,
        cancel_seconds: start.elapsed().as_secs_f64(),
    })
}
