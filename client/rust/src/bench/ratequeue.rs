//! The bench's ratequeue side: raw HTTP/1.1 to the leader, one request per step. The
//! echo server (the HTTP ceiling probe) is driven with the very same requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ratequeue_api as api;
use serde_json::json;

use super::{us_since, Point, Sample, System, Workload, CONTENDED_SLOTS, RATE_PER_SEC};

/// The leader's API URL, from the cluster status of the first endpoint that knows it.
pub(crate) async fn leader_url(
    http: &reqwest::Client,
    urls: &[String],
    token: &str,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for url in urls {
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
        }
        anyhow::ensure!(Instant::now() < deadline, "no leader known at {urls:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates (or replaces) the resource `name` with `spec` on the leader. A new leader
/// answers `503 no_leader` until it has applied its log: that is waited out (bounded).
pub(crate) async fn put_resource(
    http: &reqwest::Client,
    leader: &str,
    token: &str,
    name: &str,
    spec: &serde_json::Value,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http
            .put(format!("{leader}/v1/resources/{name}"))
            .bearer_auth(token)
            .json(spec)
            .send()
            .await?;
        let status = r.status();
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        anyhow::ensure!(status.is_success(), "creating resource {name}: {status}");
        return Ok(());
    }
}

fn resource_spec(w: Workload, clients: usize) -> serde_json::Value {
    match w {
        Workload::Contended => json!({"concurrency": CONTENDED_SLOTS, "max_queue": 100_000}),
        Workload::Rate => json!({
            "rate": [{"per": "request", "limit": RATE_PER_SEC, "window_ms": 1_000}],
            "max_queue": 100_000
        }),
        Workload::Cycle | Workload::Waiters => {
            json!({"concurrency": (clients * 4).max(16), "max_queue": 100_000})
        }
    }
}

struct Shared {
    http: reqwest::Client,
    leader: String,
    acquire_url: String,
    auth: String,
    body: Vec<u8>,
    /// The target is the echo server, not a cluster.
    echo: bool,
}

pub(crate) struct Target(Arc<Shared>);

impl Target {
    pub(crate) async fn prepare(p: &Point, http: &reqwest::Client) -> anyhow::Result<Target> {
        let leader = if p.system == System::Echo {
            // The echo server has no cluster and no resources: the same requests only.
            p.urls
                .first()
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no --url"))?
        } else {
            let leader = leader_url(http, &p.urls, &p.token).await?;
            let spec = resource_spec(p.workload, p.clients);
            put_resource(http, &leader, &p.token, &p.resource, &spec).await?;
            leader
        };
        let wait_ms = if p.workload == Workload::Rate {
            0
        } else {
            30_000
        };
        Ok(Target(Arc::new(Shared {
            http: http.clone(),
            acquire_url: format!("{leader}/v1/resources/{}/acquire", p.resource),
            leader,
            auth: format!("Bearer {}", p.token),
            body: serde_json::to_vec(&json!({ "wait_ms": wait_ms }))?,
            echo: p.system == System::Echo,
        })))
    }

    /// The leader's last log index, or None (echo, or the status did not answer).
    pub(crate) async fn log_index(&self) -> Option<u64> {
        let s = &*self.0;
        if s.echo {
            return None;
        }
        let r = s
            .http
            .get(format!("{}/v1/cluster/status", s.leader))
            .header("authorization", s.auth.as_str())
            .send()
            .await
            .ok()?;
        r.json::<api::ClusterStatus>().await.ok()?.last_log_index
    }

    pub(crate) fn client(&self) -> Client {
        Client(self.0.clone())
    }
}

pub(crate) struct Client(Arc<Shared>);

impl Client {
    /// Acquire, then release what was granted; a `429` is a refused check.
    pub(crate) async fn op(&mut self) -> anyhow::Result<Sample> {
        let s = &*self.0;
        let t0 = Instant::now();
        let r = s
            .http
            .post(s.acquire_url.as_str())
            .header("authorization", s.auth.as_str())
            .header("content-type", "application/json")
            .body(s.body.clone())
            .send()
            .await?;
        let status = r.status().as_u16();
        let bytes = r.bytes().await?;
        let acquire_us = us_since(t0);
        if status == 429 {
            return Ok(Sample::Refused {
                check_us: acquire_us,
            });
        }
        anyhow::ensure!(status == 200, "acquire answered {status}: {bytes:?}");
        let lease: api::Lease = serde_json::from_slice(&bytes)?;
        let r = s
            .http
            .post(format!("{}/v1/leases/{}/release", s.leader, lease.lease_id))
            .header("authorization", s.auth.as_str())
            .send()
            .await?;
        let status = r.status().as_u16();
        let _ = r.bytes().await?;
        anyhow::ensure!(status == 200, "release answered {status}");
        Ok(Sample::Pair {
            acquire_us,
            pair_us: us_since(t0),
        })
    }
}
