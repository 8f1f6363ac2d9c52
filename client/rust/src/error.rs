//! The client's error type, and the classification of an HTTP answer into "done",
//! "definite failure" or "try again".
//!
//! Owns: `Error`, `ApiError`, `LeaseLost`, `classify_response`. Must never do I/O: it
//! reads status codes, headers' values and bodies that the transport already has.
//!
//! The one distinction a caller must be able to make is *definite* versus *ambiguous*:
//! a definite failure (`Error::Api`, `Error::Unavailable`, `Error::InvalidArgument`)
//! certainly did not take effect; an ambiguous one (`Error::Ambiguous`) may have. For an
//! acquire, ambiguity means a lease may exist under the request's `request_id` (retrying
//! with the same id returns it; otherwise it lapses after its TTL).

use std::fmt;
use std::time::Duration;

use ratequeue_api::{ErrorBody, ErrorCode, LimitKind};

/// An error answer of the API: `{"error": {"code", "message", "retry_after_ms"?}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status of the answer.
    pub status: u16,
    /// The API's error code. When the body was not the API's error format (a proxy in
    /// front of the cluster, say), the code is inferred from the status.
    pub code: ErrorCode,
    pub message: String,
    /// How long the server suggests waiting before trying again (`retry_after_ms`, else
    /// the `Retry-After` header). Set on `429` and `503` answers.
    pub retry_after: Option<Duration>,
    /// On a `429`: the binding limit `retry_after` was computed from.
    pub limit: Option<LimitKind>,
    /// When that limit is a rate limit: its index in the resource's `rate` list.
    pub bucket: Option<u32>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (HTTP {}", self.code, self.message, self.status)?;
        if let Some(d) = self.retry_after {
            write!(f, ", retry after {} ms", d.as_millis())?;
        }
        if let Some(l) = self.limit {
            let kind = match l {
                LimitKind::Concurrency => "concurrency",
                LimitKind::Request => "request",
                LimitKind::Load => "load",
                LimitKind::Provider => "provider",
            };
            write!(f, ", binding limit {kind}")?;
            if let Some(b) = self.bucket {
                write!(f, " rate[{b}]")?;
            }
        }
        f.write_str(")")
    }
}

/// Every error of the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cluster answered with a definite error, typed by its `ErrorCode` (a rejection
    /// such as `would_block`, `wait_timeout` or `queue_full`, a `404`, a `410
    /// lease_expired`, …). Transient codes (`no_leader`, `shutting_down`) appear here
    /// only once the retry budget is spent; they too mean "not applied".
    #[error("{0}")]
    Api(ApiError),
    /// No node could be reached (or every redirect led nowhere) for the whole retry
    /// budget. The request was certainly not applied.
    #[error("cluster unavailable: {message}")]
    Unavailable { message: String },
    /// The request may or may not have taken effect: a timeout or a reset after it was
    /// sent, or `504 commit_timeout`, with no later attempt settling the question. For an
    /// acquire, `request_id` names the request: retrying with it returns the lease if one
    /// was granted.
    #[error("ambiguous outcome (the request may or may not have been applied): {message}")]
    Ambiguous {
        message: String,
        request_id: Option<String>,
    },
    /// An argument was refused before any I/O (bad name, value out of range, bad URL).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The server's answer could not be understood (not the expected JSON).
    #[error("unexpected response: {0}")]
    Protocol(String),
}

