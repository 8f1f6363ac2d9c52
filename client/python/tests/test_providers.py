"""`ratequeue.providers`: provider answers (OpenAI, Anthropic) read into reports, without
those packages: objects shaped like their raw responses and errors."""

from __future__ import annotations

from typing import Any, Dict, Optional

import ratequeue
from ratequeue import ProviderReport, providers


class FakeResponse:
    """Like httpx.Response as the OpenAI and Anthropic clients expose it."""

    def __init__(self, headers: Dict[str, str], status_code: int = 200) -> None:
        self.headers = headers
        self.status_code = status_code


class FakeRateLimitError(Exception):
    """Like openai.RateLimitError / anthropic.RateLimitError: `.status_code`, `.response`."""

    def __init__(self, response: FakeResponse) -> None:
        super().__init__("rate limited")
        self.response = response
        self.status_code = response.status_code


def test_openai_headers() -> None:
    r = providers.openai_report(
        FakeResponse(
            {
                "X-RateLimit-Remaining-Requests": "59",
                "x-ratelimit-remaining-tokens": "149984",
                "x-ratelimit-reset-requests": "1m30.5s",
                "x-ratelimit-reset-tokens": "6ms",
            }
        )
    )
    assert r == ProviderReport(
        remaining_requests=59, remaining_tokens=149984, reset_requests_ms=90_500, reset_tokens_ms=6
    )
    assert r.to_json() == {
        "remaining_requests": 59,
        "remaining_tokens": 149984,
        "reset_requests_ms": 90_500,
        "reset_tokens_ms": 6,
    }


def test_openai_429_error_with_retry_after() -> None:
    e = FakeRateLimitError(FakeResponse({"retry-after-ms": "2500", "retry-after": "3"}, 429))
    r = providers.report_from_error(e)
    assert r.rate_limited and r.retry_after_ms == 2500
    e = FakeRateLimitError(FakeResponse({"retry-after": "3", "x-ratelimit-remaining-requests": "0"}, 429))
    r = providers.report_from_error(e)
    assert (r.rate_limited, r.retry_after_ms, r.remaining_requests) == (True, 3000, 0)
    assert r.to_json()["rate_limited"] is True


def test_anthropic_headers_and_reset_instants() -> None:
    now = 1_750_000_000.0
    h = {
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2025-06-15T15:06:50Z",  # now + 10 s
        "anthropic-ratelimit-input-tokens-remaining": "39000",
        "anthropic-ratelimit-input-tokens-reset": "2025-06-15T15:06:40.5+00:00",
    }
    r = providers.anthropic_report(FakeResponse(h), now=lambda: now)
    assert r == ProviderReport(
        remaining_requests=49, remaining_tokens=39000, reset_requests_ms=10_000, reset_tokens_ms=500
    )
    # The combined figure wins over the input-tokens one when both are there.
    h["anthropic-ratelimit-tokens-remaining"] = "12"
    assert providers.anthropic_report(h, now=lambda: now).remaining_tokens == 12
    # report_from_headers picks the provider by its headers.
    assert providers.report_from_headers(FakeResponse(h)).remaining_requests == 49


def test_bad_or_missing_headers_are_left_out() -> None:
    r = providers.report_from_headers(
        {"x-ratelimit-remaining-requests": "many", "x-ratelimit-reset-tokens": "soon", "retry-after": "-"}
    )
    assert r == ProviderReport() and r.is_empty()
    assert providers.parse_duration_ms("1h2m3s") == 3_723_000
    assert providers.parse_duration_ms("") is None
    assert providers.parse_duration_ms("3x") is None


def test_exported_from_the_package() -> None:
    assert ratequeue.providers is providers
    assert ratequeue.ProviderReport is ProviderReport
    report: Optional[Any] = ratequeue.Reported(paused_ms=0, limits=())
    assert report is not None
