//! The API's one error type, `ApiError` (`{"error": {"code", "message",
//! "retry_after_ms"?, "limit"?, "bucket"?}}` with `Retry-After`), the `Body` JSON
//! extractor whose rejections use it, and the mapping of the core's refusals and
//! rejections onto error codes.
//!
//! `Body` accepts a JSON object only (an array would be read by position into the
//! struct's fields), at most `BODY_BYTES_MAX` bytes, received within
//! `BODY_READ_TIMEOUT`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ratequeue_api as api;
use ratequeue_api::ErrorCode;
use ratequeue_core::{Binding, LimitKind, Outcome, Refusal, Rejection, Table};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest accepted request body.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// A request body must arrive within this long of its headers (`408 request_timeout`).
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The one error type of the API: `{"error": {"code", "message", "retry_after_ms"?}}`.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    retry_after_ms: Option<u64>,
    binding: Option<Binding>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after_ms: None,
            binding: None,
        }
    }

    pub(crate) fn retry(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms.max(1));
        self
    }

    /// A limit refusal: `retry_after_ms` from the binding limit, which is named in the
    /// body and the message.
    fn limited(code: ErrorCode, what: &str, retry_after_ms: u64, binding: Option<Binding>) -> Self {
        let message = match binding {
            Some(b) => format!("{what}: the {} binds", limit_name(b)),
            None => format!("{what}: waiting for those queued ahead"),
        };
        let mut e = ApiError::new(code, message).retry(retry_after_ms);
        e.binding = binding;
        e
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = api::ErrorBody {
            error: api::ErrorDetail {
                code: self.code,
                message: self.message,
                retry_after_ms: self.retry_after_ms,
                limit: self.binding.map(|b| api_kind(b.kind)),
                bucket: self.binding.and_then(|b| b.bucket),
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(ms) = self.retry_after_ms {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// A JSON body: at most `BODY_BYTES_MAX`, unknown fields rejected, every failure a
/// documented `invalid_request` / `payload_too_large`. An empty body means `{}`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let read = tokio::time::timeout(BODY_READ_TIMEOUT, Bytes::from_request(req, state));
        let bytes = read
            .await
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "the request body did not arrive within {} s",
                        BODY_READ_TIMEOUT.as_secs()
                    ),
                )
            })?
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(ErrorCode::PayloadTooLarge, "request body too large")
                } else {
                    ApiError::invalid(format!("unreadable body: {e}"))
                }
            })?;
        let bytes: &[u8] = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            None => b"{}",
            Some(b'{') => &bytes,
            Some(_) => return Err(ApiError::invalid("the body must be a JSON object")),
        };
        serde_json::from_slice(bytes)
            .map(Body)
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
    }
}

pub(super) fn refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::ResourceNotFound => ApiError::new(ErrorCode::ResourceNotFound, "no such resource"),
        Refusal::LoadExceedsLimit { load_max } => ApiError::new(
            ErrorCode::LoadExceedsLimit,
            format!("load can never fit: the largest per-load bucket holds {load_max}"),
        ),
        Refusal::QueueFull {
            retry_after_ms,
            binding,
        } => ApiError::limited(
            ErrorCode::QueueFull,
            "the resource's queue is full",
            retry_after_ms,
            binding,
        ),
        Refusal::WouldBlock {
            retry_after_ms,
            binding,
        } => ApiError::limited(
            ErrorCode::WouldBlock,
            "no room now and wait_ms is 0",
            retry_after_ms,
            binding,
        ),
        Refusal::WaitTimeout {
            retry_after_ms,
            binding,
        } => ApiError::limited(
            ErrorCode::WaitTimeout,
            "waited wait_ms without a grant",
            retry_after_ms,
            binding,
        ),
        Refusal::QuotaExceeded { retry_after_ms } => ApiError::new(
            ErrorCode::QuotaExceeded,
            "the key has its max_waiters waiters queued already",
        )
        .retry(retry_after_ms),
        Refusal::RequestIdReused => request_id_reused(),
    }
}

pub(super) fn rejection(r: Rejection) -> ApiError {
    match r {
        Rejection::ResourceNotFound => {
            ApiError::new(ErrorCode::ResourceNotFound, "no such resource")
        }
        Rejection::LeaseNotFound => ApiError::new(ErrorCode::LeaseNotFound, "no such lease"),
        Rejection::LeaseExpired => ApiError::new(
            ErrorCode::LeaseExpired,
            "the lease expired; the holder must stop",
        ),
        Rejection::LeaseReleased => ApiError::new(
            ErrorCode::LeaseExpired,
            "the lease was released; the holder must stop",
        ),
        Rejection::GrantEnded => ApiError::new(
            ErrorCode::LeaseExpired,
            "the lease granted to this request_id has already ended; \
             acquire again with a new request_id",
        ),
        Rejection::LoadExceedsLimit { load_max } => ApiError::new(
            ErrorCode::LoadExceedsLimit,
            format!("load can never fit: the largest per-load bucket holds {load_max}"),
        ),
        Rejection::NoRoom {
            retry_after_ms,
            binding,
        } => ApiError::limited(
            ErrorCode::WouldBlock,
            "no room now",
            retry_after_ms,
            Some(Binding {
                kind: binding,
                bucket: None,
            }),
        ),
        Rejection::TableFull(Table::Leases) => {
            ApiError::new(ErrorCode::QueueFull, "the cluster's lease table is full").retry(1_000)
        }
        Rejection::TableFull(Table::Resources) => {
            ApiError::invalid("the cluster's resource table is full")
        }
        Rejection::TableFull(Table::Keys) => ApiError::invalid("the cluster's key table is full"),
        Rejection::RequestIdReused => request_id_reused(),
        Rejection::KeyExists => ApiError::new(
            ErrorCode::KeyExists,
            "a key with this name exists; rotate it (POST /v1/keys/{name}/rotate) or delete it first",
        ),
        Rejection::KeyNotFound => ApiError::new(ErrorCode::KeyNotFound, "no such key"),
        Rejection::Invalid(m) => ApiError::invalid(m),
    }
}

pub(super) fn api_kind(k: LimitKind) -> api::LimitKind {
    match k {
        LimitKind::Concurrency => api::LimitKind::Concurrency,
        LimitKind::Request => api::LimitKind::Request,
        LimitKind::Load => api::LimitKind::Load,
        LimitKind::Provider => api::LimitKind::Provider,
    }
}

fn limit_name(b: Binding) -> String {
    match (b.kind, b.bucket) {
        (LimitKind::Concurrency, _) => "concurrency limit".into(),
        (LimitKind::Request, Some(i)) => format!("request rate limit (rate[{i}])"),
        (LimitKind::Load, Some(i)) => format!("load rate limit (rate[{i}])"),
        (LimitKind::Request, None) => "request rate limit".into(),
        (LimitKind::Load, None) => "load rate limit".into(),
        (LimitKind::Provider, _) => "provider's pause after a 429".into(),
    }
}

fn request_id_reused() -> ApiError {
    ApiError::new(
        ErrorCode::RequestIdReused,
        "this request_id was used by this key on this resource with another lane, load or ttl_ms",
    )
}

pub(super) fn json<T: Serialize>(v: T) -> Response {
    axum::Json(v).into_response()
}

pub(super) fn unexpected(o: Outcome) -> Response {
    tracing::error!(outcome = ?o, "unexpected outcome");
    ApiError::new(ErrorCode::Internal, "unexpected outcome").into_response()
}
