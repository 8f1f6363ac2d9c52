"""Typed exceptions mirroring the API's error codes (DESIGN.md §5), and the mapping from
an HTTP error response to them.

Owns: the exception hierarchy and `error_from_response`. Must never do I/O.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Type

from ._http import Response

__all__ = [
    "RatequeueError",
    "Rejected",
    "QueueFull",
    "WaitTimeout",
    "WouldBlock",
    "LoadExceedsLimit",
    "InvalidRequest",
    "Unauthorized",
    "Forbidden",
    "ResourceNotFound",
    "LeaseLost",
    "Unavailable",
    "Misconfigured",
    "error_from_response",
]


class RatequeueError(Exception):
    """Base of every error the SDK raises about the cluster's answer.

    `code` is the API's snake_case error code (or an SDK code such as `unreachable`),
    `status` the HTTP status when there was a response, and `retry_after` the number of
    seconds the server suggested waiting before trying again, when it gave one.
    """

    default_code = "error"

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        status: Optional[int] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code: str = code if code is not None else self.default_code
        self.status: Optional[int] = status
        self.retry_after: Optional[float] = retry_after

    def __str__(self) -> str:
        parts = [f"{self.code}: {self.message}"]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.retry_after is not None:
            parts.append(f"retry_after={self.retry_after:g}s")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, code={self.code!r}, "
            f"status={self.status!r}, retry_after={self.retry_after!r})"
        )


class Rejected(RatequeueError):
    """No slot was granted (HTTP 429): the common base of `QueueFull`, `WaitTimeout`
    and `WouldBlock`.

    `limit` names the binding limit (`concurrency`, `request` or `load`) and `bucket` which
    entry of the resource's `rate` list it is (None for concurrency); `retry_after` is the
    cluster's estimate of when that limit has room for this request (for concurrency,
    from the slots, the holders' observed hold times and the waiters ahead)."""

    default_code = "rejected"

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        status: Optional[int] = None,
        retry_after: Optional[float] = None,
        limit: Optional[str] = None,
        bucket: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code, status=status, retry_after=retry_after)
        self.limit: Optional[str] = limit
        self.bucket: Optional[int] = bucket

    def __str__(self) -> str:
        text = super().__str__()
        if self.limit is not None:
            text += f" limit={self.limit}" + (f"[{self.bucket}]" if self.bucket is not None else "")
        return text


class QueueFull(Rejected):
    """The resource's queue holds `max_queue` waiters already."""

    default_code = "queue_full"


class WaitTimeout(Rejected):
    """The acquire waited `timeout` seconds in the queue without a grant."""

    default_code = "wait_timeout"


class WouldBlock(Rejected):
    """`timeout=0` (try once) and there was no room now."""

    default_code = "would_block"


class LoadExceedsLimit(RatequeueError):
    """The load can never fit the resource's largest `per: load` bucket."""

    default_code = "load_exceeds_limit"


class InvalidRequest(RatequeueError):
    """The server rejected the request as malformed or out of range (HTTP 400/413)."""

    default_code = "invalid_request"


class Unauthorized(RatequeueError):
    """No API key, or an unknown one (HTTP 401). The key comes from `api_key=` or the
    RATEQUEUE_API_KEY environment variable."""

    default_code = "unauthorized"

    def __str__(self) -> str:
        return f"{super().__str__()} (pass the key as api_key=... or set RATEQUEUE_API_KEY)"


class Forbidden(RatequeueError):
    """The API key may not use this resource or action (HTTP 403)."""

    default_code = "forbidden"


class ResourceNotFound(RatequeueError):
    """No resource of that name exists (or it was deleted while waiting)."""

    default_code = "resource_not_found"


class LeaseLost(RatequeueError):
    """The lease is gone: it expired (no renewal within its TTL), was never known, or could
    not be renewed for longer than its TTL. The holder must stop using the resource."""

    default_code = "lease_expired"

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        status: Optional[int] = None,
        retry_after: Optional[float] = None,
        lease_id: Optional[str] = None,
    ) -> None:
        super().__init__(message, code=code, status=status, retry_after=retry_after)
        self.lease_id: Optional[str] = lease_id


