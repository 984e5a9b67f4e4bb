"""Abuse cases at the HTTP framing layer: ambiguous lengths, broken chunks, oversized and flooded headers.

Every request here carries a second request behind the ambiguous part (it would create
`SMUGGLED_INDEX`), so a proxy that framed the message differently from OpenSearch would let
it through. Each must get 400 and a closed connection.

Example:
    >>> names = [case.name for case in FRAMING_CASES]
    >>> "content_length_and_transfer_encoding" in names, len(names) == len(set(names))
    (True, True)
"""

from __future__ import annotations

from lab.reliability.abuse_target import SMUGGLED_INDEX, Expect, RawCase

SMUGGLED = f"PUT /{SMUGGLED_INDEX} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
REJECTED = Expect((400,), closed=True)


def _post(headers: str, body: bytes, path: str = "/_bulk") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n{headers}\r\n"
    return head.encode("latin-1") + body


def _case(name: str, request: bytes, expect: Expect = REJECTED) -> RawCase:
    def build(target: object) -> bytes:
        return request

    return RawCase(name, "framing", build, expect)


CHUNKED_WITH_SMUGGLE = b"0\r\n\r\n" + SMUGGLED

FRAMING_CASES: tuple[RawCase, ...] = (
    _case("content_length_and_transfer_encoding",
          _post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", CHUNKED_WITH_SMUGGLE)),
    _case("transfer_encoding_then_content_length",
          _post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", CHUNKED_WITH_SMUGGLE)),
    _case("duplicate_content_length_different",
          _post("Content-Length: 2\r\nContent-Length: 40\r\n", b"{}" + SMUGGLED)),
    _case("duplicate_content_length_same", _post("Content-Length: 2\r\nContent-Length: 2\r\n", b"{}" + SMUGGLED)),
    _case("content_length_list", _post("Content-Length: 2, 2\r\n", b"{}" + SMUGGLED)),
    _case("content_length_plus_sign", _post("Content-Length: +2\r\n", b"{}" + SMUGGLED)),
    _case("content_length_negative", _post("Content-Length: -1\r\n", b"{}" + SMUGGLED)),
    _case("content_length_hex", _post("Content-Length: 0x2\r\n", b"{}" + SMUGGLED)),
    _case("content_length_overflow", _post("Content-Length: 99999999999999999999999\r\n", b"{}" + SMUGGLED)),
    _case("transfer_encoding_xchunked", _post("Transfer-Encoding: xchunked\r\n", CHUNKED_WITH_SMUGGLE)),
    _case("transfer_encoding_chunked_identity",
          _post("Transfer-Encoding: chunked, identity\r\n", CHUNKED_WITH_SMUGGLE)),
    _case("transfer_encoding_twice",
          _post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", CHUNKED_WITH_SMUGGLE)),
    _case("transfer_encoding_space_before_colon",
          _post("Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", CHUNKED_WITH_SMUGGLE)),
    _case("transfer_encoding_vertical_tab", _post("Transfer-Encoding:\x0bchunked\r\n", CHUNKED_WITH_SMUGGLE)),
    _case("transfer_encoding_folded", _post("Transfer-Encoding:\r\n chunked\r\n", CHUNKED_WITH_SMUGGLE)),
    _case("chunk_size_not_hex", _post("Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n" + CHUNKED_WITH_SMUGGLE)),
    _case("chunk_size_negative", _post("Transfer-Encoding: chunked\r\n", b"-2\r\n{}\r\n" + CHUNKED_WITH_SMUGGLE)),
    _case("chunk_size_overflow",
          _post("Transfer-Encoding: chunked\r\n", b"ffffffffffffffffffff\r\n{}\r\n" + CHUNKED_WITH_SMUGGLE)),
    _case("chunk_data_longer_than_size",
          _post("Transfer-Encoding: chunked\r\n", b"2\r\n{}XX\r\n" + CHUNKED_WITH_SMUGGLE)),
    _case("chunk_bare_lf", _post("Transfer-Encoding: chunked\r\n", b"2\n{}\n0\n\n" + SMUGGLED)),
    # Legal syntax, only long: accepted or refused, the body is re-framed before it goes upstream.
    _case("chunk_extension_flood",
          _post("Transfer-Encoding: chunked\r\n", b"2;" + b"e" * 20000 + b"\r\n{}\r\n0\r\n\r\n"),
          Expect((200, 400))),
    _case("header_oversized", b"GET / HTTP/1.1\r\nHost: proxy\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n" + SMUGGLED),
    _case("header_flood", b"GET / HTTP/1.1\r\nHost: proxy\r\n"
          + b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)) + b"\r\n" + SMUGGLED),
    _case("request_line_oversized", b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: proxy\r\n\r\n" + SMUGGLED),
    _case("header_obsolete_line_folding", b"GET / HTTP/1.1\r\nHost: proxy\r\nX-A: a\r\n b\r\n\r\n" + SMUGGLED),
    _case("header_nul_byte", b"GET / HTTP/1.1\r\nHost: proxy\r\nX-A: a\x00b\r\n\r\n" + SMUGGLED),
    _case("header_name_with_space", b"GET / HTTP/1.1\r\nHost: proxy\r\nX A: b\r\n\r\n" + SMUGGLED),
    _case("bare_lf_line_endings", b"GET / HTTP/1.1\nHost: proxy\n\n" + SMUGGLED),
    _case("missing_host_http11", b"GET / HTTP/1.1\r\n\r\n" + SMUGGLED),
    _case("lowercase_method", b"get / HTTP/1.1\r\nHost: proxy\r\n\r\n" + SMUGGLED),
    _case("unknown_method", b"SMUGGLE / HTTP/1.1\r\nHost: proxy\r\n\r\n" + SMUGGLED),
    _case("http2_preface_on_http1", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SMUGGLED),
    _case("invalid_utf8_in_path", b"GET /\xff\xfe/_search HTTP/1.1\r\nHost: proxy\r\n\r\n" + SMUGGLED),
    _case("http_version_garbage", b"GET / HTTP/9.9\r\nHost: proxy\r\n\r\n" + SMUGGLED, Expect((400, 505), closed=True)),
)
