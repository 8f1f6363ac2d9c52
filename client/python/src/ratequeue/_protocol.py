"""The sans-IO heart of both clients: which node to ask, how to follow a redirect, when to
retry and how long to back off, and how to read the API's JSON.

A call is a generator (`plan`) that yields actions (`Send` a request, `Sleep`) and is sent
back what happened (a `Response`, or the `TransportError` raised). The sync and
async clients are thin drivers that execute those actions, so the retry and redirect logic
exists once and is tested without sockets. Must never do I/O, sleep or read a clock except
through the `clock` it is given.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generator, List, Optional, Sequence, Set, Tuple, Union
from urllib.parse import quote, urljoin, urlsplit

from ._config import (
    REQUEST_ID_LEN_MAX,
    TTL_MS_MAX,
    TTL_MS_MIN,
    WAIT_MS_MAX,
    Timing,
    check_holder_label,
    check_load,
    check_name,
    seconds_to_ms,
)
from ._errors import (
    LeaseLost,
    Misconfigured,
    RatequeueError,
    Unavailable,
    WaitTimeout,
    WouldBlock,
    error_from_response,
    is_retryable,
)
from ._http import (
    ConnectError,
    ConnectTimeout,
    PoolTimeout,
    ProtocolError,
    Response,
    Timeouts,
    TLSError,
    TransportError,
)
from ._version import __version__

log = logging.getLogger("ratequeue")

Json = Dict[str, Any]
Clock = Callable[[], float]


#: The characters `quote` never escapes: a path segment of only these is sent as is.
_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"


def segment(value: str) -> str:
    """`value` as one URL path segment (`quote(value, safe="")`), without the call for
    the usual names and lease ids, which need no escape."""
    if value and not value.strip(_UNRESERVED):
        return value
    return quote(value, safe="")


def default_headers(api_key: Optional[str]) -> Dict[str, str]:
    """The headers of every request: the SDK's user agent and the key, when there is one."""
    headers = {"user-agent": f"ratequeue-python/{__version__}"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


@dataclass
class Send:
    """Send this request and report the response or the transport error."""

    method: str
    url: str
    body: Optional[Json]
    timeout: Timeouts


@dataclass
class Sleep:
    """Wait this long, then report None."""

    seconds: float


Action = Union[Send, Sleep]
Feedback = Union[Response, TransportError, None]
Plan = Generator[Action, Feedback, Json]


class Nodes:
    """The cluster's node URLs and the cached leader.

    Shared by every call of one client, possibly from several threads: each update is a
    single attribute assignment, and a lost race only costs one redirect.
    """

    def __init__(self, urls: Sequence[str], rng: random.Random) -> None:
        if not urls:
            raise ValueError("no node URL")
        self.urls: Tuple[str, ...] = tuple(urls)
        # Start at a random node so many clients do not all hit the first URL.
        self._cursor = rng.randrange(len(self.urls))
        self.leader: Optional[str] = None

    def pick(self, exclude: Set[str]) -> str:
        """The leader if known and not excluded, else the next node not excluded."""
        if self.leader is not None and self.leader not in exclude:
            return self.leader
        n = len(self.urls)
        for i in range(n):
            url = self.urls[(self._cursor + i) % n]
            if url not in exclude:
                return url
        return self.urls[self._cursor % n]

    def has_untried(self, exclude: Set[str]) -> bool:
        return any(u not in exclude for u in self.urls) or (
            self.leader is not None and self.leader not in exclude
        )

    def set_leader(self, base: str) -> None:
        self.leader = base

    def unreachable(self, base: str) -> None:
        """`base` refused a connection: forget it as leader, move the rotation past it."""
        if self.leader == base:
            self.leader = None
        if base in self.urls and self.urls[self._cursor % len(self.urls)] == base:
            self._cursor = (self._cursor + 1) % len(self.urls)

    def leaderless(self, base: str) -> None:
        """`base` knows no leader (503): forget the cached one, ask another node next."""
        self.leader = None
        if base in self.urls and self.urls[self._cursor % len(self.urls)] == base:
            self._cursor = (self._cursor + 1) % len(self.urls)


def base_of(url: str, path: str) -> str:
    """The node base URL of `url`, a request for `path` (so a base with a path prefix,
    `http://lb/rq`, survives): what precedes `path`, else scheme://host:port. Works on
    the string as given, so it compares equal to a configured URL."""
    full = urlsplit(url)._replace(query="", fragment="").geturl()
    if path and full.endswith(path):
        return full[: -len(path)].rstrip("/")
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def backoff(timing: Timing, attempt: int, retry_after: Optional[float], rng: random.Random) -> float:
    """Full-jitter exponential backoff; never less than the server's `retry_after`."""
    cap = min(timing.backoff_max_s, timing.backoff_initial_s * (2 ** min(attempt, 30)))
    delay = rng.uniform(0, cap)
    if retry_after is not None:
        delay = max(delay, retry_after + rng.uniform(0, timing.backoff_initial_s))
    return delay


@dataclass
class CallSpec:
    """One logical API call. Every call the SDK makes is idempotent: acquire carries a
    request_id the server deduplicates, release and renew are idempotent by lease id."""

    method: str
    path: str
    #: The body for an attempt started at time `now` (an acquire shortens its wait).
    body: Callable[[float], Optional[Json]]
    #: The read timeout for a body.
    read_timeout: Callable[[Optional[Json]], float]
    #: Give up retrying transient failures at this clock time.
    deadline: float
    #: Turn the final error before it is raised (acquire maps a late would_block).
    convert: Callable[[RatequeueError], RatequeueError] = field(default=lambda e: e)


def plan(spec: CallSpec, nodes: Nodes, timing: Timing, rng: random.Random, clock: Clock) -> Plan:
    """Drive one call: pick a node, follow redirects keeping method and body, retry
    transient failures with backoff until `spec.deadline` or `timing.attempts_max`.
    Returns the 2xx JSON body; raises a `RatequeueError`.

    While no node at all can be connected to, the call gives up `timing.connect_timeout_s`
    after the first failed connection, naming every URL tried; any answer from a node (a
    redirect, `no_leader`) ends that streak. TLS and protocol failures (a `https://` URL
    against the plain-text port) are raised at once: retrying cannot help. Every retry is
    logged."""
    attempt = 0
    unreachable: Set[str] = set()
    #: Clock time of the first failed connection since a node last answered, and why
    #: each node could not be reached (for the final message).
    down_since: Optional[float] = None
    down: Dict[str, str] = {}
    while True:
        base = nodes.pick(unreachable)
        body = spec.body(clock())
        connect = timing.connect_timeout_s
        if down_since is not None:
            connect = max(0.0, min(connect, down_since + timing.connect_timeout_s - clock()))
        timeouts = _timeouts(connect, spec.read_timeout(body), timing.request_timeout_s, timing.connect_timeout_s)
        url = base + spec.path
        redirects = 0
        error: RatequeueError
        while True:
            feedback = yield Send(spec.method, url, body, timeouts)
            if isinstance(feedback, Response) and feedback.status_code in (301, 302, 303, 307, 308):
                location = feedback.headers.get("location")
                if not location or redirects >= timing.redirects_max:
                    feedback = None  # handled below as a transient failure
                    break
                url = urljoin(url, location)
                if not url.startswith(("http://", "https://")):
                    raise RatequeueError(f"redirect to unsupported URL {url!r}", code="bad_redirect")
                base = base_of(url, spec.path)
                nodes.set_leader(base)
                redirects += 1
                continue
            break

        if isinstance(feedback, Response) and 200 <= feedback.status_code < 300:
            # Only the leader serves lease calls: whoever answered is the leader.
            nodes.set_leader(base)
            return _json_body(feedback)
        retry_after: Optional[float] = None
        if not isinstance(feedback, TransportError) or redirects > 0:
            down_since = None  # some node answered
            down.clear()
        if isinstance(feedback, Response):
            error = error_from_response(feedback)
            if not is_retryable(error):
                raise spec.convert(error)
            if error.code in ("no_leader", "shutting_down"):
                nodes.leaderless(base)
            retry_after = error.retry_after
        elif feedback is None:
            nodes.leaderless(base)
            error = Unavailable(
                f"more than {timing.redirects_max} redirects (or one without Location)",
                code="redirect_loop",
            )
        elif isinstance(feedback, (TLSError, ProtocolError)):
            kind = "tls_error" if isinstance(feedback, TLSError) else "protocol_error"
            error = Misconfigured(f"cannot talk to {base}: {feedback}", code=kind)
            error.__cause__ = feedback
            raise error
        elif isinstance(feedback, PoolTimeout):
            error = Unavailable(f"no free connection: {feedback}", code="pool_timeout")
            error.__cause__ = feedback
        elif isinstance(feedback, ConnectError):
            unreachable.add(base)
            nodes.unreachable(base)
            if down_since is None:
                down_since = clock() - connect if isinstance(feedback, ConnectTimeout) else clock()
            down[base] = str(feedback)
            error = _unreachable(down, timing)
            error.__cause__ = feedback
        else:
            error = Unavailable(f"no answer from {base}: {feedback}", code="no_answer")
            error.__cause__ = feedback

        attempt += 1
        if attempt >= timing.attempts_max:
            raise spec.convert(error)
        if error.code == "unreachable" and redirects == 0 and nodes.has_untried(unreachable):
            delay = 0.0  # another node may answer at once (not one that just sent us here)
        else:
            delay = backoff(timing, attempt, retry_after, rng)
            unreachable.clear()
        if clock() + delay > spec.deadline or (
            down_since is not None and clock() + delay >= down_since + timing.connect_timeout_s
        ):
            raise spec.convert(error)
        if delay > 0:
            log.warning("ratequeue %s %s: %s; retrying in %.2f s", spec.method, spec.path, error, delay)
            yield Sleep(delay)
        else:
            log.warning("ratequeue %s %s: %s; trying another node", spec.method, spec.path, error)


#: `Timeouts` by value: calls ask for the same few again and again. Bounded, then cleared.
_timeouts_made: Dict[Tuple[float, float, float, float], Timeouts] = {}
TIMEOUTS_CACHED_MAX = 256


def _timeouts(connect: float, read: float, write: float, pool: float) -> Timeouts:
    key = (connect, read, write, pool)
    t = _timeouts_made.get(key)
    if t is None:
        if len(_timeouts_made) >= TIMEOUTS_CACHED_MAX:
            _timeouts_made.clear()
        t = _timeouts_made[key] = Timeouts(connect=connect, read=read, write=write, pool=pool)
    return t


def _unreachable(down: Dict[str, str], timing: Timing) -> Unavailable:
    tried = "; ".join(down.values())
    return Unavailable(
        f"cannot reach any ratequeue node within {timing.connect_timeout_s:g} s (tried {tried})",
        code="unreachable",
    )


#: Decodes JSON text (json.loads on bytes first guesses their encoding), and its scanner:
#: `decode` is two Python calls and a whitespace regex around it.
_decoder = json.JSONDecoder()
_scan_json = _decoder.scan_once  # type: ignore[attr-defined]


def _decode_object(text: str) -> Any:
    """The JSON value of `text`, which starts with `{`: scanned directly when nothing
    follows it, else by `json` (which raises the usual errors)."""
    try:
        data, end = _scan_json(text, 0)
    except StopIteration:
        end = -1
    if end != len(text):
        data = _decoder.decode(text)
    return data


def _json_body(response: Response) -> Json:
    content = response.content
    try:
        if content[:1] == b"{" and content[1:2] != b"\x00":
            # An object, so UTF-8 (json.loads would find the same: no BOM, no UTF-16/32).
            data = _decode_object(content.decode("utf-8", "surrogatepass"))
        else:
            data = json.loads(content) if content else {}
    except ValueError as e:
        raise RatequeueError(
            f"invalid JSON in a {response.status_code} response", code="invalid_response"
        ) from e
    if not isinstance(data, dict):
        raise RatequeueError("expected a JSON object", code="invalid_response")
    return data


# ---------------------------------------------------------------------------------------
# The three lease calls.


#: Request ids: 128 random bits each, from a generator seeded by the OS once per process
#: (and again in every forked child, which must not repeat its parent's ids). Asking the
#: OS for every id cost a system call per acquire.
_ids = random.Random(os.urandom(32))


def new_request_id() -> str:
    """A fresh request id: 32 hex digits."""
    return "%032x" % _ids.getrandbits(128)


def _reseed_after_fork() -> None:
    _ids.seed(os.urandom(32))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_after_fork)


