//! Authentication: who is calling, once per request, in the `authenticate` middleware.
//!
//! The bearer token (`Authorization: Bearer <token>`, the scheme in any case, RFC 7235)
//! is an admin token (`AdminTokens`, compared as digests in constant time) or an API
//! key, looked up by its SHA-256 in the applied state and refused once it has expired
//! in cluster time. A follower that does not know a token sends the request to the
//! leader (307) instead of refusing it: its applied state may lag a key just created.
//! The middleware then
//!
//! - throttles failed authentication per source IP address (a GCRA bucket of
//!   `AUTH_FAILURES_BURST` failures refilled one per `AUTH_FAILURE_INTERVAL`; a throttled
//!   source gets `429 auth_throttled` without its token being looked at) and logs each
//!   failure with the source address and the reason, never the token;
//! - holds the key's in-flight slot (`max_in_flight` requests per key on this node,
//!   `429 quota_exceeded` past it) until the response is ready; and
//! - hands the handler a `Caller`, whose rules (`ratequeue_core::scope`) say what it
//!   may see and do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use ratequeue_api::ErrorCode;
use ratequeue_core::{scope, Denied};
use sha2::{Digest, Sha256};

use super::leader::leader_error;
use super::ApiError;
use crate::listener::Source;
use crate::node::Node;

/// Failed authentications a source may make in a burst before it is throttled.
pub const AUTH_FAILURES_BURST: u32 = 10;
/// ...after which it may fail once per this interval.
pub const AUTH_FAILURE_INTERVAL: Duration = Duration::from_secs(1);
/// Source addresses whose failures are remembered (the map's bound).
pub const AUTH_SOURCES_MAX: usize = 10_000;

/// Who is calling (the request extension the `authenticate` middleware sets), with the
/// rules of `ratequeue_core::scope::Caller` through `Deref`.
#[derive(Clone, Debug)]
pub struct Caller(pub scope::Caller);

impl Deref for Caller {
    type Target = scope::Caller;
    fn deref(&self) -> &scope::Caller {
        &self.0
    }
}

/// A scope rule's refusal as the API's `403 forbidden`.
pub fn denied(d: Denied) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, d.to_string())
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Only routes behind `authenticate` take a `Caller`; without it, no access.
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "not authenticated"))
    }
}

/// Hex SHA-256 of an API key's text: the only form stored.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Why a request is not authenticated (logged; the client sees a generic message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Missing,
    Scheme,
    Unknown,
    Expired,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::Missing => "no Authorization header",
            Failure::Scheme => "not a Bearer token",
            Failure::Unknown => "unknown token",
            Failure::Expired => "expired key",
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is
/// case-insensitive (RFC 7235 §2.1).
fn bearer(headers: &HeaderMap) -> Result<&str, Failure> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or(Failure::Missing)?
        .to_str()
        .map_err(|_| Failure::Scheme)?
        .trim();
    let (scheme, token) = value.split_once([' ', '\t']).ok_or(Failure::Scheme)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Failure::Scheme);
    }
    Ok(token)
}

fn resolve(node: &Node, headers: &HeaderMap) -> Result<scope::Caller, Failure> {
    let token = bearer(headers)?;
    if node.admin_token.verify(token) {
        return Ok(scope::Caller::AdminToken);
    }
    let hash = key_hash(token);
    let key = node
        .applied
        .read()
        .state
        .key_by_hash(&hash)
        .cloned()
        .ok_or(Failure::Unknown)?;
    if key.expired(node.cluster_time_ms()) {
        return Err(Failure::Expired);
    }
    Ok(scope::Caller::Key(key))
}

/// Per-source failure buckets and per-key in-flight counts of one node.
#[derive(Default)]
pub struct AuthGuard {
    /// GCRA: the theoretical arrival time of each source's next failure.
    failures: Mutex<HashMap<IpAddr, Instant>>,
    in_flight: Mutex<HashMap<String, u32>>,
}

/// A key's place among its in-flight requests, given back on drop.
struct Slot {
    guard: Arc<AuthGuard>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.guard.in_flight.lock();
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// How long a source stays throttled, if it is.
fn throttled_for(tat: Instant, now: Instant) -> Option<Duration> {
    let allowance = AUTH_FAILURE_INTERVAL * AUTH_FAILURES_BURST;
    let debt = tat.saturating_duration_since(now);
    debt.checked_sub(allowance).filter(|d| !d.is_zero())
}

impl AuthGuard {
    fn throttled(&self, ip: IpAddr) -> Option<Duration> {
        let tat = *self.failures.lock().get(&ip)?;
        throttled_for(tat, Instant::now())
    }

