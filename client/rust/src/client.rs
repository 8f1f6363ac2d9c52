//! `Client`: the typed calls of the HTTP API (DESIGN.md §5).
//!
//! Owns: building a client, the raw lease calls (`acquire_lease`, `release_lease`,
//! `renew_lease`) and the admin calls. Every request body and answer is a type of
//! `ratequeue-api`; nothing here defines a wire struct. The friendly `acquire(…)`
//! builder and the self-renewing `Permit` live in `acquire.rs` and `permit.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratequeue_api as api;
use ratequeue_api::ErrorCode;
use reqwest::Method;
use serde::Serialize;

use crate::acquire::Acquire;
use crate::config::{self, check_lease_id, check_load, check_name, Timing, TlsFiles};
use crate::error::Error;
use crate::retry::Idempotency;
use crate::transport::{Attempt, CallSpec, Reply, Transport};

/// A handle on a ratequeue cluster. Cheap to clone (an `Arc`); clones share the
/// connection pool and the cached leader.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) t: Arc<Transport>,
    /// The label of this client's leases (`ClientBuilder::holder`, else
    /// `RATEQUEUE_HOLDER`), sent as `<label>@<host>:<pid>` with every acquire.
    holder_label: Option<Arc<str>>,
}

/// Builds a `Client`. Node URLs: those given, else `RATEQUEUE_URL` (comma-separated),
/// else `http://127.0.0.1:7700`. API key: the one given, else `RATEQUEUE_API_KEY`. TLS
/// (for `https://` URLs): the CA bundle and client certificate given, else
/// `RATEQUEUE_CA_FILE`, `RATEQUEUE_CLIENT_CERT` and `RATEQUEUE_CLIENT_KEY`, else the
/// system's trust store and no client certificate. Holder label: the one given, else
/// `RATEQUEUE_HOLDER`, else none (leases are then labelled `<host>:<pid>`).
#[derive(Clone, Debug, Default)]
pub struct ClientBuilder {
    urls: Vec<String>,
    api_key: Option<String>,
    holder_label: Option<String>,
    no_env: bool,
    timing: Timing,
    tls: Option<TlsFiles>,
}

impl ClientBuilder {
    /// Adds node URLs (each may itself be comma-separated).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    pub fn urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.urls.extend(urls.into_iter().map(Into::into));
        self
    }

    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// A label for this client's leases (`celery`, `nightly-export`): each acquire sends
    /// `holder` = `<label>@<host>:<pid>`, which the dashboard's lease list shows. 1–128
    /// characters of printable ASCII (checked by `build`); cut, if need be, so that host
    /// and pid fit in the server's 128. `Acquire::holder` overrides it per acquire.
    pub fn holder(mut self, label: impl Into<String>) -> Self {
        self.holder_label = Some(label.into());
        self
    }

    /// Do not fall back to `RATEQUEUE_URL` / `RATEQUEUE_API_KEY` / `RATEQUEUE_HOLDER`.
    pub fn ignore_env(mut self) -> Self {
        self.no_env = true;
        self
    }

    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Trust only the CAs in this PEM bundle for `https://` nodes.
    pub fn ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls.get_or_insert_with(TlsFiles::default).ca_file = Some(path.into());
        self
    }

    /// Present this client certificate and key (PEM files) to nodes that ask for one.
    pub fn client_cert(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        let tls = self.tls.get_or_insert_with(TlsFiles::default);
        tls.client_cert = Some(cert.into());
        tls.client_key = Some(key.into());
        self
    }

    /// All TLS settings at once (replacing any given before).
    pub fn tls(mut self, tls: TlsFiles) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn build(self) -> Result<Client, Error> {
        let urls = if !self.urls.is_empty() {
            config::parse_urls(&self.urls)?
        } else if self.no_env {
            config::parse_urls([config::DEFAULT_URL])?
        } else {
            config::urls_from_env()?
        };
        let api_key = match self.api_key {
            Some(k) => Some(k),
            None if self.no_env => None,
            None => config::api_key_from_env(),
        };
        let tls = match self.tls {
            Some(t) => t,
            None if self.no_env => TlsFiles::default(),
            None => TlsFiles::from_env(),
        };
        let holder_label = match self.holder_label {
            Some(l) => {
                config::check_holder_label(&l)?;
                Some(l)
            }
            None if self.no_env => None,
            None => config::holder_label_from_env()?,
        };
        Ok(Client {
            t: Arc::new(Transport::new(urls, api_key, self.timing, &tls)?),
            holder_label: holder_label.map(Arc::from),
        })
    }
}