@dataclass
class AcquireArgs:
    resource: str
    load: int
    priority: int
    lane: Optional[str]
    ttl_ms: Optional[int]
    wait_ms: int
    request_id: str
    #: Sent as is (`_config.holder`: label, host and pid).
    holder: Optional[str] = None

    @staticmethod
    def build(
        resource: str,
        *,
        load: int,
        priority: int,
        lane: Optional[str],
        ttl: Optional[float],
        timeout: Optional[float],
        request_id: Optional[str],
        timing: Timing,
        holder: Optional[str] = None,
    ) -> "AcquireArgs":
        check_name("resource", resource)
        check_load("load", load)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError("priority must be an int")
        if not -(2**31) <= priority < 2**31:
            raise ValueError("priority must fit in 32 bits")
        if lane is not None:
            check_name("lane", lane)
        ttl_ms = None if ttl is None else seconds_to_ms("ttl", ttl, TTL_MS_MIN, TTL_MS_MAX)
        wait = timing.wait_default_s if timeout is None else timeout
        wait_ms = seconds_to_ms("timeout", wait, 0, WAIT_MS_MAX)
        if request_id is None:
            request_id = new_request_id()
        if not 1 <= len(request_id.encode()) <= REQUEST_ID_LEN_MAX:
            raise ValueError(f"request_id must be 1..={REQUEST_ID_LEN_MAX} bytes")
        if holder is not None:
            check_holder_label(holder)
        return AcquireArgs(resource, load, priority, lane, ttl_ms, wait_ms, request_id, holder)


