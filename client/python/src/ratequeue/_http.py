"""HTTP/1.1 for the SDK, sans-IO: the request and response types, the transport errors, the
encoding of a request and an incremental response parser. The connection pools of
`_async_transport.py` / `_sync_transport.py` move the bytes.

Owns: `Request`, `Response`, the `TransportError` hierarchy, `Origin`, `encode_request`,
`ResponseParser`, `MockTransport` (tests). Must never do I/O. Why not httpx: it costs
several milliseconds per call and caps one process at about a hundred acquire+release
pairs per second (docs/benchmarks.md, "Python SDK"); the API needs only keep-alive
HTTP/1.1 with JSON bodies.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, Optional, Protocol, Tuple, Union
from urllib.parse import urlsplit

__all__ = [
    "Request",
    "Response",
    "Origin",
    "Timeouts",
    "TransportError",
    "ConnectError",
    "ConnectTimeout",
    "PoolTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "ReadError",
    "WriteError",
    "ProtocolError",
    "TLSError",
    "MockTransport",
    "AsyncTransport",
    "SyncTransport",
    "encode_request",
    "encode_headers",
    "encode_json",
    "HeaderCache",
    "ResponseParser",
]

#: Bounds on what a server may send us: a response head, and a body (the API's largest
#: answers are resource and key lists, well below this).
HEAD_LEN_MAX = 64 * 1024
BODY_LEN_MAX = 64 * 1024 * 1024
HEADERS_MAX = 100


class TransportError(Exception):
    """The request did not get an HTTP response. Subclasses say whether it may have
    reached the server."""


class ConnectError(TransportError):
    """No connection could be made (refused, unreachable, name not resolved): the request
    never reached the server."""


class ConnectTimeout(ConnectError):
    """The connection was not established within the connect timeout."""


class PoolTimeout(TransportError):
    """Every connection of the pool stayed busy for the connect timeout: never sent."""


class ReadTimeout(TransportError):
    """The request was sent but no (complete) answer came in time: it may have been
    applied."""


class WriteTimeout(TransportError):
    """The request could not be written in time: it may have partly reached the server."""


class ReadError(TransportError):
    """The connection failed or closed while the answer was awaited."""


class WriteError(TransportError):
    """The connection failed while the request was written."""


class ProtocolError(TransportError):
    """The peer does not speak HTTP/1.1 (for example a TLS port asked in plain text), or
    broke the protocol. Retrying the same URL cannot help."""


class TLSError(TransportError):
    """The TLS handshake failed (for example `https://` against a plain-text port, or a
    certificate that does not verify). Retrying the same URL cannot help."""


@dataclass(frozen=True)
class Origin:
    """Where a connection goes: scheme, host and port of a URL."""

    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


#: Origins parsed so far, by the URL's scheme and authority (a client talks to a handful
#: of nodes); bounded, then cleared.
_origins: Dict[str, Origin] = {}
ORIGINS_CACHED_MAX = 1024


def split_url(url: str) -> Tuple[Origin, str]:
    """(origin, request target) of an absolute http(s) URL."""
    scheme_end = url.find("://")
    path_at = url.find("/", scheme_end + 3) if scheme_end > 0 else -1
    if path_at > 0 and "?" not in url and "#" not in url:
        origin = _origins.get(url[:path_at])
        if origin is not None:
            return origin, url[path_at:]
        origin, target = _split_url(url)
        if len(_origins) >= ORIGINS_CACHED_MAX:
            _origins.clear()
        _origins[url[:path_at]] = origin
        return origin, target
    return _split_url(url)


def _split_url(url: str) -> Tuple[Origin, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"bad port in URL {url!r}") from e
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Origin(parts.scheme, parts.hostname, port), target


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed to connect, to write the request, to receive the whole answer (a
    long poll's wait plus a margin), and to get a connection from a full pool."""

    connect: float = 3.0
    write: float = 10.0
    read: float = 10.0
    pool: float = 3.0


@dataclass
class Request:
    """One request. `headers` keys are lower-case."""

    method: str
    url: str
    headers: Dict[str, str] = field(default_factory=dict)
    content: bytes = b""
    timeouts: Timeouts = field(default_factory=Timeouts)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def json(self) -> Any:
        return json.loads(self.content) if self.content else None


@dataclass
class Response:
    """One response. `headers` keys are lower-case (a repeated header keeps its last
    value)."""

    status_code: int
    headers: Dict[str, str] = field(default_factory=dict)
    content: bytes = b""

    @staticmethod
    def of_json(
        status_code: int, body: Any, headers: Optional[Dict[str, str]] = None
    ) -> "Response":
        h = {k.lower(): v for k, v in (headers or {}).items()}
        h.setdefault("content-type", "application/json")
        return Response(status_code, h, json.dumps(body).encode())

    def json(self) -> Any:
        return json.loads(self.content) if self.content else None


