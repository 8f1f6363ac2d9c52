"""The sans-IO HTTP/1.1 response parser (`_http.ResponseParser`): every framing (length,
chunked, ended by close, none), responses split anywhere across reads, interim 1xx
answers, and the exact error for each way a peer can break the protocol. And the JSON
of requests and responses (`encode_json`, `_protocol._json_body`): the same as `json`'s."""

from __future__ import annotations

import json
from typing import List, Optional

import pytest

from ratequeue._errors import RatequeueError
from ratequeue._http import BODY_LEN_MAX, HEADERS_MAX, ProtocolError, ReadError, Response, ResponseParser, encode_json
from ratequeue._protocol import _json_body

BODY = b'{"state":"released"}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 20\r\n"
    b"date: Fri, 04 Dec 2026 01:28:02 GMT\r\n\r\n" + BODY
)


def parse(data: bytes, chunks: Optional[List[int]] = None, method: str = "POST") -> ResponseParser:
    """Feed `data` whole, or cut at the offsets in `chunks`."""
    p = ResponseParser(method)
    cuts = [0] + (chunks or []) + [len(data)]
    for a, b in zip(cuts, cuts[1:]):
        p.feed(data[a:b])
    return p


def test_a_whole_response_in_one_read() -> None:
    p = parse(ANSWER)
    assert p.response == Response(
        200,
        {"content-type": "application/json", "content-length": "20", "date": "Fri, 04 Dec 2026 01:28:02 GMT"},
        BODY,
    )
    assert p.keep_alive and p.started


def test_a_response_cut_at_every_byte_parses_the_same() -> None:
    for cut in range(1, len(ANSWER)):
        p = parse(ANSWER, [cut])
        assert p.response is not None and p.response.content == BODY, cut
    p = parse(ANSWER, list(range(1, len(ANSWER))))
    assert p.response is not None and p.response.content == BODY


def test_header_names_are_lowered_values_trimmed_and_the_last_repeat_wins() -> None:
    p = parse(b"HTTP/1.1 307 Temporary Redirect\r\nLocation:  http://n2/X  \r\nX-A: 1\r\nx-a:\t2\r\ncontent-length: 0\r\n\r\n")
    assert p.response == Response(307, {"location": "http://n2/X", "x-a": "2", "content-length": "0"}, b"")


def test_a_head_without_headers_and_a_status_without_reason() -> None:
    p = parse(b"HTTP/1.1 204\r\n\r\n")
    assert p.response == Response(204, {}, b"")


def test_chunked_with_extensions_and_trailers() -> None:
    data = b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n4;x=y\r\nabcd\r\n2\r\nef\r\n0\r\nt: 1\r\n\r\n"
    assert parse(data).response == Response(200, {"transfer-encoding": "Chunked"}, b"abcdef")
    p = parse(data, list(range(1, len(data))))
    assert p.response is not None and p.response.content == b"abcdef"


def test_a_body_ended_by_close() -> None:
    p = parse(b"HTTP/1.1 200 OK\r\n\r\nab")
    assert p.response is None and not p.keep_alive
    p.feed(b"cd")
    p.eof()
    assert p.response == Response(200, {}, b"abcd")


def test_bodiless_answers() -> None:
    assert parse(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n").response == Response(
        304, {"content-length": "5"}, b""
    )
    p = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", method="HEAD")
    assert p.response == Response(200, {"content-length": "5"}, b"")


def test_an_interim_answer_is_skipped() -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\n" + ANSWER
    assert parse(data).response == parse(ANSWER).response
    assert parse(data, [10, 30]).response == parse(ANSWER).response


