"""Configuration shared by the sync and async clients: timing knobs, node URLs, API key,
holder label and TLS files from arguments or the environment, and client-side validation
of names and numbers.

Owns: `Timing`, `TLSFiles`, `resolve_urls`, `resolve_api_key`, `resolve_tls`,
`resolve_holder`, `holder`, the validators. Must never do I/O beyond reading environment
variables and the host name (the TLS files are read by `_net.tls_context`).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

#: A file path argument: a str or any os.PathLike (pathlib.Path).
PathArg = Union[str, "os.PathLike[str]"]

__all__ = ["Timing", "TLSFiles", "resolve_urls", "resolve_api_key", "resolve_tls", "DEFAULT_URL"]

#: Where `ratequeue dev` listens: used when neither `url` nor RATEQUEUE_URL is given.
DEFAULT_URL = "http://127.0.0.1:7700"

_NAME_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

#: The server's bounds (ratequeue-core): checked here so a bad value fails before any I/O.
LOAD_MAX = 1_000_000_000_000
WAIT_MS_MAX = 3_600_000
TTL_MS_MIN = 100
TTL_MS_MAX = 24 * 3_600_000
REQUEST_ID_LEN_MAX = 128
#: The server's bound on an acquire's `holder`: 1-128 characters of printable ASCII.
HOLDER_LEN_MAX = 128
#: The host name's share of a holder, so that a label and the pid always fit.
_HOLDER_HOST_LEN_MAX = 64
_HOLDER_RE = re.compile(r"^[ -~]{1,128}$")


@dataclass(frozen=True)
class Timing:
    """Every delay and bound the SDK uses, in seconds unless named otherwise.

    The defaults suit production; tests pass smaller values. All are per call.
    """

    #: How long an acquire waits in the cluster's queue when `timeout` is not given.
    wait_default_s: float = 30.0
    #: TCP connect timeout per attempt, and how long a call keeps trying while no node at
    #: all can be connected to (it then raises `Unavailable` naming every URL tried).
    connect_timeout_s: float = 3.0
    #: Read timeout of release, renew and other short calls.
    request_timeout_s: float = 10.0
    #: An acquire's read timeout is its wait plus this margin, so a long poll is never cut
    #: short by the client.
    acquire_read_margin_s: float = 10.0
    #: How long transient failures (no leader, unreachable node, ambiguous timeouts) are
    #: retried, on top of an acquire's own wait.
    retry_budget_s: float = 30.0
    #: How long a release is retried before it is given up (the lease then lapses at its TTL).
    release_budget_s: float = 10.0
    #: At most this many attempts per call, whatever the budget.
    attempts_max: int = 50
    #: At most this many redirects followed within one attempt.
    redirects_max: int = 5
    #: Exponential backoff with full jitter: attempt n sleeps uniform(0, min(max, initial*2^n)).
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    #: Renew when this fraction of the TTL has passed since the last successful renewal.
    renew_fraction: float = 1.0 / 3.0
    #: Never renew more often than this.
    renew_interval_min_s: float = 0.02
    #: Connection pool bound per client (each waiting acquire holds one connection).
    connections_max: int = 1000
    keepalive_max: int = 100

    def __post_init__(self) -> None:
        for name in (
            "wait_default_s",
            "connect_timeout_s",
            "request_timeout_s",
            "acquire_read_margin_s",
            "retry_budget_s",
            "release_budget_s",
            "backoff_initial_s",
            "backoff_max_s",
            "renew_interval_min_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"Timing.{name} must be >= 0")
        if not 0 < self.renew_fraction < 1:
            raise ValueError("Timing.renew_fraction must be in (0, 1)")
        if self.attempts_max < 1 or self.redirects_max < 0:
            raise ValueError("Timing.attempts_max must be >= 1 and redirects_max >= 0")
        if self.connections_max < 1 or self.keepalive_max < 0:
            raise ValueError("Timing.connections_max must be >= 1")


def resolve_urls(urls: Union[str, Sequence[str], None]) -> List[str]:
    """Node base URLs from the argument, else RATEQUEUE_URL (comma-separated), else the
    dev default. Trailing slashes are dropped; duplicates removed, order kept."""
    if urls is None:
        urls = os.environ.get("RATEQUEUE_URL") or DEFAULT_URL
    parts = urls.split(",") if isinstance(urls, str) else list(urls)
    out: List[str] = []
    for part in parts:
        u = part.strip().rstrip("/")
        if not u:
            continue
        if not (u.startswith("http://") or u.startswith("https://")):
            raise ValueError(f"ratequeue node URL {u!r} must start with http:// or https://")
        if u not in out:
            out.append(u)
    if not out:
        raise ValueError("no ratequeue node URL given")
    return out


def resolve_api_key(api_key: Optional[str]) -> Optional[str]:
    """The API key from the argument, else RATEQUEUE_API_KEY, else None (requests are then
    sent without credentials and the server answers `unauthorized`)."""
    if api_key is None:
        api_key = os.environ.get("RATEQUEUE_API_KEY") or None
    return api_key


@dataclass(frozen=True)
class TLSFiles:
    """Which CAs a client trusts and which certificate it presents to `https://` nodes
    (PEM files; paths only, read when the client is made). All None: the system's trust
    store (or SSL_CERT_FILE / SSL_CERT_DIR) and no client certificate."""

    #: Trust only the CAs in this bundle (RATEQUEUE_CA_FILE).
    ca_file: Optional[str] = None
    #: Present this certificate (leaf first) and key to nodes that require one
    #: (RATEQUEUE_CLIENT_CERT, RATEQUEUE_CLIENT_KEY; nodes started with --api-client-ca).
    client_cert: Optional[str] = None
    client_key: Optional[str] = None

    @property
    def is_default(self) -> bool:
        return self == TLSFiles()


def resolve_tls(
    ca_file: Optional[PathArg] = None,
    client_cert: Optional[PathArg] = None,
    client_key: Optional[PathArg] = None,
) -> TLSFiles:
    """The TLS files from the arguments, else the environment: `ca_file` else
    RATEQUEUE_CA_FILE; the client certificate and key as a pair, from the arguments if
    either is given, else RATEQUEUE_CLIENT_CERT and RATEQUEUE_CLIENT_KEY. Empty values
    count as unset. A certificate without its key (or the reverse) is a ValueError."""

    def given(v: Optional[PathArg]) -> Optional[str]:
        path = os.fspath(v) if v is not None else None
        return path or None

    def env(name: str) -> Optional[str]:
        return os.environ.get(name) or None

    ca = given(ca_file) or env("RATEQUEUE_CA_FILE")
    cert, key = given(client_cert), given(client_key)
    source = "client_cert= and client_key="
    if cert is None and key is None:
        cert, key = env("RATEQUEUE_CLIENT_CERT"), env("RATEQUEUE_CLIENT_KEY")
        source = "RATEQUEUE_CLIENT_CERT and RATEQUEUE_CLIENT_KEY"
    if (cert is None) != (key is None):
        raise ValueError(f"a client certificate needs both its certificate and its key file ({source})")
    return TLSFiles(ca, cert, key)


def check_name(what: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"{what} name must be 1-128 characters of [A-Za-z0-9._:-], got {name!r}")
    return name


def check_load(what: str, load: int) -> int:
    if isinstance(load, bool) or not isinstance(load, int):
        raise TypeError(f"{what} must be an int, got {type(load).__name__}")
    if not 0 <= load <= LOAD_MAX:
        raise ValueError(f"{what} must be in 0..={LOAD_MAX}, got {load}")
    return load


def seconds_to_ms(what: str, seconds: float, lo: int, hi: int) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{what} must be a number of seconds")
    ms = int(round(seconds * 1000))
    if not lo <= ms <= hi:
        raise ValueError(f"{what} must be between {lo / 1000:g} and {hi / 1000:g} seconds")
    return ms


def check_holder_label(label: str) -> str:
    """A holder label: 1-128 characters of printable ASCII (space to `~`), as the server
    requires of `holder`."""
    if not isinstance(label, str) or not _HOLDER_RE.match(label):
        raise ValueError(f"holder label must be 1-{HOLDER_LEN_MAX} characters of printable ASCII, got {label!r}")
    return label


def resolve_holder(label: Optional[str]) -> Optional[str]:
    """The label of a client's leases: the argument, else RATEQUEUE_HOLDER (trimmed; empty
    counts as unset), else None. Checked."""
    if label is None:
        label = os.environ.get("RATEQUEUE_HOLDER", "").strip() or None
        if label is None:
            return None
        try:
            return check_holder_label(label)
        except ValueError as e:
            raise ValueError(f"RATEQUEUE_HOLDER: {e}") from None
    return check_holder_label(label)


def holder(label: Optional[str], host: str, pid: int) -> str:
    """What an acquire sends as `holder`: `<label>@<host>:<pid>`, or `<host>:<pid>`
    without a label. The host name is cut to 64 characters (anything but printable ASCII
    becomes `?`) and the label to what then fits in the server's 128, so host and pid always
    show. `label` must have passed `check_holder_label`."""
    host = "".join(c if " " <= c <= "~" else "?" for c in host[:_HOLDER_HOST_LEN_MAX]) or "unknown-host"
    place = f"{host}:{pid}"
    if label is None:
        return place
    return f"{label[: HOLDER_LEN_MAX - len(place) - 1]}@{place}"


#: (host name, pid) of this process, read at its first acquire: asking the OS on every
#: acquire cost two system calls. Emptied in a forked child, which reads its own pid.
_place: List[Tuple[str, int]] = []
#: `this_process_holder` by label, likewise emptied in a forked child. Bounded, then cleared.
_holders: Dict[Optional[str], str] = {}
HOLDERS_CACHED_MAX = 1024


def this_process_holder(label: Optional[str]) -> str:
    """`holder` for this host and process (the pid of the caller: a forked worker names
    itself, not its parent)."""
    h = _holders.get(label)
    if h is None:
        if not _place:
            _place.append((socket.gethostname(), os.getpid()))
        host, pid = _place[0]
        h = holder(label, host, pid)
        if len(_holders) >= HOLDERS_CACHED_MAX:
            _holders.clear()
        _holders[label] = h
    return h


def _after_fork_in_child() -> None:
    _place.clear()
    _holders.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