def encode_headers(headers: Dict[str, str]) -> bytes:
    """The header lines of `headers`, each ended by CRLF (refusing a line break inside)."""
    out = []
    for k, v in headers.items():
        if "\r" in v or "\n" in v or "\r" in k or "\n" in k:
            raise ValueError(f"header {k!r} contains a line break")
        out.append(f"{k}: {v}\r\n")
    return "".join(out).encode("latin-1")


class HeaderCache:
    """The encoded lines of the last headers dict seen, reused while the same dict (by
    identity: a client sends its own dict with every request) comes again."""

    def __init__(self) -> None:
        self._last: Tuple[Optional[Dict[str, str]], bytes] = (None, b"")

    def encode(self, headers: Dict[str, str]) -> bytes:
        last, lines = self._last  # one read: other threads may replace it
        if last is not headers:
            lines = encode_headers(headers)
            self._last = (headers, lines)
        return lines


def encode_request(
    method: str, target: str, host: str, headers: Dict[str, str], body: bytes, header_lines: Optional[bytes] = None
) -> bytes:
    """The bytes of a keep-alive HTTP/1.1 request: one buffer, so it leaves in one write.
    `header_lines` are `headers` already encoded (`encode_headers`), if at hand."""
    if header_lines is None:
        header_lines = encode_headers(headers)
    if body or method in ("POST", "PUT", "PATCH"):
        end = b"content-length: %d\r\n\r\n" % len(body)
    else:
        end = b"\r\n"
    return b"".join((f"{method} {target} HTTP/1.1\r\nhost: {host}\r\n".encode("latin-1"), header_lines, end, body))


#: JSON as the API reads it: compact. One encoder for the process (json.dumps with
#: separators builds a new one per call).
_encoder = json.JSONEncoder(separators=(",", ":"))
#: Its C core, made once (`JSONEncoder.encode` makes it again for every call), without
#: the check for circular references: the SDK encodes only bodies it built itself.
_encode_chunks = (
    json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _encoder.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
    )
    if getattr(json.encoder, "c_make_encoder", None) is not None
    else None
)


def encode_json(body: Any) -> str:
    """`body` as compact JSON (what `json.dumps(body, separators=(",", ":"))` gives)."""
    if _encode_chunks is not None and type(body) is dict:
        return "".join(_encode_chunks(body, 0))
    return _encoder.encode(body)