def acquire_spec(args: AcquireArgs, timing: Timing, clock: Clock) -> CallSpec:
    """Retries resend the same request_id, so the server returns the lease it may already
    have granted, or attaches to the waiter still queued. Each retry asks only for the
    wait that remains of the caller's timeout."""
    start = clock()
    wait_until = start + args.wait_ms / 1000.0
    # [attempts so far, wait_ms of the last attempt]
    sent = [0, args.wait_ms]

    def body(now: float) -> Json:
        wait_ms = args.wait_ms
        if wait_ms > 0 and sent[0] > 0:
            wait_ms = max(0, min(wait_ms, int((wait_until - now) * 1000)))
        sent[0] += 1
        sent[1] = wait_ms
        b: Json = {
            "load": args.load,
            "priority": args.priority,
            "wait_ms": wait_ms,
            "request_id": args.request_id,
        }
        if args.lane is not None:
            b["lane"] = args.lane
        if args.ttl_ms is not None:
            b["ttl_ms"] = args.ttl_ms
        if args.holder is not None:
            b["holder"] = args.holder
        return b

    def read_timeout(b: Optional[Json]) -> float:
        wait_ms = b["wait_ms"] if b else args.wait_ms
        return float(wait_ms) / 1000.0 + timing.acquire_read_margin_s

    def convert(e: RatequeueError) -> RatequeueError:
        # The caller asked to wait; retries used the wait up and the last try (sent with
        # no wait left) found no room: to the caller that is a wait timeout.
        if isinstance(e, WouldBlock) and args.wait_ms > 0 and sent[1] == 0:
            out = WaitTimeout(e.message, status=e.status, retry_after=e.retry_after, limit=e.limit, bucket=e.bucket)
            out.__cause__ = e
            return out
        return e

    return CallSpec(
        method="POST",
        path=f"/v1/resources/{segment(args.resource)}/acquire",
        body=body,
        read_timeout=read_timeout,
        deadline=wait_until + timing.retry_budget_s,
        convert=convert,
    )