impl Error {
    /// The API error code, if the cluster answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api(e) => Some(e.code.clone()),
            _ => None,
        }
    }

    /// The HTTP status, if the cluster answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(e) => Some(e.status),
            _ => None,
        }
    }

    /// The server's suggested wait before trying again, if it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api(e) => e.retry_after,
            _ => None,
        }
    }

    /// True when the request may have taken effect.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, Error::Ambiguous { .. })
    }

    /// True when the request certainly did not take effect.
    pub fn is_definite(&self) -> bool {
        !self.is_ambiguous()
    }

    /// True for the "no slot now" outcomes: `would_block`, `wait_timeout`, `queue_full`.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self.code(),
            Some(ErrorCode::WouldBlock | ErrorCode::WaitTimeout | ErrorCode::QueueFull)
        )
    }

    /// True when trying again later may succeed: rejections, an unavailable cluster,
    /// `no_leader`/`shutting_down`/`too_many_connections` after the budget, and
    /// ambiguous outcomes.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Api(e) => {
                self.is_rejection()
                    || matches!(
                        e.code,
                        ErrorCode::NoLeader
                            | ErrorCode::ShuttingDown
                            | ErrorCode::TooManyConnections
                            | ErrorCode::CommitTimeout
                    )
            }
            Error::Unavailable { .. } | Error::Ambiguous { .. } => true,
            Error::InvalidArgument(_) | Error::Protocol(_) => false,
        }
    }

    /// True when the answer says a lease is gone (`410 lease_expired`, `404
    /// lease_not_found`): its holder must stop.
    pub fn is_lease_gone(&self) -> bool {
        matches!(
            self.code(),
            Some(ErrorCode::LeaseExpired | ErrorCode::LeaseNotFound)
        )
    }
}

/// A permit's lease is gone, or presumed gone: its holder must stop using the resource.
#[derive(Clone, Debug, thiserror::Error)]
#[error("lease {lease_id} lost: {cause}")]
pub struct LeaseLost {
    pub lease_id: String,
    /// `Error::Api` with `lease_expired` (or `lease_not_found`) when the cluster said so;
    /// otherwise the error that kept every renewal from succeeding for a whole TTL.
    pub cause: Error,
}

impl LeaseLost {
    /// True when the loss is inferred (renewals failed for a whole TTL) rather than
    /// stated by the cluster. The lease may in fact survive an election (cluster time
    /// stands still while there is no leader), but the holder cannot know.
    pub fn is_presumed(&self) -> bool {
        !self.cause.is_lease_gone()
    }
}

/// What one HTTP answer means for the call that got it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 2xx.
    Success,
    /// A definite answer: return it.
    Fail(ApiError),
    /// The request was certainly not applied (`no_leader`, `shutting_down`, a proxy's
    /// 503): retry, and ask another node since this one knows no leader.
    RetryNotApplied(ApiError),
    /// The request may have been applied (`commit_timeout`, a proxy's 502/504): retry
    /// only if the call is idempotent.
    RetryMaybeApplied(ApiError),
}

/// The code a status implies when the body is not the API's error format.
pub(crate) fn code_for_status(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::InvalidRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::ResourceNotFound,
        410 => ErrorCode::LeaseExpired,
        413 => ErrorCode::PayloadTooLarge,
        422 => ErrorCode::LoadExceedsLimit,
        429 => ErrorCode::WouldBlock,
        503 => ErrorCode::NoLeader,
        504 => ErrorCode::CommitTimeout,
        _ => ErrorCode::Internal,
    }
}

/// Parses an error answer. `retry_after_header` is the raw `Retry-After` value.
pub(crate) fn api_error(status: u16, body: &[u8], retry_after_header: Option<&str>) -> ApiError {
    let header = retry_after_header
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => ApiError {
            status,
            code: b.error.code,
            message: b.error.message,
            retry_after: b.error.retry_after_ms.map(Duration::from_millis).or(header),
            limit: b.error.limit,
            bucket: b.error.bucket,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let message = if text.is_empty() {
                format!("HTTP {status} without a body")
            } else {
                let short: String = text.chars().take(200).collect();
                format!("HTTP {status}: {short}")
            };
            ApiError {
                status,
                code: code_for_status(status),
                message,
                retry_after: header,
                limit: None,
                bucket: None,
            }
        }
    }
}

