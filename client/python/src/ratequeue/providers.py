"""Read a provider's rate-limit answer into a `ProviderReport`, for `lease.report(...)`.

One line after each call to an LLM API:

    resp = openai_client.chat.completions.with_raw_response.create(...)
    await lease.report(providers.openai_report(resp))

    except openai.RateLimitError as e:
        await lease.report(providers.report_from_error(e))
        raise

Works with the OpenAI and Anthropic Python clients' raw responses and errors (anything
with `.headers`, or `.response.headers`, or a mapping of headers), without importing
either package. Header names are matched case-insensitively; a header that is missing
or does not parse is left out of the report.

- OpenAI: `x-ratelimit-remaining-requests`, `x-ratelimit-remaining-tokens`,
  `x-ratelimit-reset-requests` / `-tokens` (durations like `1s`, `6m0s`, `20ms`),
  `retry-after-ms`, `retry-after`.
- Anthropic: `anthropic-ratelimit-requests-remaining`,
  `anthropic-ratelimit-tokens-remaining` (else the input-tokens figure),
  `anthropic-ratelimit-requests-reset` / `-tokens-reset` (RFC 3339 instants, turned into
  durations from this machine's clock), `retry-after`.
"""

from __future__ import annotations

import datetime as _dt
import re
import time
from typing import Any, Callable, Mapping, Optional

from ._protocol import ProviderReport

__all__ = ["ProviderReport", "openai_report", "anthropic_report", "report_from_headers", "report_from_error"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_MS = {"h": 3_600_000.0, "m": 60_000.0, "s": 1_000.0, "ms": 1.0}


def _headers_of(obj: Any) -> Mapping[str, str]:
    """The headers of a response, an error carrying a response, or a mapping."""
    for candidate in (getattr(obj, "headers", None), getattr(getattr(obj, "response", None), "headers", None), obj):
        if candidate is not None and hasattr(candidate, "items"):
            return {str(k).lower(): str(v) for k, v in candidate.items()}
    return {}


def _status_of(obj: Any) -> Optional[int]:
    for candidate in (getattr(obj, "status_code", None), getattr(getattr(obj, "response", None), "status_code", None)):
        if isinstance(candidate, int):
            return candidate
    return None


def _count(value: Optional[str]) -> Optional[int]:
    if value is None:
        return None
    try:
        n = int(value.strip())
    except ValueError:
        return None
    return n if n >= 0 else None


def parse_duration_ms(value: Optional[str]) -> Optional[int]:
    """OpenAI's reset durations (`1s`, `6m0s`, `1m30.5s`, `20ms`, `1h2m`) in ms."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    total, pos = 0.0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        return None
    return int(round(total))


def _instant_ms(value: Optional[str], now: Callable[[], float]) -> Optional[int]:
    """Anthropic's reset instants (RFC 3339) as ms from now (0 if already past)."""
    if value is None:
        return None
    try:
        at = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=_dt.timezone.utc)
    return max(0, int(round((at.timestamp() - now()) * 1000)))


def _retry_after_ms(h: Mapping[str, str], now: Callable[[], float]) -> Optional[int]:
    ms = h.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0, int(round(float(ms))))
        except ValueError:
            pass
    value = h.get("retry-after")
    if value is None:
        return None
    try:
        return max(0, int(round(float(value) * 1000)))
    except ValueError:
        pass
    try:  # An HTTP date.
        from email.utils import parsedate_to_datetime

        return max(0, int(round((parsedate_to_datetime(value).timestamp() - now()) * 1000)))
    except (TypeError, ValueError):
        return None


def openai_report(response: Any, *, rate_limited: Optional[bool] = None) -> ProviderReport:
    """A report from an OpenAI response (or error, or headers). `rate_limited` defaults
    to whether the response's status is 429."""
    h = _headers_of(response)
    return ProviderReport(
        remaining_requests=_count(h.get("x-ratelimit-remaining-requests")),
        remaining_tokens=_count(h.get("x-ratelimit-remaining-tokens")),
        reset_requests_ms=parse_duration_ms(h.get("x-ratelimit-reset-requests")),
        reset_tokens_ms=parse_duration_ms(h.get("x-ratelimit-reset-tokens")),
        retry_after_ms=_retry_after_ms(h, time.time),
        rate_limited=_status_of(response) == 429 if rate_limited is None else rate_limited,
    )


def anthropic_report(
    response: Any, *, rate_limited: Optional[bool] = None, now: Callable[[], float] = time.time
) -> ProviderReport:
    """A report from an Anthropic response (or error, or headers). `rate_limited`
    defaults to whether the response's status is 429."""
    h = _headers_of(response)
    tokens = _count(h.get("anthropic-ratelimit-tokens-remaining"))
    if tokens is None:
        tokens = _count(h.get("anthropic-ratelimit-input-tokens-remaining"))
    tokens_reset = h.get("anthropic-ratelimit-tokens-reset") or h.get("anthropic-ratelimit-input-tokens-reset")
    return ProviderReport(
        remaining_requests=_count(h.get("anthropic-ratelimit-requests-remaining")),
        remaining_tokens=tokens,
        reset_requests_ms=_instant_ms(h.get("anthropic-ratelimit-requests-reset"), now),
        reset_tokens_ms=_instant_ms(tokens_reset, now),
        retry_after_ms=_retry_after_ms(h, now),
        rate_limited=_status_of(response) == 429 if rate_limited is None else rate_limited,
    )


def report_from_headers(response: Any, *, rate_limited: Optional[bool] = None) -> ProviderReport:
    """Whichever provider's headers the response carries (Anthropic's if any of its
    `anthropic-ratelimit-*` headers is there, else OpenAI's)."""
    h = _headers_of(response)
    if any(k.startswith("anthropic-ratelimit-") for k in h):
        return anthropic_report(response, rate_limited=rate_limited)
    return openai_report(response, rate_limited=rate_limited)


def report_from_error(error: BaseException) -> ProviderReport:
    """A report from a provider client's exception (`openai.RateLimitError`,
    `anthropic.RateLimitError`, or any error with `.status_code` and `.response`):
    `rate_limited` when its status is 429."""
    return report_from_headers(error, rate_limited=_status_of(error) == 429)