def _lease_error(lease_id: str) -> Callable[[RatequeueError], RatequeueError]:
    def convert(e: RatequeueError) -> RatequeueError:
        if isinstance(e, LeaseLost) and e.lease_id is None:
            e.lease_id = lease_id
        return e

    return convert


def _lease_spec(lease_id: str, action: str, body: Json, timing: Timing, deadline: float) -> CallSpec:
    """`POST /v1/leases/{lease_id}/{action}` with `body`: idempotent by lease id, answered
    by the leader, retried until `deadline`; a `LeaseLost` names the lease."""
    return CallSpec(
        method="POST",
        path=f"/v1/leases/{segment(lease_id)}/{action}",
        body=lambda _now: body,
        read_timeout=lambda _b: timing.request_timeout_s,
        deadline=deadline,
        convert=_lease_error(lease_id),
    )


def release_spec(
    lease_id: str, actual_load: Optional[int], timing: Timing, deadline: float
) -> CallSpec:
    body: Json = {} if actual_load is None else {"actual_load": actual_load}
    return _lease_spec(lease_id, "release", body, timing, deadline)


def renew_spec(lease_id: str, ttl_ms: Optional[int], timing: Timing, deadline: float) -> CallSpec:
    body: Json = {} if ttl_ms is None else {"ttl_ms": ttl_ms}
    return _lease_spec(lease_id, "renew", body, timing, deadline)


