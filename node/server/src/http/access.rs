//! The request span and the access log: one span per HTTP request and one access log
//! line when it is answered.
//!
//! The span `request` (target `ratequeue::access`, level info) carries `method`, `path`
//! (never the query), `source` (the peer address), `key` (the key's name, or
//! `<admin-token>`; set by `auth::authenticate`), `resource`, `lane`, `lease_id` and
//! `request_id` (set by the lease handlers through `record`), then `status` and
//! `duration_ms`; every log line inside the request carries them. The access line is
//! an info event of the same target inside the span. Both are on with `--access-log`
//! (the filter directive `ratequeue::access=info`) and off by default, because at tens
//! of thousands of requests a second a line each costs more than the request. No
//! token, header or body is ever recorded.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::field::Empty;
use tracing::Instrument as _;

use crate::listener::Source;

/// The tracing target of the request span and the access log.
pub const TARGET: &str = "ratequeue::access";

pub(super) async fn access(req: Request, next: Next) -> Response {
    let source = req
        .extensions()
        .get::<Source>()
        .map_or_else(|| "unknown".to_owned(), |s| s.0.to_string());
    let span = tracing::info_span!(
        target: "ratequeue::access",
        "request",
        method = %req.method(),
        path = req.uri().path(),
        source,
        key = Empty,
        resource = Empty,
        lane = Empty,
        lease_id = Empty,
        request_id = Empty,
        status = Empty,
        duration_ms = Empty,
    );
    let start = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    span.record("status", response.status().as_u16());
    span.record("duration_ms", duration_ms);
    span.in_scope(|| tracing::info!(target: "ratequeue::access", "access"));
    response
}

/// Records `value` as the field `name` of the current request span (a no-op when the
/// span is off).
pub fn record(name: &'static str, value: &str) {
    tracing::Span::current().record(name, value);
}