class Unavailable(RatequeueError):
    """The cluster could not be reached or had no leader for longer than the retry budget
    (`no_leader`, `shutting_down`, `too_many_connections`, `commit_timeout`, or a transport
    failure)."""

    default_code = "unavailable"


class Misconfigured(RatequeueError):
    """The client cannot talk to the node at that URL, and retrying cannot help: `https://`
    against the plain-text port (or the reverse), a certificate that does not verify,
    something other than ratequeue answering. Fix the URL (RATEQUEUE_URL / `url=`)."""

    default_code = "protocol_error"


_BY_CODE: Dict[str, Type[RatequeueError]] = {
    "queue_full": QueueFull,
    "wait_timeout": WaitTimeout,
    "would_block": WouldBlock,
    "load_exceeds_limit": LoadExceedsLimit,
    "invalid_request": InvalidRequest,
    "payload_too_large": InvalidRequest,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "resource_not_found": ResourceNotFound,
    "lease_expired": LeaseLost,
    "lease_not_found": LeaseLost,
    "no_leader": Unavailable,
    "shutting_down": Unavailable,
    "commit_timeout": Unavailable,
    "too_many_connections": Unavailable,
}

#: Classes for an error answer without the API's error body (a proxy or load balancer in
#: front of the cluster answered). A code the SDK does not know (a newer server's) is not
#: typed by its status: it is a plain `RatequeueError` with its code and message, or
#: `Unavailable` for 502/503/504 (retried as a proxy's answer would be), as in the Rust
#: client.
_BY_STATUS: Dict[int, Type[RatequeueError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    410: LeaseLost,
    413: InvalidRequest,
    422: LoadExceedsLimit,
    429: Rejected,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}

#: Codes whose request certainly or idempotently may be sent again as is. `commit_timeout`
#: is ambiguous, but every call the SDK makes is idempotent (acquire carries a request_id).
RETRYABLE_CODES = frozenset({"no_leader", "shutting_down", "too_many_connections", "commit_timeout"})


def _retry_after_header(value: Optional[str]) -> Optional[float]:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP-date: the body's retry_after_ms is preferred anyway
    return seconds if seconds >= 0 else None


def error_from_response(response: Response) -> RatequeueError:
    """The typed exception for an error response (status >= 400)."""
    status = response.status_code
    code: Optional[str] = None
    message = f"HTTP {status}"
    retry_after: Optional[float] = None
    try:
        body: Any = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        if isinstance(detail.get("code"), str):
            code = detail["code"]
        if isinstance(detail.get("message"), str):
            message = detail["message"]
        ms = detail.get("retry_after_ms")
        if isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms >= 0:
            retry_after = ms / 1000.0
    if retry_after is None:
        retry_after = _retry_after_header(response.headers.get("retry-after"))
    cls: Type[RatequeueError]
    if code is None:
        cls = _BY_STATUS.get(status, RatequeueError)
        code = cls.default_code if cls is not RatequeueError else f"http_{status}"
    elif code in _BY_CODE:
        cls = _BY_CODE[code]
    else:
        cls = Unavailable if status in (502, 503, 504) else RatequeueError
    if issubclass(cls, Rejected):
        limit = detail.get("limit") if isinstance(detail, dict) else None
        bucket = detail.get("bucket") if isinstance(detail, dict) else None
        return cls(
            message,
            code=code,
            status=status,
            retry_after=retry_after,
            limit=limit if isinstance(limit, str) else None,
            bucket=bucket if isinstance(bucket, int) and not isinstance(bucket, bool) else None,
        )
    return cls(message, code=code, status=status, retry_after=retry_after)


def is_retryable(error: RatequeueError) -> bool:
    """Whether the SDK may send the same request again (with the same request_id)."""
    if error.code in RETRYABLE_CODES:
        return True
    # A proxy or load balancer in front of the cluster answering without our error body.
    return isinstance(error, Unavailable) and error.status in (502, 503, 504)