def report_spec(lease_id: str, report: "ProviderReport", timing: Timing, deadline: float) -> CallSpec:
    return _lease_spec(lease_id, "report", report.to_json(), timing, deadline)


def progress_spec(resource: str, request_id: str, timing: Timing, deadline: float) -> CallSpec:
    return CallSpec(
        method="GET",
        path=f"/v1/resources/{segment(resource)}/waiters/{segment(request_id)}",
        body=lambda _now: None,
        read_timeout=lambda _b: timing.request_timeout_s,
        deadline=deadline,
    )


@dataclass(frozen=True)
class Progress:
    """Where a waiting acquire stands in the leader's queue (docs/api.md,
    `GET /v1/resources/{name}/waiters/{request_id}`): `position` 1 is served next in its
    `lane` (a lower bound when `position_exact` is false), `ahead_in_resource` waiters of
    every lane go first, `binding_limit` (`concurrency`, `request`, `load`, `provider`;
    None when none binds) is what it waits for, and `estimated_wait_ms` how long until
    its grant."""

    resource: str
    request_id: str
    lane: str
    priority: int
    load: int
    position: int
    position_exact: bool
    ahead_in_resource: int
    queued_in_resource: int
    binding_limit: Optional[str]
    binding_bucket: Optional[int]
    estimated_wait_ms: int
    waited_ms: int


def parse_progress(data: Json) -> Progress:
    limit = data.get("binding_limit")
    bucket = data.get("binding_bucket")
    return Progress(
        resource=_str(data, "resource"),
        request_id=_str(data, "request_id"),
        lane=_str(data, "lane"),
        priority=_int(data, "priority"),
        load=_int(data, "load"),
        position=_int(data, "position"),
        position_exact=bool(data.get("position_exact", True)),
        ahead_in_resource=_int(data, "ahead_in_resource"),
        queued_in_resource=_int(data, "queued_in_resource"),
        binding_limit=limit if isinstance(limit, str) else None,
        binding_bucket=bucket if isinstance(bucket, int) and not isinstance(bucket, bool) else None,
        estimated_wait_ms=_int(data, "estimated_wait_ms"),
        waited_ms=_int(data, "waited_ms"),
    )


@dataclass(frozen=True)
class ProviderReport:
    """What the provider answered a lease's holder (docs/semantics.md, "Provider
    feedback"): its remaining requests and tokens, when its windows reset and its
    retry-after (ms from now), and whether it refused the call (429). Build one by hand
    or with `ratequeue.providers` (OpenAI and Anthropic headers and errors)."""

    remaining_requests: Optional[int] = None
    remaining_tokens: Optional[int] = None
    reset_requests_ms: Optional[int] = None
    reset_tokens_ms: Optional[int] = None
    retry_after_ms: Optional[int] = None
    rate_limited: bool = False

    def to_json(self) -> Json:
        body: Json = {}
        for name in ("remaining_requests", "remaining_tokens", "reset_requests_ms", "reset_tokens_ms", "retry_after_ms"):
            v = getattr(self, name)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ValueError(f"{name} must be a non-negative integer, not {v!r}")
                body[name] = v
        if self.rate_limited:
            body["rate_limited"] = True
        return body

    def is_empty(self) -> bool:
        return not self.to_json()


@dataclass(frozen=True)
class Reported:
    """The answer to a report: how long grants on the resource now pause (0: not
    paused), and its limits after the report."""

    paused_ms: int
    limits: Tuple["Limit", ...]


