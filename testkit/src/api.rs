//! The cluster's HTTP side as the kit sees it: node status, which node leads, waiting
//! for a serving leader, requests that follow redirects, and membership changes.

use std::time::Duration;

use anyhow::{bail, Context as _};
use ratequeue_api as api;
use reqwest::Method;
use serde_json::Value;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::wait::poll_until;

/// Redirects followed by `request`.
pub const HOPS_MAX: usize = 5;
/// Timeout of one status call (a paused or cut-off node must not stall a wait).
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of one request hop by default.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a membership change may take (the server waits up to 60 s itself).
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(90);
/// Pause between two attempts of an admin call that got no definite answer.
const ADMIN_RETRY: Duration = Duration::from_millis(300);

impl Cluster {
    /// Node `id`'s `/v1/cluster/status`, or `None` if it does not answer.
    pub async fn status(&self, id: u64) -> Option<api::ClusterStatus> {
        let r = self
            .http
            .get(format!("{}/v1/cluster/status", self.url(id)))
            .bearer_auth(&self.config.admin_token)
            .timeout(STATUS_TIMEOUT)
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    /// Running members that are not paused: the nodes that can answer.
    fn answering(&self) -> Vec<u64> {
        self.members
            .iter()
            .copied()
            .filter(|id| self.is_running(*id) && !self.is_paused(*id))
            .collect()
    }

    /// Whether `id` answers a leader-only read itself (not with a redirect or 503).
    async fn serves(&self, id: u64) -> bool {
        let r = self
            .http
            .get(format!("{}/v1/resources", self.url(id)))
            .bearer_auth(&self.config.admin_token)
            .timeout(STATUS_TIMEOUT)
            .send()
            .await;
        r.is_ok_and(|r| r.status().is_success())
    }

    /// One look, no waiting: the answering member that says it leads with the highest
    /// term. (It may not serve yet; see `serving_leader`.)
    pub async fn leader(&self) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None;
        for id in self.answering() {
            if let Some(s) = self.status(id).await {
                if s.role == api::NodeRole::Leader && best.is_none_or(|(t, _)| s.term > t) {
                    best = Some((s.term, s.id));
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// One look: `leader()`, if it answers a leader-only read itself.
    pub async fn serving_leader(&self) -> Option<u64> {
        let l = self.leader().await?;
        self.serves(l).await.then_some(l)
    }

    /// One look: every answering member names the same leader and knows its URL, and
    /// that leader serves. This is what clients of any node can rely on.
    pub async fn agreed_leader(&self) -> Option<u64> {
        let mut leader = None;
        for id in self.answering() {
            let s = self.status(id).await?;
            let l = s.leader_id?;
            s.leader_url.as_ref()?;
            if leader.is_some_and(|x| x != l) {
                return None;
            }
            leader = Some(l);
        }
        let l = leader?;
        self.serves(l).await.then_some(l)
    }

    /// Waits (up to the config's `leader_timeout`) for an agreed, serving leader.
    pub async fn wait_leader(&self) -> anyhow::Result<u64> {
        self.wait_leader_within(self.config.leader_timeout).await
    }

    pub async fn wait_leader_within(&self, timeout: Duration) -> anyhow::Result<u64> {
        poll_until(timeout, "an agreed, serving leader", || {
            self.agreed_leader()
        })
        .await
    }

    /// Waits for some member that leads and serves, whether or not every member knows
    /// it yet (under faults, a cut-off node may never agree).
    pub async fn wait_serving_leader(&self, timeout: Duration) -> anyhow::Result<u64> {
        poll_until(timeout, "a serving leader", || self.serving_leader()).await
    }

    /// A request to node `id`, following 307s by hand (method and body kept): the final
    /// status and body (JSON, else the text as a JSON string). Transport errors fail.
    pub async fn request(
        &self,
        id: u64,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: &str,
    ) -> anyhow::Result<(u16, Value)> {
        self.request_within(id, method, path, body, token, REQUEST_TIMEOUT)
            .await
    }

    /// `request` with a per-hop timeout.
    pub async fn request_within(
        &self,
        id: u64,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: &str,
        timeout: Duration,
    ) -> anyhow::Result<(u16, Value)> {
        let mut url = format!("{}{}", self.url(id), path);
        for _ in 0..=HOPS_MAX {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token)
                .timeout(timeout);
            if let Some(b) = body {
                req = req.json(b);
            }
            let r = req
                .send()
                .await
                .with_context(|| format!("{method} {url}"))?;
            let status = r.status().as_u16();
            if status == 307 {
                url = r
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .context("307 without a location")?
                    .to_owned();
                continue;
            }
            let text = r.text().await?;
            let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return Ok((status, v));
        }
        bail!("{method} {path}: more than {HOPS_MAX} redirects")
    }

    /// An admin request to the leader, retried (bounded) until it is answered
    /// definitely: 2xx, or `member_not_found` (a removal already made).
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let timeout = self.config.admin_timeout;
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no leader");
        while Instant::now() < deadline {
            if let Some(l) = self.leader().await {
                let token = self.config.admin_token.clone();
                match self
                    .request_within(l, method.clone(), path, body, &token, timeout)
                    .await
                {
                    Ok((s, v)) if (200..300).contains(&s) => return Ok(v),
                    Ok((_, v)) if v["error"]["code"] == "member_not_found" => return Ok(v),
                    Ok((s, v)) => last = format!("{s} {v}"),
                    Err(e) => last = format!("{e:#}"),
                }
            }
            tokio::time::sleep(ADMIN_RETRY).await;
        }
        bail!("{method} {path}: gave up: {last}")
    }

    /// Creates or replaces a resource (admin, through the leader).
    pub async fn put_resource(&self, name: &str, spec: &Value) -> anyhow::Result<()> {
        self.admin(Method::PUT, &format!("/v1/resources/{name}"), Some(spec))
            .await
            .map(drop)
    }

    /// Starts `id` empty (killing and wiping whatever ran as `id` before) and adds it
    /// as a voter: learner, catch up, promote. It becomes an expected member.
    pub async fn add_member(&mut self, id: u64) -> anyhow::Result<()> {
        self.kill(id);
        self.wipe(id, false)?;
        self.spawn(id)?;
        let body = serde_json::to_value(api::AddMember {
            id,
            peer_addr: self.peer_addr(id),
            api_url: self.url(id),
            voter: true,
        })?;
        self.admin(Method::POST, "/v1/cluster/members", Some(&body))
            .await?;
        self.add_to_members(id);
        Ok(())
    }

    /// Removes `id` from the membership, then kills it and deletes its data.
    pub async fn remove_member(&mut self, id: u64) -> anyhow::Result<()> {
        self.admin(Method::DELETE, &format!("/v1/cluster/members/{id}"), None)
            .await?;
        self.remove_from_members(id);
        self.kill(id);
        self.wipe(id, false)
    }

    /// Waits until node `id`'s process answers `/healthz` (it may not know a leader).
    pub async fn wait_up(&self, id: u64, timeout: Duration) -> anyhow::Result<()> {
        let url = format!("{}/healthz", self.url(id));
        poll_until(
            timeout,
            &format!("node {id} to answer /healthz"),
            || async {
                let r = self.http.get(&url).timeout(STATUS_TIMEOUT).send().await;
                r.is_ok_and(|r| r.status().is_success()).then_some(())
            },
        )
        .await
    }

    /// The cluster as JSON, the shape `ratequeue dev --ephemeral --json` prints:
    /// `{"nodes":[{"id","api_url","peer_addr","pid","data_dir","log","running",
    /// "paused","member"}],"admin_token","leader_id","dir"}` with `leader_id` as given.
    pub fn describe(&self, leader_id: Option<u64>) -> Value {
        let nodes: Vec<Value> = self
            .ids()
            .into_iter()
            .map(|id| {
                serde_json::json!({
                    "id": id,
                    "api_url": self.url(id),
                    "peer_addr": self.peer_addr(id),
                    "pid": self.pid(id),
                    "data_dir": self.data_dir(id),
                    "log": self.log_path(id),
                    "running": self.is_running(id),
                    "paused": self.is_paused(id),
                    "member": self.members.contains(&id),
                })
            })
            .collect();
        let mut v = serde_json::json!({
            "nodes": nodes,
            "admin_token": self.config.admin_token,
            "leader_id": leader_id,
            "dir": self.dir,
        });
        if let Some(pki) = self.pki() {
            let mut tls = serde_json::json!({"ca_file": pki.ca_file()});
            if let Ok((cert, key)) = pki.client_files() {
                tls["client_cert"] = serde_json::json!(cert);
                tls["client_key"] = serde_json::json!(key);
            }
            v["tls"] = tls;
        }
        v
    }
}
