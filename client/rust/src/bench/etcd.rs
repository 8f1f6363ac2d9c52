//! The bench's etcd side: the same workloads done the way a home-made etcd limiter does
//! them, through etcd's v3 JSON gateway (`/v3/...`, base64 keys, int64 as strings).
//!
//! - `cycle`: the pattern of etcd's concurrency recipes: a put of a key attached to the
//!   client's session lease, then a delete of it.
//! - `contended`: a counting semaphore generalising etcd's `Mutex` recipe to 8 holders.
//!   A client puts its key (revision R) and holds once fewer than 8 keys of the prefix
//!   were created before R; otherwise it watches for the deletion of the key 8 places
//!   ahead of it (no thundering herd) and counts again. Releasing deletes the key.
//! - `rate`: a fixed-window counter, one key per second: read it, refuse at 1 000,
//!   else compare-and-swap it up by one with a transaction (retried on conflict).
//!
//! Every client grants one session lease (TTL 300 s, longer than any point, so no
//! keep-alive is needed) and revokes it at the end, which also drops leftover keys.

use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::{us_since, Point, Sample, Workload, CONTENDED_SLOTS, RATE_PER_SEC};

const SESSION_TTL_S: u64 = 300;

#[derive(Deserialize, Default)]
struct Header {
    #[serde(default)]
    revision: String,
    #[serde(default)]
    member_id: String,
}

#[derive(Deserialize)]
struct WithHeader {
    #[serde(default)]
    header: Header,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    leader: String,
}

#[derive(Deserialize)]
struct Grant {
    #[serde(rename = "ID")]
    id: String,
}

#[derive(Deserialize, Default)]
struct Kv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    mod_revision: String,
}

#[derive(Deserialize)]
struct Range {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    kvs: Vec<Kv>,
}

#[derive(Deserialize)]
struct Txn {
    #[serde(default)]
    succeeded: bool,
}

#[derive(Deserialize)]
struct WatchMessage {
    #[serde(default)]
    result: Option<WatchResult>,
}

#[derive(Deserialize)]
struct WatchResult {
    #[serde(default)]
    events: Vec<WatchEvent>,
}

#[derive(Deserialize)]
struct WatchEvent {
    #[serde(default, rename = "type")]
    kind: String,
}

/// An int64 of the gateway: a decimal string, absent when zero.
fn int(s: &str) -> anyhow::Result<i64> {
    if s.is_empty() {
        return Ok(0);
    }
    Ok(s.parse()?)
}

fn b64(s: &str) -> String {
    B64.encode(s)
}

/// The end of the range of keys that start with `prefix` (its last byte plus one).
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    B64.encode(end)
}

#[derive(Clone)]
pub(crate) struct Target {
    http: reqwest::Client,
    endpoint: String,
    workload: Workload,
    prefix: String,
}

/// The leader's client URL, so that both systems are driven at their leader.
async fn leader_endpoint(http: &reqwest::Client, urls: &[String]) -> anyhow::Result<String> {
    for url in urls {
        let r = http
            .post(format!("{url}/v3/maintenance/status"))
            .json(&json!({}))
            .send()
            .await;
        if let Ok(r) = r {
            if let Ok(s) = r.json::<Status>().await {
                if !s.leader.is_empty() && s.leader == s.header.member_id {
                    return Ok(url.clone());
                }
            }
        }
    }
    anyhow::bail!("no etcd leader among {urls:?}")
}

impl Target {
    pub(crate) async fn prepare(p: &Point, http: &reqwest::Client) -> anyhow::Result<Target> {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        Ok(Target {
            http: http.clone(),
            endpoint: leader_endpoint(http, &p.urls).await?,
            workload: p.workload,
            prefix: format!("/rqctl-bench/{}/{nonce}/", p.resource),
        })
    }