def parse_reported(data: Json) -> Reported:
    limits = tuple(
        Limit(kind=_str(item, "kind"), limit=_int(item, "limit"), remaining=_int(item, "remaining"))
        for item in data.get("limits") or []
        if isinstance(item, dict)
    )
    return Reported(paused_ms=_int(data, "paused_ms"), limits=limits)


@dataclass(frozen=True)
class Limit:
    """One limit of the resource as seen at grant time: `kind` is `concurrency`, `request`
    or `load`; `remaining` may be negative after a settle that overdrew a load bucket."""

    kind: str
    limit: int
    remaining: int


@dataclass(frozen=True)
class Shadow:
    """On a dry-run resource: what enforce would have done with the acquire that was
    granted at once. `decision` is `grant`, `wait` (queued `wait_ms`, then granted),
    `would_block`, `wait_timeout` or `load_exceeds_limit` (refusals); `limit` is the
    binding limit's kind (`concurrency`, `request`, `load`) or None."""

    decision: str
    wait_ms: int
    limit: Optional[str]

    @property
    def would_refuse(self) -> bool:
        """Whether enforce would have refused the request."""
        return self.decision not in ("grant", "wait")


@dataclass
class Grant:
    """The parsed 200 body of an acquire."""

    lease_id: str
    resource: str
    lane: str
    load: int
    fencing_token: int
    ttl_ms: int
    queued_ms: int
    limits: Tuple[Limit, ...]
    shadow: Optional[Shadow] = None


def _int(data: Json, key: str) -> int:
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise RatequeueError(f"response field {key!r} is not an integer", code="invalid_response")
    return v


def _str(data: Json, key: str) -> str:
    v = data.get(key)
    if not isinstance(v, str):
        raise RatequeueError(f"response field {key!r} is not a string", code="invalid_response")
    return v


def parse_grant(data: Json) -> Grant:
    # The checks of `_int` and `_str` inline (JSON gives exact ints and strs); either is
    # called for what they do not pass, to raise its error.
    limits: List[Limit] = []
    for item in data.get("limits") or ():
        if isinstance(item, dict):
            kind, limit, remaining = item.get("kind"), item.get("limit"), item.get("remaining")
            if type(kind) is not str:
                kind = _str(item, "kind")
            if type(limit) is not int:
                limit = _int(item, "limit")
            if type(remaining) is not int:
                remaining = _int(item, "remaining")
            limits.append(Limit(kind=kind, limit=limit, remaining=remaining))
    get = data.get
    lease_id, resource, lane = get("lease_id"), get("resource"), get("lane")
    load, token, ttl_ms, queued_ms = get("load"), get("fencing_token"), get("ttl_ms"), get("queued_ms", 0)
    if type(lease_id) is not str:
        lease_id = _str(data, "lease_id")
    if type(resource) is not str:
        resource = _str(data, "resource")
    if type(lane) is not str:
        lane = _str(data, "lane")
    if type(load) is not int:
        load = _int(data, "load")
    if type(token) is not int:
        token = _int(data, "fencing_token")
    if type(ttl_ms) is not int:
        ttl_ms = _int(data, "ttl_ms")
    if type(queued_ms) is not int:
        queued_ms = _int(data, "queued_ms")
    shadow = get("shadow")
    return Grant(
        lease_id=lease_id,
        resource=resource,
        lane=lane,
        load=load,
        fencing_token=token,
        ttl_ms=ttl_ms,
        queued_ms=queued_ms,
        limits=tuple(limits),
        shadow=_shadow(shadow) if shadow is not None else None,
    )


def _shadow(data: object) -> Optional[Shadow]:
    if not isinstance(data, dict):
        return None
    limit = data.get("limit")
    return Shadow(
        decision=_str(data, "decision"),
        wait_ms=_int(data, "wait_ms"),
        limit=limit if isinstance(limit, str) else None,
    )


def parse_renewal(data: Json) -> Tuple[int, int]:
    """(ttl_ms, fencing_token) of a renew response."""
    return _int(data, "ttl_ms"), _int(data, "fencing_token")


def parse_release(data: Json) -> str:
    """`released` or `already_released`."""
    return _str(data, "state")
