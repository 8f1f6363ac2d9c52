//! The HTTP shell: which node to ask, following 307 redirects by hand, and driving the
//! retry policy (`retry.rs`) with real sleeps.
//!
//! Owns: `Nodes` (node URLs and the cached leader) and `Transport::call`. Must never
//! decide what a failure means (that is `error.rs` and `retry.rs`).
//!
//! Why redirects by hand: reqwest drops `Authorization` on a redirect to another origin
//! (every node is its own origin), and would turn some redirects into GETs. So the
//! client runs with `redirect::Policy::none()` and re-sends the same method, body and
//! token to `Location`; the base URL the redirect named becomes the cached leader.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::Method;

use crate::config::{Timing, TlsFiles};
use crate::error::{classify_response, Error, Verdict};
use crate::retry::{
    classify_transport, Decision, Failure, Idempotency, RetryState, TransportClass,
};

/// The cluster's node URLs and the leader as last seen. Shared by every call of a
/// client; a lost race between two updates costs at most one redirect.
#[derive(Debug)]
pub(crate) struct Nodes {
    urls: Vec<String>,
    state: Mutex<NodesState>,
}

#[derive(Debug)]
struct NodesState {
    /// Next configured node to ask when no leader is known. Starts at a random node so
    /// that many clients do not all hit the first URL.
    cursor: usize,
    leader: Option<String>,
}

