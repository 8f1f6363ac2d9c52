"""Connection setup, in one place for both flavours: socket options, the TLS context, the
readiness probe of an idle connection, and the wording of every connection failure (the
blocking and the asyncio transport report the same failure in the same words).

Owns: `tune`, `tls_context`, `idle_ok`, `connect_failure`, `io_failure`, and the process
hooks of every connection pool (`track`: after fork, at exit). TLS options (a CA bundle, a
client certificate: `_config.TLSFiles`) become a context in `tls_context` and nowhere
else.
"""

from __future__ import annotations

import atexit
import errno
import os
import select
import socket
import ssl
import threading
import weakref
from typing import Any, List, Optional

from ._config import TLSFiles
from ._http import (
    ConnectError,
    ConnectTimeout,
    Origin,
    ReadError,
    ReadTimeout,
    TLSError,
    TransportError,
    WriteError,
    WriteTimeout,
)

__all__ = [
    "tune",
    "tls_context",
    "idle_ok",
    "connect_failure",
    "io_failure",
    "forget",
    "track",
    "timed_out",
    "fork_generation",
]

_tls_lock = threading.Lock()
_tls: Optional[ssl.SSLContext] = None


def tls_context(files: Optional[TLSFiles] = None) -> ssl.SSLContext:
    """The TLS context of `https://` nodes, certificates and host names (or IP addresses)
    verified, TLS 1.2 at least.

    Without files (or all None): the system's trust store (or the bundle named by
    SSL_CERT_FILE / SSL_CERT_DIR), built once per process (it costs tens of milliseconds).
    With files: a new context that trusts only the CAs in `ca_file` and presents
    `client_cert` + `client_key`; the files are read now, so a wrong path or file fails
    here (ValueError naming the file), not at the first request. A client makes its
    context once: replaced files are read by a new client."""
    global _tls
    if files is None or files.is_default:
        with _tls_lock:
            if _tls is None:
                _tls = ssl.create_default_context()
            return _tls
    try:
        ctx = ssl.create_default_context(cafile=files.ca_file)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"CA bundle {files.ca_file}: {_file_error(e)}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if files.client_cert is not None and files.client_key is not None:
        try:
            ctx.load_cert_chain(files.client_cert, files.client_key, password=_no_password)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(
                f"client certificate {files.client_cert} / key {files.client_key}: {_file_error(e)}"
            ) from None
    return ctx


def _no_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise ssl.SSLError("the key is encrypted: give an unencrypted PEM key")


def _file_error(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError):
        reason = getattr(e, "reason", None)
        if reason in ("NO_CERTIFICATE_OR_CRL_FOUND", "PEM_LIB", "NO_START_LINE"):
            return f"not PEM ({reason})"
        if reason == "KEY_VALUES_MISMATCH":
            return "the key does not belong to the certificate"
        return str(reason or e)
    if isinstance(e, OSError) and e.errno is not None:
        return _strerror(e.errno)
    return str(e)


def tune(sock: socket.socket) -> None:
    """Options of every connection: requests leave at once (no Nagle delay), and a peer
    that vanished is noticed by TCP keepalive while a long poll waits."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


def idle_ok(sock: socket.socket) -> bool:
    """Whether an idle keep-alive connection can carry a request: nothing to read on it
    (a readable idle connection was closed by the server, or holds stray bytes)."""
    try:
        fd = sock.fileno()
        if fd < 0:
            return False
        if hasattr(select, "poll"):
            p = select.poll()
            p.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
            return not p.poll(0)
        readable, _, _ = select.select([fd], [], [], 0)
        return not readable
    except (OSError, ValueError):
        return False


def forget(sock: socket.socket) -> None:
    """Drop a socket inherited across fork without shutting the connection down (it is
    still the parent's) and without a TLS close alert: close only our descriptor."""
    try:
        fd = sock.detach()
        if fd >= 0:
            os.close(fd)
    except OSError:
        pass


def connect_failure(origin: Origin, exc: BaseException, timeout: float) -> TransportError:
    """The transport error for a failed connection attempt to `origin`."""
    where = f"{origin.scheme}://{origin.netloc}"
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, socket.gaierror):
        err: TransportError = ConnectError(f"{where}: cannot resolve host {origin.host!r}")
    elif isinstance(exc, (socket.timeout, TimeoutError)):
        err = ConnectTimeout(f"{where}: no connection within {timeout:g} s")
    elif isinstance(exc, ssl.SSLError):
        err = TLSError(f"{where}: TLS handshake failed: {_tls_reason(exc)}")
    elif isinstance(exc, OSError) and exc.errno is not None:
        err = ConnectError(f"{where}: {_strerror(exc.errno)}")
    else:
        err = ConnectError(f"{where}: {exc}")
    err.__cause__ = exc
    return err