/// A random request id: 128 bits as 32 hex characters.
pub fn new_request_id() -> String {
    let bits: u128 = rand::random();
    format!("{bits:032x}")
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(v).map_err(|e| Error::InvalidArgument(format!("cannot encode body: {e}")))
}

impl Client {
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client from `RATEQUEUE_URL` and `RATEQUEUE_API_KEY` alone.
    pub fn from_env() -> Result<Client, Error> {
        ClientBuilder::default().build()
    }

    /// A client of these nodes with this key (no environment fallback).
    pub fn new<I, S>(urls: I, api_key: impl Into<String>) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder::default()
            .urls(urls)
            .api_key(api_key)
            .ignore_env()
            .build()
    }

    /// The configured node URLs.
    pub fn urls(&self) -> &[String] {
        self.t.nodes.urls()
    }

    /// The leader's base URL as last seen (from a redirect or a leader's answer).
    pub fn leader_url(&self) -> Option<String> {
        self.t.nodes.leader()
    }

    pub fn timing(&self) -> &Timing {
        &self.t.timing
    }

    /// The label of this client's leases, if one was given (or `RATEQUEUE_HOLDER`).
    pub fn holder_label(&self) -> Option<&str> {
        self.holder_label.as_deref()
    }

    /// Starts an acquire: `client.acquire("openai").load(2000).priority(100).await?`.
    pub fn acquire(&self, resource: impl Into<String>) -> Acquire {
        Acquire::new(self.clone(), resource.into())
    }

    /// A call with a fixed body, retried for `Timing::retry_budget`.
    async fn simple(
        &self,
        method: Method,
        path: String,
        body: Option<Vec<u8>>,
        idempotency: Idempotency,
        timeout: Duration,
        leader_only: bool,
    ) -> Result<Reply, Error> {
        let budget = self.t.timing.retry_budget;
        let spec = CallSpec {
            method,
            path,
            attempt: Box::new(move |_| Attempt {
                body: body.clone(),
                timeout,
            }),
            idempotency,
            deadline: Instant::now() + budget,
            request_id: None,
            leader_only,
        };
        self.t.call(spec).await
    }

    async fn read(&self, path: String) -> Result<Reply, Error> {
        let t = &self.t.timing;
        self.simple(
            Method::GET,
            path,
            None,
            Idempotency::Idempotent,
            t.request_timeout,
            true,
        )
        .await
    }

    /// The raw acquire: one lease for `req`, retried (with one `request_id`, generated
    /// if `req` has none) across redirects, elections and ambiguous failures. Each retry
    /// asks only for the wait that remains. Also returns when the successful attempt was
    /// sent: the lease surely lives until then plus its TTL.
    pub(crate) async fn acquire_at(
        &self,
        resource: &str,
        mut req: api::AcquireRequest,
    ) -> Result<(api::Lease, Instant), Error> {
        check_name("resource", resource)?;
        if let Some(lane) = &req.lane {
            check_name("lane", lane)?;
        }
        if let Some(load) = req.load {
            check_load("load", load)?;
        }
        if let Some(ttl) = req.ttl_ms {
            if !(config::TTL_MS_MIN..=config::TTL_MS_MAX).contains(&ttl) {
                return Err(Error::InvalidArgument(format!(
                    "ttl_ms must be in {}..={}",
                    config::TTL_MS_MIN,
                    config::TTL_MS_MAX
                )));
            }
        }
        let request_id = req.request_id.clone().unwrap_or_else(new_request_id);
        if request_id.is_empty() || request_id.len() > config::REQUEST_ID_LEN_MAX {
            return Err(Error::InvalidArgument(format!(
                "request_id must be 1..={} bytes",
                config::REQUEST_ID_LEN_MAX
            )));
        }
        req.request_id = Some(request_id.clone());
        // `req.holder` is a label here (the builder's, checked), like the client's.
        let label = match req.holder.take() {
            Some(l) => {
                config::check_holder_label(&l)?;
                Some(l)
            }
            None => self.holder_label.as_deref().map(str::to_owned),
        };
        req.holder = Some(config::holder(
            label.as_deref(),
            config::host_name(),
            std::process::id(),
        ));
        let timing = &self.t.timing;
        let default_wait = u64::try_from(timing.wait_default.as_millis()).unwrap_or(u64::MAX);
        let wait_ms = req.wait_ms.unwrap_or(default_wait);
        if wait_ms > config::WAIT_MS_MAX {
            return Err(Error::InvalidArgument(format!(
                "wait_ms must be at most {}",
                config::WAIT_MS_MAX
            )));
        }
        let start = Instant::now();
        let wait_until = start + Duration::from_millis(wait_ms);
        let margin = timing.acquire_timeout_margin;
        // The wait_ms of the last attempt sent, and when it was sent (ms since start).
        let last_wait = AtomicU64::new(wait_ms);
        let last_sent = AtomicU64::new(0);
        let mut first = true;
        let spec = CallSpec {
            method: Method::POST,
            path: format!("/v1/resources/{resource}/acquire"),
            attempt: Box::new(|now: Instant| {
                let this_wait = if first || wait_ms == 0 {
                    wait_ms
                } else {
                    let left = wait_until.saturating_duration_since(now);
                    u64::try_from(left.as_millis())
                        .unwrap_or(u64::MAX)
                        .min(wait_ms)
                };
                first = false;
                last_wait.store(this_wait, Ordering::Relaxed);
                let since = u64::try_from(now.saturating_duration_since(start).as_millis());
                last_sent.store(since.unwrap_or(u64::MAX), Ordering::Relaxed);
                let body = api::AcquireRequest {
                    wait_ms: Some(this_wait),
                    ..req.clone()
                };
                Attempt {
                    body: serde_json::to_vec(&body).ok(),
                    // Must exceed the wait, or the client would cut a long poll short.
                    timeout: Duration::from_millis(this_wait) + margin,
                }
            }),
            idempotency: Idempotency::Idempotent,
            deadline: wait_until + timing.retry_budget,
            request_id: Some(request_id),
            leader_only: true,
        };
        let result = self.t.call(spec).await.and_then(Reply::json::<api::Lease>);
        let sent_at = start + Duration::from_millis(last_sent.load(Ordering::Relaxed));
        match result {
            Ok(lease) => Ok((lease, sent_at)),
            // Retries used the caller's whole wait and the last try, sent with no wait
            // left, found no room: to the caller that is a wait timeout.
            Err(Error::Api(mut e))
                if e.code == ErrorCode::WouldBlock
                    && wait_ms > 0
                    && last_wait.load(Ordering::Relaxed) == 0 =>
            {
                e.code = ErrorCode::WaitTimeout;
                Err(Error::Api(e))
            }
            Err(e) => Err(e),
        }
    }

    /// `POST /v1/resources/{name}/acquire`, retried with one `request_id` (generated if
    /// `req` has none). `req.holder` is a label, sent as `<label>@<host>:<pid>` (none:
    /// the client's label, see `ClientBuilder::holder`). Prefer `acquire(…)`, whose `Permit` renews and releases itself.
    pub async fn acquire_lease(
        &self,
        resource: &str,
        req: api::AcquireRequest,
    ) -> Result<api::Lease, Error> {
        self.acquire_at(resource, req).await.map(|(lease, _)| lease)
    }

    /// `POST /v1/leases/{id}/release` with `actual_load` (reserve, then settle),
    /// retried for `Timing::release_budget`.
    pub async fn release_lease(
        &self,
        lease_id: &str,
        actual_load: Option<u64>,
    ) -> Result<api::ReleaseResponse, Error> {
        let budget = self.t.timing.release_budget;
        self.release_until(lease_id, actual_load, Instant::now() + budget)
            .await
    }

    pub(crate) async fn release_until(
        &self,
        lease_id: &str,
        actual_load: Option<u64>,
        deadline: Instant,
    ) -> Result<api::ReleaseResponse, Error> {
        check_lease_id(lease_id)?;
        if let Some(a) = actual_load {
            check_load("actual_load", a)?;
        }
        let body = encode(&api::ReleaseRequest { actual_load })?;
        self.lease_call(lease_id, "release", body, deadline, false)
            .await
    }

    /// `POST /v1/leases/{lease_id}/{action}` with `body`: idempotent, answered by the
    /// leader, retried until `deadline`. With `clip`, each attempt's timeout is cut to
    /// the time left (at least 50 ms), so a hung node cannot hold the call past it.
    async fn lease_call<T: serde::de::DeserializeOwned>(
        &self,
        lease_id: &str,
        action: &str,
        body: Vec<u8>,
        deadline: Instant,
        clip: bool,
    ) -> Result<T, Error> {
        let timeout = self.t.timing.request_timeout;
        let spec = CallSpec {
            method: Method::POST,
            path: format!("/v1/leases/{lease_id}/{action}"),
            attempt: Box::new(move |now| Attempt {
                body: Some(body.clone()),
                timeout: if clip {
                    timeout
                        .min(deadline.saturating_duration_since(now))
                        .max(Duration::from_millis(50))
                } else {
                    timeout
                },
            }),
            idempotency: Idempotency::Idempotent,
            deadline,
            request_id: None,
            leader_only: true,
        };
        self.t.call(spec).await?.json()
    }

    /// `POST /v1/leases/{id}/renew` (optionally with a new TTL).
    pub async fn renew_lease(
        &self,
        lease_id: &str,
        ttl: Option<Duration>,
    ) -> Result<api::RenewResponse, Error> {
        let deadline = Instant::now() + self.t.timing.retry_budget;
        self.renew_until(lease_id, ttl, deadline).await
    }

    /// Reports what the provider answered the holder of `lease_id` (remaining budget,
    /// resets, a 429; docs/semantics.md, "Provider feedback"). Retried like a renew: a
    /// repeated report lowers to the same figures (a repeated 429 may lengthen a
    /// backoff once more).
    pub async fn report(
        &self,
        lease_id: &str,
        report: &api::ReportRequest,
    ) -> Result<api::ReportResponse, Error> {
        check_lease_id(lease_id)?;
        let body = encode(report)?;
        let deadline = Instant::now() + self.t.timing.retry_budget;
        self.lease_call(lease_id, "report", body, deadline, true)
            .await
    }

    /// Renew, retried until `deadline` (a permit passes the instant its lease may
    /// expire). Each attempt's timeout is cut to the time left, so a hung node cannot
    /// hold the renewal past the lease's life.
    pub(crate) async fn renew_until(
        &self,
        lease_id: &str,
        ttl: Option<Duration>,
        deadline: Instant,
    ) -> Result<api::RenewResponse, Error> {
        check_lease_id(lease_id)?;
        let ttl_ms = ttl
            .map(|d| config::duration_ms("ttl", d, config::TTL_MS_MIN, config::TTL_MS_MAX))
            .transpose()?;
        let body = encode(&api::RenewRequest { ttl_ms })?;
        self.lease_call(lease_id, "renew", body, deadline, true)
            .await
    }

    // ---- resources -------------------------------------------------------------------

    /// `PUT /v1/resources/{name}`: create or replace.
    pub async fn put_resource(
        &self,
        name: &str,
        spec: &api::ResourceSpec,
    ) -> Result<api::PutResourceResponse, Error> {
        check_name("resource", name)?;
        let t = &self.t.timing;
        let reply = self
            .simple(
                Method::PUT,
                format!("/v1/resources/{name}"),
                Some(encode(spec)?),
                Idempotency::Idempotent,
                t.request_timeout,
                true,
            )
            .await?;
        reply.json()
    }

    /// `GET /v1/resources/{name}` (linearizable, answered by the leader).
    pub async fn get_resource(&self, name: &str) -> Result<api::Resource, Error> {
        check_name("resource", name)?;
        self.read(format!("/v1/resources/{name}")).await?.json()
    }

    /// `GET /v1/resources/{name}/waiters/{request_id}`: where this client's acquire with
    /// `request_id` stands in the leader's queue. `Ok(None)` once it no longer waits
    /// (granted, refused, gone) or if it never queued (`404 waiter_not_found`).
    pub async fn waiter_progress(
        &self,
        resource: &str,
        request_id: &str,
    ) -> Result<Option<api::WaiterProgress>, Error> {
        check_name("resource", resource)?;
        if request_id.is_empty()
            || request_id.len() > 128
            || !request_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err(Error::InvalidArgument(
                "request_id: 1-128 characters of [A-Za-z0-9._:-] to be asked about".into(),
            ));
        }
        let answer = self
            .read(format!("/v1/resources/{resource}/waiters/{request_id}"))
            .await
            .and_then(|reply| reply.json());
        match answer {
            Ok(progress) => Ok(Some(progress)),
            Err(e) if e.code() == Some(ErrorCode::WaiterNotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/resources`.
    pub async fn list_resources(&self) -> Result<Vec<api::Resource>, Error> {
        let list: api::ResourceList = self.read("/v1/resources".into()).await?.json()?;
        Ok(list.resources)
    }

    /// `DELETE /v1/resources/{name}`. A `404` after an attempt that may have applied is
    /// taken as success (that attempt deleted it).
    pub async fn delete_resource(&self, name: &str) -> Result<(), Error> {
        check_name("resource", name)?;
        let t = &self.t.timing;
        let reply = self
            .simple(
                Method::DELETE,
                format!("/v1/resources/{name}"),
                None,
                Idempotency::Idempotent,
                t.request_timeout,
                true,
            )
            .await?;
        deleted(reply, ErrorCode::ResourceNotFound)
    }

    // ---- keys ------------------------------------------------------------------------

    /// `POST /v1/keys`. A name that exists is refused (`409 key_exists`), so an
    /// ambiguous attempt is not retried (`Error::Ambiguous`): had it been applied, its
    /// key text would be lost; `rotate_key` gives the key a new one.
    pub async fn create_key(&self, req: &api::CreateKeyRequest) -> Result<api::CreatedKey, Error> {
        check_name("key", &req.name)?;
        let t = &self.t.timing;
        self.simple(
            Method::POST,
            "/v1/keys".into(),
            Some(encode(req)?),
            Idempotency::NotIdempotent,
            t.request_timeout,
            true,
        )
        .await?
        .json()
    }

    /// `POST /v1/keys/{name}/rotate`: a new key text for `name` (same scope); the old
    /// text stops working. Retried after an ambiguous attempt: the text returned is the
    /// one that holds.
    pub async fn rotate_key(
        &self,
        name: &str,
        req: &api::RotateKeyRequest,
    ) -> Result<api::CreatedKey, Error> {
        check_name("key", name)?;
        let t = &self.t.timing;
        self.simple(
            Method::POST,
            format!("/v1/keys/{name}/rotate"),
            Some(encode(req)?),
            Idempotency::Idempotent,
            t.request_timeout,
            true,
        )
        .await?
        .json()
    }

    pub async fn list_keys(&self) -> Result<Vec<api::Key>, Error> {
        let list: api::KeyList = self.read("/v1/keys".into()).await?.json()?;
        Ok(list.keys)
    }

    pub async fn delete_key(&self, name: &str) -> Result<(), Error> {
        check_name("key", name)?;
        let t = &self.t.timing;
        let reply = self
            .simple(
                Method::DELETE,
                format!("/v1/keys/{name}"),
                None,
                Idempotency::Idempotent,
                t.request_timeout,
                true,
            )
            .await?;
        deleted(reply, ErrorCode::KeyNotFound)
    }

    // ---- cluster ---------------------------------------------------------------------

    /// `GET /v1/cluster/status` from the cached leader if known, else any node: that
    /// node's view (only the leader's view has replication lag).
    pub async fn cluster_status(&self) -> Result<api::ClusterStatus, Error> {
        let t = &self.t.timing;
        self.simple(
            Method::GET,
            "/v1/cluster/status".into(),
            None,
            Idempotency::Idempotent,
            t.request_timeout,
            false,
        )
        .await?
        .json()
    }

    /// `GET /v1/cluster/status` of exactly the node at `base_url`, once (no retry).
    pub async fn node_status(
        &self,
        base_url: &str,
        timeout: Duration,
    ) -> Result<api::ClusterStatus, Error> {
        let url = format!("{}/v1/cluster/status", base_url.trim_end_matches('/'));
        self.t.send_once(&url, timeout).await?.json()
    }

    /// `POST /v1/cluster/members`: adds a learner, waits for it to catch up, promotes
    /// it (unless `voter` is false). Not retried after an ambiguous attempt.
    pub async fn add_member(&self, req: &api::AddMember) -> Result<api::ClusterStatus, Error> {
        let t = &self.t.timing;
        self.simple(
            Method::POST,
            "/v1/cluster/members".into(),
            Some(encode(req)?),
            Idempotency::NotIdempotent,
            t.membership_timeout,
            true,
        )
        .await?
        .json()
    }

    /// `DELETE /v1/cluster/members/{id}`. Not retried after an ambiguous attempt.
    pub async fn remove_member(&self, id: u64) -> Result<api::ClusterStatus, Error> {
        let t = &self.t.timing;
        self.simple(
            Method::DELETE,
            format!("/v1/cluster/members/{id}"),
            None,
            Idempotency::NotIdempotent,
            t.membership_timeout,
            true,
        )
        .await?
        .json()
    }
}

fn deleted(reply: Reply, not_found: ErrorCode) -> Result<(), Error> {
    match reply.ok() {
        Ok(()) => Ok(()),
        Err(Error::Api(e)) if e.code == not_found && reply.ambiguous_before => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_random_hex() {
        let a = new_request_id();
        let b = new_request_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn builder_prefers_explicit_urls_and_key() {
        let c = Client::builder()
            .url("http://a:1,http://b:2/")
            .api_key("k")
            .build()
            .unwrap();
        assert_eq!(c.urls(), ["http://a:1", "http://b:2"]);
        assert!(Client::builder().url("nope").build().is_err());
        let c = Client::builder().ignore_env().build().unwrap();
        assert_eq!(c.urls(), [config::DEFAULT_URL]);
    }

    #[tokio::test]
    async fn bad_arguments_fail_before_any_io() {
        // Nothing listens on port 9: a request sent there would fail differently.
        let c = Client::new(["http://127.0.0.1:9"], "k").unwrap();
        let e = c
            .acquire_lease("bad/name", api::AcquireRequest::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        let req = api::AcquireRequest {
            ttl_ms: Some(5),
            ..Default::default()
        };
        assert!(matches!(
            c.acquire_lease("ok", req).await,
            Err(Error::InvalidArgument(_))
        ));
        let req = api::AcquireRequest {
            wait_ms: Some(u64::MAX),
            ..Default::default()
        };
        assert!(matches!(
            c.acquire_lease("ok", req).await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            c.release_lease("../x", None).await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            c.get_resource("").await,
            Err(Error::InvalidArgument(_))
        ));
    }
}