impl Nodes {
    pub(crate) fn new(urls: Vec<String>) -> Self {
        let cursor = if urls.is_empty() {
            0
        } else {
            rand::random::<usize>() % urls.len()
        };
        Nodes {
            urls,
            state: Mutex::new(NodesState {
                cursor,
                leader: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, NodesState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn urls(&self) -> &[String] {
        &self.urls
    }

    pub(crate) fn leader(&self) -> Option<String> {
        self.state().leader.clone()
    }

    /// The leader if known and not excluded, else the next configured node not excluded.
    pub(crate) fn pick(&self, exclude: &HashSet<String>) -> String {
        let s = self.state();
        if let Some(l) = s.leader.as_ref().filter(|l| !exclude.contains(*l)) {
            return l.clone();
        }
        let n = self.urls.len();
        (0..n)
            .map(|i| &self.urls[(s.cursor + i) % n])
            .find(|u| !exclude.contains(*u))
            .unwrap_or(&self.urls[s.cursor % n])
            .clone()
    }

    /// Whether some node (configured or the cached leader) is not in `exclude`.
    pub(crate) fn has_untried(&self, exclude: &HashSet<String>) -> bool {
        let s = self.state();
        self.urls.iter().any(|u| !exclude.contains(u))
            || s.leader.as_ref().is_some_and(|l| !exclude.contains(l))
    }

    pub(crate) fn set_leader(&self, base: &str) {
        self.state().leader = Some(base.to_owned());
    }

    /// `base` did not answer or knows no leader: forget it as the leader and move the
    /// rotation past it.
    pub(crate) fn demote(&self, base: &str) {
        let mut s = self.state();
        if s.leader.as_deref() == Some(base) {
            s.leader = None;
        }
        let n = self.urls.len();
        if n > 0 && self.urls[s.cursor % n] == base {
            s.cursor = (s.cursor + 1) % n;
        }
    }

    /// A node knows no leader (503): the cached leader, whoever it is, is stale.
    pub(crate) fn leaderless(&self, base: &str) {
        self.state().leader = None;
        self.demote(base);
    }
}

/// The node base URL of `url`, a request for `path`: what precedes `path` (so a base
/// with a path prefix such as `http://lb/rq` survives), else `scheme://host:port`.
pub(crate) fn base_of(url: &str, path: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    let path_only = path.split('?').next().unwrap_or(path);
    if let Some(b) = no_query.strip_suffix(path_only) {
        return b.trim_end_matches('/').to_owned();
    }
    match reqwest::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => url.to_owned(),
    }
}

/// One attempt's body and timeout, chosen when the attempt starts.
pub(crate) struct Attempt {
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// One logical call.
pub(crate) struct CallSpec<'a> {
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path: String,
    /// Builds the attempt started at the given instant (an acquire asks only for the
    /// wait that remains).
    pub attempt: Box<dyn FnMut(Instant) -> Attempt + Send + 'a>,
    pub idempotency: Idempotency,
    /// Retrying stops when the next sleep would pass this instant.
    pub deadline: Instant,
    /// Named in `Error::Ambiguous`.
    pub request_id: Option<String>,
    /// Only the leader answers it with 2xx (so the answering node is the leader).
    pub leader_only: bool,
}

/// A definite answer: 2xx or an error status that is not retried.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub retry_after: Option<String>,
    /// Whether an earlier attempt may have been applied (a `DELETE` answered 404 after
    /// such an attempt probably deleted it itself).
    pub ambiguous_before: bool,
}

impl Reply {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The 2xx body as `T`, else the error answer.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        self.ok()?;
        serde_json::from_slice(&self.body).map_err(|e| {
            let text: String = String::from_utf8_lossy(&self.body)
                .chars()
                .take(200)
                .collect();
            Error::Protocol(format!(
                "cannot decode a {} answer ({e}): {text}",
                self.status
            ))
        })
    }

    /// Ok for 2xx, else the API error it carries.
    pub(crate) fn ok(&self) -> Result<(), Error> {
        if self.is_success() {
            Ok(())
        } else {
            Err(Error::Api(crate::error::api_error(
                self.status,
                &self.body,
                self.retry_after.as_deref(),
            )))
        }
    }
}

#[derive(Debug)]
pub(crate) struct Transport {
    pub http: reqwest::Client,
    pub nodes: Nodes,
    api_key: Option<HeaderValue>,
    pub timing: Timing,
}

impl Transport {
    pub(crate) fn new(
        urls: Vec<String>,
        api_key: Option<String>,
        timing: Timing,
        tls: &TlsFiles,
    ) -> Result<Self, Error> {
        timing.validate()?;
        let api_key = match api_key {
            Some(k) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| {
                    Error::InvalidArgument("API key is not a valid header value".into())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let http = with_tls(reqwest::Client::builder(), tls)?
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timing.connect_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot build the HTTP client: {e}")))?;
        Ok(Transport {
            http,
            nodes: Nodes::new(urls),
            api_key,
            timing,
        })
    }

    fn request(&self, method: &Method, url: &str, attempt: &Attempt) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method.clone(), url)
            .timeout(attempt.timeout);
        if let Some(k) = &self.api_key {
            req = req.header(reqwest::header::AUTHORIZATION, k.clone());
        }
        if let Some(b) = &attempt.body {
            req = req.header(CONTENT_TYPE, "application/json").body(b.clone());
        }
        req
    }

    /// Sends one request to exactly `url`, no redirects or retries (`rqctl status` asks
    /// each member for its own view).
    pub(crate) async fn send_once(&self, url: &str, timeout: Duration) -> Result<Reply, Error> {
        let attempt = Attempt {
            body: None,
            timeout,
        };
        let resp = self
            .request(&Method::GET, url, &attempt)
            .send()
            .await
            .map_err(|e| Error::Unavailable {
                message: format!("{url}: {e}"),
            })?;
        let status = resp.status().as_u16();
        let retry_after = header_string(resp.headers().get(RETRY_AFTER));
        let body = resp
            .bytes()
            .await
            .map_err(|e| Error::Unavailable {
                message: format!("{url}: {e}"),
            })?
            .to_vec();
        Ok(Reply {
            status,
            body,
            retry_after,
            ambiguous_before: false,
        })
    }