/// Classifies a non-redirect answer.
pub(crate) fn classify_response(
    status: u16,
    body: &[u8],
    retry_after_header: Option<&str>,
) -> Verdict {
    if (200..300).contains(&status) {
        return Verdict::Success;
    }
    let parsed = serde_json::from_slice::<ErrorBody>(body).is_ok();
    let e = api_error(status, body, retry_after_header);
    if parsed {
        match e.code {
            ErrorCode::NoLeader | ErrorCode::ShuttingDown | ErrorCode::TooManyConnections => {
                return Verdict::RetryNotApplied(e)
            }
            ErrorCode::CommitTimeout => return Verdict::RetryMaybeApplied(e),
            // A newer server's code: nothing is known of it but its status.
            ErrorCode::Unknown(_) => {}
            _ => return Verdict::Fail(e),
        }
    }
    // Not our error format (something in front of the cluster answered), or a code this
    // client does not know: the status decides.
    match status {
        503 => Verdict::RetryNotApplied(e),
        502 | 504 => Verdict::RetryMaybeApplied(e),
        _ => Verdict::Fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: &str, retry_after_ms: Option<u64>) -> Vec<u8> {
        let mut detail = serde_json::json!({"code": code, "message": "m"});
        if let Some(ms) = retry_after_ms {
            detail["retry_after_ms"] = ms.into();
        }
        serde_json::to_vec(&serde_json::json!({ "error": detail })).unwrap()
    }

    #[test]
    fn a_rejection_names_its_binding_limit() {
        let b = serde_json::json!({"error": {"code": "would_block", "message": "m",
            "retry_after_ms": 40, "limit": "load", "bucket": 1}});
        let e = api_error(429, &serde_json::to_vec(&b).unwrap(), None);
        assert_eq!((e.limit, e.bucket), (Some(LimitKind::Load), Some(1)));
        assert_eq!(
            e.to_string(),
            "would_block: m (HTTP 429, retry after 40 ms, binding limit load rate[1])"
        );
        let e = api_error(429, &body("queue_full", Some(5)), None);
        assert_eq!((e.limit, e.bucket), (None, None));
    }

    #[test]
    fn success_is_2xx() {
        assert_eq!(classify_response(200, b"{}", None), Verdict::Success);
        assert_eq!(classify_response(201, b"{}", None), Verdict::Success);
        assert_eq!(classify_response(204, b"", None), Verdict::Success);
    }

    #[test]
    fn leaderless_codes_retry_as_not_applied() {
        for code in ["no_leader", "shutting_down", "too_many_connections"] {
            match classify_response(503, &body(code, Some(500)), Some("1")) {
                Verdict::RetryNotApplied(e) => {
                    assert_eq!(e.code.as_str(), code);
                    assert_eq!(e.retry_after, Some(Duration::from_millis(500)));
                }
                v => panic!("{code}: {v:?}"),
            }
        }
    }

    #[test]
    fn an_unknown_code_is_an_api_error_with_its_name_and_message() {
        match classify_response(422, &body("member_unverified_v2", None), None) {
            Verdict::Fail(e) => {
                assert_eq!(e.code, ErrorCode::Unknown("member_unverified_v2".into()));
                assert_eq!((e.status, e.message.as_str()), (422, "m"));
                assert_eq!(e.to_string(), "member_unverified_v2: m (HTTP 422)");
            }
            v => panic!("{v:?}"),
        }
        // Its status decides whether it is retried, as for an answer from a proxy.
        match classify_response(503, &body("overloaded", Some(250)), None) {
            Verdict::RetryNotApplied(e) => {
                assert_eq!(e.code.as_str(), "overloaded");
                assert_eq!(e.retry_after, Some(Duration::from_millis(250)));
            }
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            classify_response(504, &body("new_timeout", None), None),
            Verdict::RetryMaybeApplied(_)
        ));
    }

    #[test]
    fn commit_timeout_is_ambiguous() {
        match classify_response(504, &body("commit_timeout", None), None) {
            Verdict::RetryMaybeApplied(e) => assert_eq!(e.code, ErrorCode::CommitTimeout),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn definite_codes_fail_with_their_code_and_retry_after() {
        let cases = [
            (400, "invalid_request", ErrorCode::InvalidRequest),
            (401, "unauthorized", ErrorCode::Unauthorized),
            (403, "forbidden", ErrorCode::Forbidden),
            (404, "resource_not_found", ErrorCode::ResourceNotFound),
            (404, "lease_not_found", ErrorCode::LeaseNotFound),
            (410, "lease_expired", ErrorCode::LeaseExpired),
            (422, "load_exceeds_limit", ErrorCode::LoadExceedsLimit),
            (429, "would_block", ErrorCode::WouldBlock),
            (429, "wait_timeout", ErrorCode::WaitTimeout),
            (429, "queue_full", ErrorCode::QueueFull),
            (500, "internal", ErrorCode::Internal),
        ];
        for (status, code, want) in cases {
            match classify_response(status, &body(code, Some(1234)), None) {
                Verdict::Fail(e) => {
                    assert_eq!(e.code, want);
                    assert_eq!(e.status, status);
                    assert_eq!(e.retry_after, Some(Duration::from_millis(1234)));
                }
                v => panic!("{code}: {v:?}"),
            }
        }
    }

    #[test]
    fn retry_after_header_is_the_fallback() {
        let e = api_error(429, &body("queue_full", None), Some("3"));
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
        let e = api_error(
            429,
            &body("queue_full", None),
            Some("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(e.retry_after, None);
    }

    #[test]
    fn foreign_bodies_are_classified_by_status() {
        assert!(matches!(
            classify_response(503, b"<html>busy</html>", None),
            Verdict::RetryNotApplied(_)
        ));
        assert!(matches!(
            classify_response(502, b"bad gateway", None),
            Verdict::RetryMaybeApplied(_)
        ));
        assert!(matches!(
            classify_response(504, b"", None),
            Verdict::RetryMaybeApplied(_)
        ));
        match classify_response(404, b"not found", None) {
            Verdict::Fail(e) => {
                assert_eq!(e.code, ErrorCode::ResourceNotFound);
                assert!(e.message.contains("not found"));
            }
            v => panic!("{v:?}"),
        }
        // An unknown code from a newer server is classified by status, never a panic,
        // and keeps its name and message.
        match classify_response(418, &body("teapot", None), None) {
            Verdict::Fail(e) => {
                assert_eq!(e.code, ErrorCode::Unknown("teapot".into()));
                assert_eq!(e.message, "m");
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn error_predicates() {
        let api = |code: ErrorCode| {
            Error::Api(ApiError {
                status: code.status(),
                code,
                message: String::new(),
                retry_after: None,
                limit: None,
                bucket: None,
            })
        };
        assert!(api(ErrorCode::WouldBlock).is_rejection());
        assert!(api(ErrorCode::QueueFull).is_temporary());
        assert!(!api(ErrorCode::ResourceNotFound).is_temporary());
        assert!(api(ErrorCode::LeaseExpired).is_lease_gone());
        assert!(api(ErrorCode::LeaseExpired).is_definite());
        let amb = Error::Ambiguous {
            message: "x".into(),
            request_id: Some("r".into()),
        };
        assert!(amb.is_ambiguous() && !amb.is_definite() && amb.is_temporary());
        assert!(Error::Unavailable {
            message: "x".into()
        }
        .is_definite());
        let lost = LeaseLost {
            lease_id: "1-a".into(),
            cause: api(ErrorCode::LeaseExpired),
        };
        assert!(!lost.is_presumed());
        let lost = LeaseLost {
            lease_id: "1-a".into(),
            cause: Error::Unavailable {
                message: "x".into(),
            },
        };
        assert!(lost.is_presumed());
    }
}