    pub(crate) async fn client(&self, index: usize) -> anyhow::Result<Client> {
        let grant: Grant = self
            .call("lease/grant", json!({ "TTL": SESSION_TTL_S }))
            .await?;
        Ok(Client {
            target: self.clone(),
            lease: grant.id,
            index,
            seq: 0,
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<T> {
        let r = self
            .http
            .post(format!("{}/v3/{path}", self.endpoint))
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let bytes = r.bytes().await?;
        anyhow::ensure!(
            status.is_success(),
            "etcd {path} answered {status}: {bytes:?}"
        );
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Waits until `key` is deleted at a revision after `after`.
    async fn wait_deleted(&self, key: &str, after: i64) -> anyhow::Result<()> {
        let mut r = self
            .http
            .post(format!("{}/v3/watch", self.endpoint))
            .json(&json!({"create_request": {
                "key": b64(key),
                "start_revision": (after + 1).to_string(),
                "filters": ["NOPUT"],
            }}))
            .send()
            .await?;
        anyhow::ensure!(
            r.status().is_success(),
            "etcd watch answered {}",
            r.status()
        );
        let mut buf = Vec::new();
        while let Some(chunk) = r.chunk().await? {
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let m: WatchMessage = serde_json::from_slice(&line)?;
                if m.result
                    .is_some_and(|r| r.events.iter().any(|e| e.kind == "DELETE"))
                {
                    return Ok(());
                }
            }
        }
        anyhow::bail!("etcd watch of {key} ended without its deletion")
    }
}

pub(crate) struct Client {
    target: Target,
    lease: String,
    index: usize,
    seq: u64,
}

impl Client {
    pub(crate) async fn op(&mut self) -> anyhow::Result<Sample> {
        self.seq += 1;
        match self.target.workload {
            Workload::Cycle | Workload::Waiters => self.cycle("c/").await,
            Workload::Contended => self.cycle("s/").await,
            Workload::Rate => self.rate().await,
        }
    }

    /// Put a key on the session lease (holding once the semaphore admits it, for the
    /// `s/` prefix of `contended`), then delete it.
    async fn cycle(&mut self, dir: &str) -> anyhow::Result<Sample> {
        let t = &self.target;
        let dir = format!("{}{dir}", t.prefix);
        let key = format!("{dir}{:06}-{}", self.index, self.seq);
        let t0 = Instant::now();
        let put: WithHeader = t
            .call(
                "kv/put",
                json!({"key": b64(&key), "value": "", "lease": self.lease}),
            )
            .await?;
        if t.workload == Workload::Contended {
            let created = int(&put.header.revision)?;
            loop {
                let ahead: Range = t
                    .call(
                        "kv/range",
                        json!({
                            "key": b64(&dir),
                            "range_end": prefix_end(&dir),
                            "max_create_revision": (created - 1).to_string(),
                            "sort_order": "DESCEND",
                            "sort_target": "CREATE",
                            "limit": CONTENDED_SLOTS.to_string(),
                            "keys_only": true,
                        }),
                    )
                    .await?;
                // `count` is taken before the revision filter: only `kvs` is the keys
                // ahead (at most the limit of them).
                let Some(last) = ahead.kvs.get(CONTENDED_SLOTS as usize - 1) else {
                    break;
                };
                let blocker = String::from_utf8(B64.decode(&last.key)?)?;
                t.wait_deleted(&blocker, int(&ahead.header.revision)?)
                    .await?;
            }
        }
        let acquire_us = us_since(t0);
        let _: WithHeader = t.call("kv/deleterange", json!({"key": b64(&key)})).await?;
        Ok(Sample::Pair {
            acquire_us,
            pair_us: us_since(t0),
        })
    }

    /// One check of the per-second counter: refuse at the limit, else count it with a
    /// compare-and-swap (retried when another client moved the counter first).
    async fn rate(&mut self) -> anyhow::Result<Sample> {
        let t = &self.target;
        let t0 = Instant::now();
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let key = b64(&format!("{}r/{second}", t.prefix));
        loop {
            let r: Range = t.call("kv/range", json!({ "key": key })).await?;
            let (count, rev) = match r.kvs.first() {
                Some(kv) => (
                    String::from_utf8(B64.decode(&kv.value)?)?.parse::<u64>()?,
                    int(&kv.mod_revision)?,
                ),
                None => (0, 0),
            };
            if count >= RATE_PER_SEC {
                return Ok(Sample::Refused {
                    check_us: us_since(t0),
                });
            }
            let txn: Txn = t
                .call(
                    "kv/txn",
                    json!({
                        "compare": [{"target": "MOD", "key": key,
                                     "mod_revision": rev.to_string(), "result": "EQUAL"}],
                        "success": [{"request_put": {"key": key,
                                     "value": b64(&(count + 1).to_string()),
                                     "lease": self.lease}}],
                    }),
                )
                .await?;
            if txn.succeeded {
                let us = us_since(t0);
                return Ok(Sample::Pair {
                    acquire_us: us,
                    pair_us: us,
                });
            }
        }
    }

    /// Revokes the session lease, which deletes whatever keys it still holds.
    pub(crate) async fn close(self) -> anyhow::Result<()> {
        let _: WithHeader = self
            .target
            .call("lease/revoke", json!({ "ID": self.lease }))
            .await?;
        Ok(())
    }
}