class ResponseParser:
    """Feed it the bytes read from a connection; `response` is set once one whole response
    has arrived. Handles `content-length`, chunked bodies, bodies ended by the connection
    closing, and bodiless statuses. `keep_alive` says whether the connection may carry
    the next request. Bytes past the response are a protocol error (no pipelining)."""

    def __init__(self, method: str = "POST") -> None:
        self._method = method
        self._buf = bytearray()
        self._status = 0
        self._headers: Dict[str, str] = {}
        self._head_done = False
        # Body framing once the head is parsed: ("length", n), ("chunked", None),
        # ("close", None) or ("none", None).
        self._framing: Tuple[str, Optional[int]] = ("none", None)
        self._body = bytearray()
        self._chunk_left: Optional[int] = None  # chunked: bytes left in the current chunk
        self._trailers = False
        self.response: Optional[Response] = None
        self.keep_alive = True

    @property
    def started(self) -> bool:
        """Whether any byte of a response arrived (a stale keep-alive connection closes
        before sending any)."""
        return self._head_done or bool(self._buf)

    def feed(self, data: bytes) -> None:
        if self.response is not None:
            if data:
                raise ProtocolError("data after the end of the response")
            return
        if not self._head_done and not self._buf:
            # The usual case: this read starts the response and holds its whole head (and
            # mostly its body), parsed without copying it into the buffer first.
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                if self._head(data[: end + 2].decode("latin-1")):
                    kind, n = self._framing
                    if kind == "length" and len(data) - end - 4 == n:
                        self.response = Response(self._status, self._headers, data[end + 4 :])
                        return
                    self._buf += data[end + 4 :]
                    self._parse_body()
                    return
                data = data[end + 4 :]  # an interim answer: the real one follows
        self._buf += data
        if not self._head_done:
            self._parse_head()
            if not self._head_done:
                return
        self._parse_body()

    def eof(self) -> None:
        """The peer closed the connection."""
        if self.response is not None:
            return
        if self._head_done and self._framing[0] == "close":
            self._body += self._buf
            self._buf.clear()
            self._finish()
            return
        raise ReadError("the server closed the connection before a whole response")

    def _parse_head(self) -> None:
        buf = self._buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > HEAD_LEN_MAX:
                    raise ProtocolError(f"response head over {HEAD_LEN_MAX} bytes")
                if buf and not bytes(buf[:5]).startswith(b"HTTP/"[: len(buf)]):
                    raise ProtocolError(f"not an HTTP response: {bytes(buf[:16])!r}")
                return
            head = buf[: end + 2].decode("latin-1")
            del buf[: end + 4]
            if self._head(head) or not buf:
                return
            # An interim answer (100 Continue) with more after it: the real one follows.

    def _head(self, head: str) -> bool:
        """Parse a response head (the status line and the header lines, each ended by
        CRLF); False for an interim (1xx) answer, which is dropped."""
        line_end = head.find("\r\n")
        status_line = head[:line_end].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
            raise ProtocolError(f"not an HTTP/1.1 status line: {head[:line_end][:60]!r}")
        status = int(status_line[1])
        lines = head[line_end + 2 : -2].split("\r\n") if len(head) > line_end + 2 else []
        if len(lines) > HEADERS_MAX:
            raise ProtocolError(f"more than {HEADERS_MAX} response headers")
        headers: Dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise ProtocolError(f"bad response header line {line[:60]!r}")
            headers[name.lower()] = value.strip()
        if 100 <= status < 200:
            return False
        self._status = status
        self._headers = headers
        self._head_done = True
        if status_line[0] == "HTTP/1.0" or ("connection" in headers and headers["connection"].lower() == "close"):
            self.keep_alive = False
        if self._method == "HEAD" or status in (204, 304):
            self._framing = ("none", None)
        elif "transfer-encoding" in headers and headers["transfer-encoding"]:
            te = headers["transfer-encoding"].lower()
            if te != "chunked":
                raise ProtocolError(f"unsupported transfer-encoding {te!r}")
            self._framing = ("chunked", None)
        elif "content-length" in headers:
            cl = headers["content-length"]
            if not cl.isdigit():
                raise ProtocolError(f"bad content-length {cl!r}")
            n = int(cl)
            if n > BODY_LEN_MAX:
                raise ProtocolError(f"response body of {n} bytes is over {BODY_LEN_MAX}")
            self._framing = ("length", n)
        else:
            self._framing = ("close", None)
            self.keep_alive = False
        return True

    def _parse_body(self) -> None:
        kind, n = self._framing
        if kind == "none":
            self._finish()
        elif kind == "length":
            assert n is not None
            buf = self._buf
            if len(buf) >= n:
                self._buf = bytearray()
                self.response = Response(self._status, self._headers, bytes(buf[:n]) if len(buf) > n else bytes(buf))
                if len(buf) > n:
                    raise ProtocolError("data after the end of the response")
        elif kind == "close":
            self._body += self._buf
            self._buf.clear()
            if len(self._body) > BODY_LEN_MAX:
                raise ProtocolError(f"response body over {BODY_LEN_MAX} bytes")
        else:
            self._parse_chunks()

    def _parse_chunks(self) -> None:
        while True:
            if self._trailers:
                end = self._buf.find(b"\r\n")
                if end < 0:
                    return
                line = bytes(self._buf[:end])
                del self._buf[: end + 2]
                if not line:
                    self._finish()
                    if self._buf:
                        raise ProtocolError("data after the end of the response")
                    return
                continue
            if self._chunk_left is None:
                end = self._buf.find(b"\r\n")
                if end < 0:
                    if len(self._buf) > 1024:
                        raise ProtocolError("chunk size line too long")
                    return
                size_text = bytes(self._buf[:end]).split(b";", 1)[0].strip()
                del self._buf[: end + 2]
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
                if size == 0:
                    self._trailers = True
                    continue
                if len(self._body) + size > BODY_LEN_MAX:
                    raise ProtocolError(f"response body over {BODY_LEN_MAX} bytes")
                self._chunk_left = size
            if len(self._buf) < self._chunk_left + 2:
                return
            self._body += self._buf[: self._chunk_left]
            if self._buf[self._chunk_left : self._chunk_left + 2] != b"\r\n":
                raise ProtocolError("chunk not followed by CRLF")
            del self._buf[: self._chunk_left + 2]
            self._chunk_left = None

    def _finish(self) -> None:
        self.response = Response(self._status, self._headers, bytes(self._body))


class AsyncTransport(Protocol):
    """What `aio.Client(transport=...)` accepts: the connection pool, or a stand-in."""

    async def handle_async_request(self, request: Request) -> Response: ...

    async def aclose(self) -> None: ...


class SyncTransport(Protocol):
    """What `Client(transport=...)` accepts: the connection pool, or a stand-in."""

    def handle_request(self, request: Request) -> Response: ...

    def close(self) -> None: ...


Handler = Callable[[Request], Union[Response, Awaitable[Response]]]


class MockTransport:
    """A transport that hands every request to `handler` (a function, or a coroutine
    function for the asyncio client) instead of the network: `Client(...,
    transport=MockTransport(handler))`. The handler returns a `Response` or raises a
    `TransportError`."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    def handle_request(self, request: Request) -> Response:
        r = self._handler(request)
        if inspect.isawaitable(r):
            raise TypeError("MockTransport with a coroutine handler needs the asyncio client")
        assert isinstance(r, Response)
        return r

    async def handle_async_request(self, request: Request) -> Response:
        r = self._handler(request)
        if inspect.isawaitable(r):
            r = await r
        assert isinstance(r, Response)
        return r

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