def test_connection_close_and_http_1_0_end_keep_alive() -> None:
    assert not parse(b"HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 0\r\n\r\n").keep_alive
    assert not parse(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").keep_alive


def test_started_says_whether_any_byte_came() -> None:
    p = ResponseParser()
    assert not p.started
    p.feed(b"HT")
    assert p.started and p.response is None


@pytest.mark.parametrize(
    "data, message",
    [
        (b"SSH-2.0-OpenSSH\r\n", "not an HTTP response: b'SSH-2.0-OpenSSH\\r'"),
        (b"\x16\x03\x01\x00", "not an HTTP response: b'\\x16\\x03\\x01\\x00'"),
        (b"HTTP/2 200\r\n\r\n", "not an HTTP/1.1 status line: 'HTTP/2 200'"),
        (b"HTTP/1.1 abc\r\n\r\n", "not an HTTP/1.1 status line: 'HTTP/1.1 abc'"),
        (b"HTTP/1.1\r\n\r\n", "not an HTTP/1.1 status line: 'HTTP/1.1'"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "bad response header line 'no colon'"),
        (b"HTTP/1.1 200 OK\r\n: v\r\n\r\n", "bad response header line ': v'"),
        (b"HTTP/1.1 200 OK\r\n x: v\r\n\r\n", "bad response header line ' x: v'"),
        (b"HTTP/1.1 200 OK\r\nx : v\r\n\r\n", "bad response header line 'x : v'"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", "unsupported transfer-encoding 'gzip'"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "bad content-length '-1'"),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (BODY_LEN_MAX + 1),
            f"response body of {BODY_LEN_MAX + 1} bytes is over {BODY_LEN_MAX}",
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nab", "data after the end of the response"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "bad chunk size b'zz'"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nab\r\n", "chunk not followed by CRLF"),
        (
            b"HTTP/1.1 200 OK\r\n" + b"".join(b"h%d: v\r\n" % i for i in range(HEADERS_MAX + 1)) + b"\r\n",
            f"more than {HEADERS_MAX} response headers",
        ),
    ],
)
def test_protocol_errors(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as ei:
        parse(data)
    assert str(ei.value) == message


def test_data_after_a_whole_response_is_an_error() -> None:
    p = parse(ANSWER)
    with pytest.raises(ProtocolError, match="data after the end of the response"):
        p.feed(b"H")
    p.feed(b"")  # nothing more is fine


def test_a_head_over_the_bound_is_an_error() -> None:
    with pytest.raises(ProtocolError, match="response head over"):
        parse(b"HTTP/1.1 200 OK\r\nx: " + b"a" * 70_000)


def test_the_server_closing_midway_is_a_read_error() -> None:
    for data in (b"", b"HTTP/1.1 200 OK\r\n", ANSWER[:-3]):
        p = parse(data)
        with pytest.raises(ReadError, match="the server closed the connection before a whole response"):
            p.eof()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"load": 1, "priority": -3, "wait_ms": 0, "request_id": "ab" * 16},
        {"holder": 'a "label" \\ é\u2028@host:1', "lane": "x", "ttl_ms": 100},
        {"nested": [1, 2.5, None, True, {"k": "v"}]},
        [1, 2],
        "text",
    ],
)
def test_encode_json_is_compact_json(body: object) -> None:
    assert encode_json(body) == json.dumps(body, separators=(",", ":"))


def test_encode_json_refuses_what_json_refuses() -> None:
    with pytest.raises(TypeError):
        encode_json({"x": object()})


@pytest.mark.parametrize(
    "content, want",
    [
        (b'{"state":"released"}', {"state": "released"}),
        (b'{"a": [1, {"b": "\\u00e9"}]}  \n', {"a": [1, {"b": "é"}]}),
        (b"\xef\xbb\xbf{}", {}),  # json.loads reads a UTF-8 BOM
        (b"", {}),
    ],
)
def test_json_bodies(content: bytes, want: object) -> None:
    assert _json_body(Response(200, {}, content)) == want


@pytest.mark.parametrize("content", [b'{"a": 1} x', b"{", b'{"a": }', b"{\xff}", b"[1]", b"1"])
def test_invalid_json_bodies(content: bytes) -> None:
    with pytest.raises(RatequeueError) as ei:
        _json_body(Response(200, {}, content))
    assert ei.value.code == "invalid_response"
