//! HTTP calls to the cluster, classified the Jepsen way.
//!
//! - `ok`: a 2xx answer.
//! - `fail` (certainly did not happen): the connection could not be made (nothing was
//!   sent), a 307 left after the last hop, `503 no_leader`/`shutting_down`, and every
//!   documented 4xx refusal (`would_block`, `wait_timeout`, `lease_expired`, …).
//! - `info` (may or may not have happened): a timeout or a reset after the request was
//!   sent, `504 commit_timeout`, a 5xx without a documented meaning.
//!
//! Connection pooling is off: every request opens its own connection, so "could not
//! connect" really means "nothing was sent", and a reused connection to a killed node
//! cannot turn a definite failure into an ambiguous one. Redirects are followed by
//! hand (method and body kept), at most `HOPS_MAX` times.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use reqwest::Method;
use serde_json::Value;

use crate::history::Type;

/// Redirects followed for one operation.
pub const HOPS_MAX: usize = 3;
/// Time to establish a connection (loopback: anything longer is a dead or paused host).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Where nodes live (the kit's addressing): node `id` listens on `127.A.B.id`, the
/// harness's clients use `127.A.B.200`.
pub use ratequeue_testkit::Block;

/// What one call came to.
#[derive(Clone, Debug)]
pub struct Answer {
    pub kind: Type,
    pub status: Option<u16>,
    pub body: Value,
    /// `"503 no_leader"`, `"timeout"`, `"connect: …"`; `None` on ok.
    pub error: Option<String>,
    /// The node that gave the last answer (or was last tried).
    pub node: u64,
}

impl Answer {
    pub fn code(&self) -> Option<&str> {
        self.body.get("error")?.get("code")?.as_str()
    }
}

/// Classifies an HTTP answer that is not a redirect to follow.
pub fn classify_status(status: u16, body: &Value) -> (Type, Option<String>) {
    let code = body
        .get("error")
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let error = || Some(format!("{status} {code}").trim().to_owned());
    match status {
        200..=299 => (Type::Ok, None),
        307 => (Type::Fail, Some("307 redirect not followed".into())),
        503 if code == "no_leader" || code == "shutting_down" => (Type::Fail, error()),
        400..=499 => (Type::Fail, error()),
        // 504 commit_timeout, 500 internal and anything unexpected: unknown outcome.
        _ => (Type::Info, error()),
    }
}

/// Classifies a transport error: nothing sent is `fail`, anything else `info`.
pub fn classify_error(e: &reqwest::Error) -> (Type, String) {
    if e.is_connect() {
        (Type::Fail, format!("connect: {}", root_cause(e)))
    } else if e.is_timeout() {
        (Type::Info, "timeout".to_owned())
    } else {
        (Type::Info, format!("io: {}", root_cause(e)))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The cluster's HTTP API as the harness's clients see it.
pub struct Api {
    http: reqwest::Client,
    pub block: Block,
    token: String,
    /// Nodes clients may talk to (the current members), kept by the nemesis.
    pub targets: Arc<RwLock<Vec<u64>>>,
}

impl Api {
    pub fn new(block: Block, token: &str, targets: Vec<u64>) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .connect_timeout(CONNECT_TIMEOUT)
            .local_address(IpAddr::V4(block.client_ip()))
            .build()?;
        Ok(Api {
            http,
            block,
            token: token.to_owned(),
            targets: Arc::new(RwLock::new(targets)),
        })
    }

    pub fn targets(&self) -> Vec<u64> {
        self.targets.read().clone()
    }

    /// Sends one request to `node`, following redirects; `timeout` covers each hop.
    pub async fn call(
        &self,
        node: u64,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Answer {
        let mut url = format!("{}{}", self.block.url(node), path);
        let mut node = node;
        for hop in 0..=HOPS_MAX {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.token)
                .timeout(timeout);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    let (kind, error) = classify_error(&e);
                    return Answer {
                        kind,
                        status: None,
                        body: Value::Null,
                        error: Some(error),
                        node,
                    };
                }
            };
            let status = resp.status().as_u16();
            if status == 307 && hop < HOPS_MAX {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if let Some(loc) = location {
                    node = self.block.node_of(&loc).unwrap_or(node);
                    url = loc;
                    continue;
                }
            }
            let text = match resp.text().await {
                Ok(t) => t,
                Err(e) => {
                    // The answer was cut off after the request was sent: only a 4xx
                    // status on its own says that nothing happened.
                    let kind = if (400..500).contains(&status) {
                        Type::Fail
                    } else {
                        Type::Info
                    };
                    let error = format!("{status} io: {}", root_cause(&e));
                    return Answer {
                        kind,
                        status: Some(status),
                        body: Value::Null,
                        error: Some(error),
                        node,
                    };
                }
            };
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            let (kind, error) = classify_status(status, &body);
            return Answer {
                kind,
                status: Some(status),
                body,
                error,
                node,
            };
        }
        Answer {
            kind: Type::Fail,
            status: Some(307),
            body: Value::Null,
            error: Some("redirect loop".into()),
            node,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_are_classified_the_jepsen_way() {
        let e = |code: &str| json!({"error": {"code": code, "message": ""}});
        assert_eq!(classify_status(200, &json!({})).0, Type::Ok);
        assert_eq!(classify_status(307, &Value::Null).0, Type::Fail);
        assert_eq!(classify_status(503, &e("no_leader")).0, Type::Fail);
        assert_eq!(classify_status(503, &e("shutting_down")).0, Type::Fail);
        assert_eq!(classify_status(429, &e("would_block")).0, Type::Fail);
        assert_eq!(classify_status(410, &e("lease_expired")).0, Type::Fail);
        assert_eq!(classify_status(504, &e("commit_timeout")).0, Type::Info);
        assert_eq!(classify_status(500, &e("internal")).0, Type::Info);
        assert_eq!(
            classify_status(503, &Value::Null).0,
            Type::Info,
            "an undocumented 503"
        );
        assert_eq!(
            classify_status(504, &e("commit_timeout")).1.as_deref(),
            Some("504 commit_timeout")
        );
    }

    #[tokio::test]
    async fn refused_connections_fail_and_silent_servers_are_info() {
        // Nobody listens on 127.250.251.9: connection refused, nothing sent.
        let api = Api::new(Block(250, 251), "t", vec![9]).unwrap();
        let a = api
            .call(9, Method::GET, "/healthz", None, Duration::from_millis(500))
            .await;
        assert_eq!(a.kind, Type::Fail, "{a:?}");
        // A listener that accepts and never answers: the request was sent.
        let l = tokio::net::TcpListener::bind("127.250.251.8:7700")
            .await
            .unwrap();
        let hold = tokio::spawn(async move {
            let (_s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let a = api
            .call(8, Method::GET, "/healthz", None, Duration::from_millis(300))
            .await;
        assert_eq!(a.kind, Type::Info, "{a:?}");
        hold.abort();
    }
}