    /// Counts a failure; returns whether the source is throttled from now on.
    fn failed(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut m = self.failures.lock();
        if !m.contains_key(&ip) && m.len() >= AUTH_SOURCES_MAX {
            m.retain(|_, tat| *tat > now);
            if m.len() >= AUTH_SOURCES_MAX {
                return false;
            }
        }
        let tat = m.entry(ip).or_insert(now);
        *tat = (*tat).max(now) + AUTH_FAILURE_INTERVAL;
        throttled_for(*tat, now).is_some()
    }

    fn enter(self: &Arc<Self>, caller: &scope::Caller) -> Result<Option<Slot>, ApiError> {
        let (Some(key), Some(max)) = (caller.key_name(), caller.in_flight_max()) else {
            return Ok(None);
        };
        let mut m = self.in_flight.lock();
        let n = m.entry(key.to_owned()).or_default();
        if *n >= max {
            return Err(ApiError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "key {key:?} has {max} requests in flight on this node (its max_in_flight)"
                ),
            )
            .retry(1_000));
        }
        *n += 1;
        Ok(Some(Slot {
            guard: self.clone(),
            key: key.to_owned(),
        }))
    }
}

/// The middleware in front of every authenticated route (see the module doc).
pub(super) async fn authenticate(
    State((node, guard)): State<(Arc<Node>, Arc<AuthGuard>)>,
    mut req: Request,
    next: Next,
) -> Response {
    let source = req.extensions().get::<Source>().map(|s| s.0);
    if let Some(wait) = source.and_then(|s| guard.throttled(s.ip())) {
        node.metrics.auth_throttled();
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        return ApiError::new(
            ErrorCode::AuthThrottled,
            "too many failed authentications from this address",
        )
        .retry(ms)
        .into_response();
    }
    let caller = match resolve(&node, req.headers()) {
        Ok(c) => c,
        // A follower's applied state may not have the key yet (created a moment ago on
        // the leader): the leader, whose state has every acknowledged key, decides.
        Err(Failure::Unknown) if !node.admission.is_serving() && node.leader().is_some() => {
            return leader_error(&node, req.uri());
        }
        Err(why) => {
            node.metrics.auth_failure();
            let throttled = source.is_some_and(|s| guard.failed(s.ip()));
            let source = source.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
            tracing::warn!(
                %source,
                reason = why.as_str(),
                method = %req.method(),
                path = req.uri().path(),
                throttled,
                "authentication failed"
            );
            let message = match why {
                Failure::Missing | Failure::Scheme => "missing bearer token",
                Failure::Unknown => "unknown token",
                Failure::Expired => "the key has expired",
            };
            return ApiError::new(ErrorCode::Unauthorized, message).into_response();
        }
    };
    let slot = match guard.enter(&caller) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    tracing::Span::current().record("key", caller.label());
    req.extensions_mut().insert(Caller(caller));
    let response = next.run(req).await;
    drop(slot);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        for (value, want) in [
            ("Bearer abc", Ok("abc")),
            ("bearer abc", Ok("abc")),
            ("BEARER  abc ", Ok("abc")),
            ("Basic abc", Err(Failure::Scheme)),
            ("Bearer", Err(Failure::Scheme)),
            ("Bearer   ", Err(Failure::Scheme)),
            ("Bearerabc", Err(Failure::Scheme)),
        ] {
            h.insert(AUTHORIZATION, value.parse().unwrap());
            assert_eq!(bearer(&h), want, "{value:?}");
        }
        assert_eq!(bearer(&HeaderMap::new()), Err(Failure::Missing));
    }

    #[test]
    fn a_source_is_throttled_after_its_burst_and_recovers() {
        let g = AuthGuard::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let mut throttled_at = None;
        for i in 0..AUTH_FAILURES_BURST + 2 {
            if g.failed(ip) {
                throttled_at.get_or_insert(i);
            }
        }
        assert_eq!(throttled_at, Some(AUTH_FAILURES_BURST));
        assert!(g.throttled(ip).is_some());
        assert!(g.throttled(other).is_none());
        let tat = *g.failures.lock().get(&ip).unwrap();
        assert!(throttled_for(tat, tat).is_none(), "paid off by then");
    }
}