def io_failure(origin: Origin, exc: BaseException, writing: bool) -> TransportError:
    """The transport error for a connection that failed while a request was written or its
    answer read."""
    where = f"{origin.scheme}://{origin.netloc}"
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, ssl.SSLError):
        err: TransportError = TLSError(f"{where}: TLS error: {_tls_reason(exc)}")
    else:
        what = _strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc) or type(exc).__name__
        cls = WriteError if writing else ReadError
        err = cls(f"{where}: connection failed while {'sending' if writing else 'awaiting the answer'}: {what}")
    err.__cause__ = exc
    return err


def _tls_reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason, what the verifier said, and what to check."""
    reason = getattr(exc, "reason", None) or exc.__class__.__name__
    detail = getattr(exc, "verify_message", None)
    text = f"{reason} ({detail})" if detail else str(reason)
    if reason == "WRONG_VERSION_NUMBER":
        return f"{text}; is it a plain-text http:// port?"
    if reason == "CERTIFICATE_VERIFY_FAILED":
        return f"{text}; the node's certificate must chain to a CA in ca_file= / RATEQUEUE_CA_FILE"
    if "CERTIFICATE_REQUIRED" in reason or reason == "SSLV3_ALERT_HANDSHAKE_FAILURE":
        return f"{text}; the node may require a client certificate (client_cert= / RATEQUEUE_CLIENT_CERT)"
    return text


def timed_out(origin: Origin, what: str) -> TransportError:
    """A read or write that did not complete in time (one wording for both flavours)."""
    where = f"{origin.scheme}://{origin.netloc}"
    if what == "write":
        return WriteTimeout(f"{where}: the request could not be sent in time")
    return ReadTimeout(f"{where}: no answer in time")


def _strerror(code: int) -> str:
    names = {
        errno.ECONNREFUSED: "connection refused",
        errno.ECONNRESET: "connection reset",
        errno.EPIPE: "connection closed",
        errno.EHOSTUNREACH: "host unreachable",
        errno.ENETUNREACH: "network unreachable",
        errno.ETIMEDOUT: "timed out",
    }
    return names.get(code) or os.strerror(code).lower()


_pools: "weakref.WeakSet[Any]" = weakref.WeakSet()

#: How many forks separate this process from the one that imported the SDK: bumped in
#: every forked child before the pools' hooks run. Pools and leases compare it to tell
#: an inherited object from their own, which costs no system call (os.getpid() is one
#: per call: glibc does not cache it, and the SDK asked it five times per request).
_fork_generation = 0


def fork_generation() -> int:
    """The fork generation of this process (see `_fork_generation`)."""
    return _fork_generation


def track(pool: Any) -> None:
    """Register a connection pool for the process hooks: in a forked child its inherited
    connections are dropped (`pool._after_fork()`, which also replaces a lock another thread
    may have held at fork time); at exit its idle connections are closed
    (`pool.close_now()`), so no socket is left for the garbage collector to warn about."""
    _pools.add(pool)


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1
    pools: List[Any] = list(_pools)
    for p in pools:
        p._after_fork()


def _at_exit() -> None:
    pools: List[Any] = list(_pools)
    for p in pools:
        p.close_now()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