    /// Runs a call to completion: a definite reply, or the error the retry policy gives.
    pub(crate) async fn call(&self, mut spec: CallSpec<'_>) -> Result<Reply, Error> {
        let mut retry = RetryState::new(
            &self.timing,
            spec.idempotency,
            spec.deadline,
            spec.request_id.clone(),
        );
        // Nodes that refused a connection since the last backoff.
        let mut refused: HashSet<String> = HashSet::new();
        loop {
            let first = self.nodes.pick(&refused);
            let attempt = (spec.attempt)(Instant::now());
            let (failure, base, redirects) = match self
                .attempt(
                    &spec.method,
                    &spec.path,
                    spec.leader_only,
                    &attempt,
                    &first,
                    retry.ambiguous(),
                )
                .await
            {
                Ok(reply) => return Ok(reply),
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Failed(f, base, redirects)) => (f, base, redirects),
            };
            match &failure {
                Failure::Unreachable { .. } => {
                    if redirects == 0 {
                        refused.insert(base.clone());
                    }
                    self.nodes.demote(&base);
                }
                Failure::NotApplied(_) | Failure::RedirectLoop { .. } => {
                    self.nodes.leaderless(&base)
                }
                Failure::MaybeApplied { .. } => self.nodes.demote(&base),
            }
            // Another node may answer at once, but not when a follower just sent us to a
            // dead leader: followers keep naming it until an election, so back off.
            let fast = redirects == 0 && self.nodes.has_untried(&refused);
            let decision = retry.on_failure(failure, Instant::now(), fast, &mut rand::thread_rng());
            match decision {
                Decision::GiveUp(e) => return Err(e),
                Decision::Retry(delay) => {
                    if !delay.is_zero() {
                        refused.clear();
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
    }

    /// One attempt, following redirects. On failure: why, the node that failed, and how
    /// many redirects led there.
    async fn attempt(
        &self,
        method: &Method,
        path: &str,
        leader_only: bool,
        attempt: &Attempt,
        first: &str,
        ambiguous_before: bool,
    ) -> Result<Reply, AttemptError> {
        let mut base = first.to_owned();
        let mut url = format!("{base}{path}");
        let mut redirects = 0u32;
        loop {
            let resp = match self.request(method, &url, attempt).send().await {
                Ok(r) => r,
                Err(e) => {
                    let failure = match classify_transport(&e) {
                        TransportClass::NotSent => Failure::Unreachable {
                            node: base.clone(),
                            message: e.to_string(),
                        },
                        TransportClass::MaybeSent => Failure::MaybeApplied {
                            message: format!("no answer from {base}: {}", error_chain(&e)),
                        },
                        TransportClass::Fatal => {
                            return Err(AttemptError::Fatal(Error::InvalidArgument(format!(
                                "cannot build the request to {url}: {e}"
                            ))))
                        }
                    };
                    return Err(AttemptError::Failed(failure, base, redirects));
                }
            };
            let status = resp.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let next = header_string(resp.headers().get(LOCATION))
                    .and_then(|loc| reqwest::Url::parse(&url).ok()?.join(&loc).ok())
                    .filter(|u| matches!(u.scheme(), "http" | "https"));
                match next {
                    Some(next) if redirects < self.timing.redirects_max => {
                        url = next.to_string();
                        base = base_of(&url, path);
                        self.nodes.set_leader(&base);
                        redirects += 1;
                        continue;
                    }
                    _ => {
                        let message = format!(
                            "{} redirects from {first} without reaching a leader (last: {url})",
                            redirects + 1
                        );
                        return Err(AttemptError::Failed(
                            Failure::RedirectLoop { message },
                            base,
                            redirects,
                        ));
                    }
                }
            }
            let retry_after = header_string(resp.headers().get(RETRY_AFTER));
            let body = match resp.bytes().await {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    // The request arrived and the answer was cut: it may have applied.
                    let message = format!("answer from {base} cut short: {}", error_chain(&e));
                    return Err(AttemptError::Failed(
                        Failure::MaybeApplied { message },
                        base,
                        redirects,
                    ));
                }
            };
            let reply = Reply {
                status,
                body,
                retry_after,
                ambiguous_before,
            };
            return match classify_response(status, &reply.body, reply.retry_after.as_deref()) {
                Verdict::Success => {
                    if leader_only {
                        self.nodes.set_leader(&base);
                    }
                    Ok(reply)
                }
                Verdict::Fail(_) => Ok(reply),
                Verdict::RetryNotApplied(e) => Err(AttemptError::Failed(
                    Failure::NotApplied(e),
                    base,
                    redirects,
                )),
                Verdict::RetryMaybeApplied(e) => {
                    let message = format!("{base}: {e}");
                    Err(AttemptError::Failed(
                        Failure::MaybeApplied { message },
                        base,
                        redirects,
                    ))
                }
            };
        }
    }
}

/// How one attempt ended without a definite reply.
enum AttemptError {
    /// Never retried (the request cannot even be built).
    Fatal(Error),
    /// The failure, the node that failed, and how many redirects led there.
    Failed(Failure, String, u32),
}

fn header_string(v: Option<&HeaderValue>) -> Option<String> {
    v.and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// `e` and its sources, joined: reqwest's top-level message alone ("error sending
/// request") hides whether it was a timeout or a reset.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Applies `tls` to an HTTP client builder (rustls): the CA bundle replaces the system's
/// trust store; the client certificate is presented to nodes that ask for one. Reads the
/// files now, so that a wrong path fails when the client is built, naming the file.
pub(crate) fn with_tls(
    mut builder: reqwest::ClientBuilder,
    tls: &TlsFiles,
) -> Result<reqwest::ClientBuilder, Error> {
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| Error::InvalidArgument(format!("reading {}: {e}", path.display())))
    };
    builder = builder.use_rustls_tls();
    if let Some(path) = &tls.ca_file {
        let certs = reqwest::Certificate::from_pem_bundle(&read(path)?).map_err(|e| {
            Error::InvalidArgument(format!("{}: not a PEM CA bundle: {e}", path.display()))
        })?;
        if certs.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{}: no certificate in the CA bundle",
                path.display()
            )));
        }
        builder = builder.tls_built_in_root_certs(false);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                Error::InvalidArgument(format!(
                    "{} / {}: not a PEM certificate and key: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => {
            return Err(Error::InvalidArgument(
                "a client certificate needs both its certificate and its key file".into(),
            ))
        }
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_of_strips_the_request_path() {
        let p = "/v1/resources/x/acquire";
        assert_eq!(
            base_of("http://10.0.0.2:7700/v1/resources/x/acquire", p),
            "http://10.0.0.2:7700"
        );
        assert_eq!(
            base_of("http://lb/rq/v1/resources/x/acquire", p),
            "http://lb/rq"
        );
        assert_eq!(
            base_of(
                "http://h:1/v1/resources?stale=true",
                "/v1/resources?stale=true"
            ),
            "http://h:1"
        );
        // A Location with another path: keep the origin.
        assert_eq!(base_of("http://h:1/elsewhere", p), "http://h:1");
    }

    #[test]
    fn nodes_prefer_the_leader_and_rotate_past_failures() {
        let urls: Vec<String> = ["http://a", "http://b", "http://c"]
            .map(String::from)
            .to_vec();
        let nodes = Nodes::new(urls.clone());
        let none = HashSet::new();
        let first = nodes.pick(&none);
        assert!(urls.contains(&first));
        nodes.demote(&first);
        let second = nodes.pick(&none);
        assert_ne!(first, second);

        nodes.set_leader("http://leader");
        assert_eq!(nodes.pick(&none), "http://leader");
        let excl: HashSet<String> = ["http://leader".to_owned()].into();
        assert_ne!(nodes.pick(&excl), "http://leader");
        nodes.demote("http://leader");
        assert_eq!(nodes.leader(), None);

        nodes.set_leader("http://b");
        nodes.leaderless("http://c");
        assert_eq!(
            nodes.leader(),
            None,
            "a leaderless node makes the cached leader stale"
        );

        let all: HashSet<String> = urls.iter().cloned().collect();
        assert!(!nodes.has_untried(&all));
        assert!(urls.contains(&nodes.pick(&all)), "falls back to some node");
    }
}
