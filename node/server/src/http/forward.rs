//! Server-side calls from one node's API to another's, for the dashboard: the page talks
//! only to the node that served it (same origin: no CORS, and it works behind a
//! Kubernetes Service whose members' own URLs the browser cannot reach).
//!
//! - `to_leader` (a layer over the whole API): a request that carries
//!   `x-ratequeue-forward` and would be answered with a 307 is sent to the leader by
//!   this node instead, with the same method, path, body and `Authorization`, and the
//!   leader's answer is returned. Never for acquire (clients follow the 307 themselves);
//!   never twice (the forwarded request does not carry the header, so a node that is no
//!   longer leader answers 307, which becomes a retryable 503 here).
//! - `member_health`: the cluster view's per-member status and readiness.
//!
//! The caller's key goes only where a client following the 307 would send it (the
//! members' advertised API URLs), and is never logged. With TLS, the answering node must
//! present member N's certificate (`node-N.ratequeue`, as on the peer port: the same
//! certificate serves both listeners), whatever host the URL names. Bounded: at most
//! `FORWARDS_IN_FLIGHT_MAX` calls at once, `FORWARD_TIMEOUT` each, answers of at most
//! `FORWARD_RESPONSE_BYTES_MAX`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ratequeue_api as api;
use ratequeue_api::ErrorCode;
use tokio::sync::Semaphore;

use super::error::BODY_BYTES_MAX;
use super::ApiError;
use crate::raft::types::NodeId;
use crate::tls::Tls;

/// Calls to other nodes in flight at once; past it the page gets a retryable 503.
pub const FORWARDS_IN_FLIGHT_MAX: usize = 64;
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer relayed.
pub const FORWARD_RESPONSE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Retry-After of a forward that found no serving leader.
const RETRY_MS: u64 = 500;

/// TLS clients kept, one per member id called; past it the map starts over.
const TLS_CLIENTS_MAX: usize = 64;

/// The TLS client of each member id called.
type TlsClients = Arc<parking_lot::Mutex<BTreeMap<NodeId, reqwest::Client>>>;

/// The HTTP client for calls to other members' APIs. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    plain: reqwest::Client,
    /// With TLS: one client per member id, each accepting only that member's certificate.
    tls: Option<(Tls, TlsClients)>,
    permits: Arc<Semaphore>,
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(FORWARD_TIMEOUT)
}

fn unavailable(message: impl Into<String>) -> Response {
    ApiError::new(ErrorCode::NoLeader, message)
        .retry(RETRY_MS)
        .into_response()
}

impl Upstream {
    pub fn new(tls: Option<Tls>) -> Result<Self, reqwest::Error> {
        Ok(Upstream {
            plain: builder().build()?,
            tls: tls.map(|t| (t, Arc::default())),
            permits: Arc::new(Semaphore::new(FORWARDS_IN_FLIGHT_MAX)),
        })
    }

    /// The client that reaches member `id` (with TLS, one that verifies its identity).
    fn client(&self, id: Option<NodeId>) -> Option<reqwest::Client> {
        let Some((tls, clients)) = &self.tls else {
            return Some(self.plain.clone());
        };
        let id = id?;
        let mut clients = clients.lock();
        if let Some(c) = clients.get(&id) {
            return Some(c.clone());
        }
        let config = tls.peer_client_config(id).ok()?;
        let client = builder().use_preconfigured_tls(config).build().ok()?;
        if clients.len() >= TLS_CLIENTS_MAX {
            clients.clear();
        }
        clients.insert(id, client.clone());
        Some(client)
    }

    /// Sends a request on to `url` and relays the answer (status, body, the headers a
    /// caller acts on).
    async fn relay(
        &self,
        leader: Option<NodeId>,
        method: Method,
        url: &str,
        auth: Option<HeaderValue>,
        content_type: Option<HeaderValue>,
        body: Bytes,
    ) -> Response {
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            return unavailable("this node is forwarding too many requests to the leader; retry");
        };
        let Some(client) = self.client(leader) else {
            return unavailable("no TLS client for the leader; retry");
        };
        let mut req = client.request(method, url).body(body);
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        if let Some(c) = content_type {
            req = req.header(CONTENT_TYPE, c);
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                // The URL is a member's advertised API URL; the error never holds the key.
                tracing::debug!(error = %e, "forward to the leader failed");
                return unavailable("the leader did not answer; retry shortly");
            }
        };
        let status = resp.status();
        if status == StatusCode::TEMPORARY_REDIRECT {
            return unavailable("leadership moved while forwarding; retry");
        }
        let mut out = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) if out.len() + c.len() <= FORWARD_RESPONSE_BYTES_MAX => {
                    out.extend_from_slice(&c);
                }
                Ok(Some(_)) => {
                    return ApiError::new(
                        ErrorCode::Internal,
                        "the leader's answer is too large to forward",
                    )
                    .into_response()
                }
                Ok(None) => break,
                Err(_) => return unavailable("the leader's answer was cut off; retry"),
            }
        }
        let mut r = (status, out).into_response();
        for name in [CONTENT_TYPE, RETRY_AFTER] {
            if let Some(v) = resp.headers().get(&name) {
                r.headers_mut().insert(name, v.clone());
            }
        }
        if let Some(v) = resp.headers().get(api::LEADER_HEADER) {
            r.headers_mut().insert(api::LEADER_HEADER, v.clone());
        }
        r
    }

    /// A member's own `GET /v1/cluster/status` and `/readyz`: `(ready, detail, status)`.
    pub async fn member_health(
        &self,
        id: NodeId,
        base: &str,
        auth: Option<HeaderValue>,
        timeout: Duration,
    ) -> (bool, String, Option<api::ClusterStatus>) {
        let Some(client) = self.client(Some(id)) else {
            return (false, "no TLS client for this member".to_owned(), None);
        };
        let base = base.trim_end_matches('/');
        let mut status_req = client
            .get(format!("{base}/v1/cluster/status"))
            .timeout(timeout);
        if let Some(a) = auth {
            status_req = status_req.header(AUTHORIZATION, a);
        }
        let ready_req = client.get(format!("{base}/readyz")).timeout(timeout);
        let (status, ready) = futures::join!(
            async {
                let r = status_req.send().await.ok()?;
                if !r.status().is_success() {
                    return None;
                }
                r.json::<api::ClusterStatus>().await.ok()
            },
            async {
                match ready_req.send().await {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        let text = r.text().await.unwrap_or_default();
                        (ok, text.trim().chars().take(200).collect::<String>())
                    }
                    Err(e) if e.is_timeout() => (false, "did not answer in time".to_owned()),
                    Err(_) => (false, "unreachable".to_owned()),
                }
            }
        );
        (ready.0, ready.1, status)
    }
}

/// The layer: forwards what this node would redirect, when the request asks for it.
pub async fn to_leader(State(up): State<Upstream>, req: Request, next: Next) -> Response {
    if !req.headers().contains_key(api::FORWARD_HEADER) || req.uri().path().ends_with("/acquire") {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_BYTES_MAX).await else {
        return ApiError::new(ErrorCode::PayloadTooLarge, "request body too large").into_response();
    };
    let method = parts.method.clone();
    let auth = parts.headers.get(AUTHORIZATION).cloned();
    let content_type = parts.headers.get(CONTENT_TYPE).cloned();
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    if resp.status() != StatusCode::TEMPORARY_REDIRECT {
        return resp;
    }
    let Some(location) = resp
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned)
    else {
        return resp;
    };
    let leader = resp
        .headers()
        .get(api::LEADER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<NodeId>().ok());
    up.relay(leader, method, &location, auth, content_type, bytes)
        .await
}
