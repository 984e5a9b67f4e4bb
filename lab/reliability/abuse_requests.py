"""Abuse cases in well-framed requests: hostile bodies, paths, Host tricks, paging values, ext.rerank types.

The deep-JSON bodies nest unknown keys (`{"a": {"a": ...}}`), never real compound queries:
OpenSearch 2.19 dies of a StackOverflowError on a few hundred nested `bool` clauses, and a
case relayed by mistake must fail the case, not kill the node.

Example:
    >>> families = {case.family for case in REQUEST_CASES}
    >>> sorted(families)
    ['body', 'ext_rerank', 'host', 'paging', 'path']
"""

from __future__ import annotations

import gzip
import json
import zlib

from lab.reliability.abuse_target import (UNCONFIGURED_INDEX, AbuseTarget, Expect, RawCase, http_request,
                                                search_request)

PROXY_400 = Expect((400,), error_type="illegal_argument_exception", origin="proxy")
AS_DIRECT = Expect((200, 400, 404, 406, 413, 415), same_as_direct=True, origin="opensearch")
SERVED = Expect((200,), origin="opensearch")
DEEP_LEVELS = 10_000


def _match(target: AbuseTarget, **extra) -> dict:
    return {"query": {"match": {"text": target.query}}, **extra}


def _json(value) -> bytes:
    return json.dumps(value).encode()


def _deep(levels: int) -> bytes:
    """`{"query": {"a": {"a": ... {}}}}`: deep, and harmless to OpenSearch if it ever got it."""
    return b'{"query":' + b'{"a":' * levels + b"{}" + b"}" * levels + b"}"


def _deep_bools(levels: int) -> bytes:
    """A real query: `levels` bool queries, each the only `must` clause of the one above."""
    return (b'{"query":' + b'{"bool":{"must":[' * levels + b'{"match_all":{}}' + b"]}}" * levels + b"}")


def _chunked_count(index: str, body: bytes) -> bytes:
    """A `_count` whose body comes chunked (no Content-Length), as streaming clients send it."""
    head = (f"POST /{index}/_count HTTP/1.1\r\nHost: proxy\r\nX-Opaque-Id: rel-abuse-deep-chunked\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    return head.encode() + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


def _search(name: str, family: str, body, expect: Expect, params: str = "", index: str | None = None,
            content_type: str = "application/json", headers: tuple[tuple[str, str], ...] = ()) -> RawCase:
    """A `_search` case; `body` is bytes or a function of the target giving bytes or a JSON value."""
    def build(target: AbuseTarget) -> bytes:
        value = body(target) if callable(body) else body
        data = value if isinstance(value, bytes) else _json(value)
        return search_request(target, data, params, index=index, opaque_id=f"rel-abuse-{name}",
                              headers=headers, content_type=content_type)

    return RawCase(name, family, build, expect)


def _raw(name: str, family: str, build, expect: Expect) -> RawCase:
    return RawCase(name, family, build, expect)


def _bomb(target: AbuseTarget, compress) -> bytes:
    """A valid search padded with spaces to twice the proxy's body limit, then compressed (about 0.1%)."""
    return compress(_json(_match(target)) + b" " * (2 * target.max_body_bytes))


def _gzip_search(name: str, encoding: str, compress, expect: Expect, index: str | None = None) -> RawCase:
    return _search(name, "body", lambda t: _bomb(t, compress), expect, index=index,
                   headers=(("Content-Encoding", encoding),))


TOO_LARGE = Expect((413,), closed=True, error_type="content_too_long_exception", origin="proxy")
TOO_DEEP = Expect((400,), error_type="parsing_exception", origin="proxy")

BODY_CASES = (
    _search("json_10000_levels_deep", "body", _deep(DEEP_LEVELS),
            Expect((400,), error_type="parsing_exception", origin="proxy")),
    _search("json_10000_levels_deep_arrays", "body", b'{"query":' + b"[" * DEEP_LEVELS + b"]" * DEEP_LEVELS + b"}",
            Expect((400,), error_type="parsing_exception", origin="proxy")),
    _search("json_150_levels_deep", "body", _deep(150), Expect((400,), error_type="parsing_exception", origin="proxy")),
    # Pass-through paths are capped too: nested bool queries a few hundred deep overflow OpenSearch's stack.
    _search("json_10000_levels_deep_unconfigured_index", "body", _deep(DEEP_LEVELS), TOO_DEEP,
            index=UNCONFIGURED_INDEX),
    _search("bool_query_400_levels_deep_unconfigured_index", "body", _deep_bools(400), TOO_DEEP,
            index=UNCONFIGURED_INDEX),
    _raw("json_10000_levels_deep_count", "body",
         lambda t: http_request("POST", f"/{t.index}/_count", _deep(DEEP_LEVELS), opaque_id="rel-abuse-deep-count"),
         TOO_DEEP),
    _raw("bool_query_400_levels_deep_count", "body",
         lambda t: http_request("POST", f"/{t.index}/_count", _deep_bools(400), opaque_id="rel-abuse-deep-bools"),
         TOO_DEEP),
    _raw("bool_query_400_levels_deep_count_chunked", "body", lambda t: _chunked_count(t.index, _deep_bools(400)),
         TOO_DEEP),
    _raw("bool_query_400_levels_deep_msearch", "body",
         lambda t: http_request("POST", "/_msearch", b'{"index":"' + t.index.encode() + b'"}\n' + _deep_bools(400) + b"\n",
                                content_type="application/x-ndjson", opaque_id="rel-abuse-deep-msearch"),
         TOO_DEEP),
    _gzip_search("gzip_bomb", "gzip", gzip.compress, TOO_LARGE),
    _gzip_search("deflate_bomb", "deflate", zlib.compress, TOO_LARGE),
    _search("gzip_not_gzip", "body", b"definitely not gzip",
            Expect((400,), error_type="parse_exception", origin="proxy"), headers=(("Content-Encoding", "gzip"),)),
    _search("gzip_truncated", "body", lambda t: gzip.compress(_json(_match(t)))[:-12], AS_DIRECT,
            headers=(("Content-Encoding", "gzip"),)),
    _search("content_encoding_unsupported", "body", lambda t: _json(_match(t)),
            Expect((415,), error_type="illegal_argument_exception", origin="proxy"),
            headers=(("Content-Encoding", "br"),)),
    _search("gzip_twice", "body", lambda t: gzip.compress(gzip.compress(_json(_match(t)))), AS_DIRECT,
            headers=(("Content-Encoding", "gzip"),)),
    _search("invalid_utf8_body", "body", lambda t: _json(_match(t))[:-4] + b'\xff\xfe"}}}', AS_DIRECT),
    _search("invalid_utf8_in_ext_query_text", "body",
            lambda t: b'{"query":{"match":{"text":"wing"}},"ext":{"rerank":{"query_text":"\xc3\x28"}}}', AS_DIRECT),
    _search("lone_surrogate_in_query", "body", lambda t: _json(_match(t))[:-4] + b' \\ud800"}}}',
            Expect((200,), same_as_direct=True, origin="opensearch")),
    _search("utf8_bom_prefix", "body", lambda t: b"\xef\xbb\xbf" + _json(_match(t)), AS_DIRECT),
    _search("utf16_body", "body", lambda t: json.dumps(_match(t)).encode("utf-16"), AS_DIRECT),
    _search("nan_literal", "body", lambda t: _json(_match(t))[:-1] + b',"min_score":NaN}', AS_DIRECT),
    _search("infinity_literal", "body", lambda t: _json(_match(t))[:-1] + b',"min_score":-Infinity}', AS_DIRECT),
    _search("duplicate_keys", "body", lambda t: b'{"size":1,"size":2,' + _json(_match(t))[1:], AS_DIRECT),
    _search("duplicate_ext_rerank", "body",
            lambda t: _json(_match(t))[:-1] + b',"ext":{"rerank":{"window":5},"rerank":{"window":6}}}', AS_DIRECT),
    _search("truncated_json", "body", lambda t: _json(_match(t))[:-2], AS_DIRECT),
    _search("json_array_body", "body", b"[1, 2, 3]", AS_DIRECT),
    _search("json_text_plain_content_type", "body", lambda t: _json(_match(t)), AS_DIRECT,
            content_type="text/plain"),
    _search("huge_rerank_query_text", "body", lambda t: _match(t, size=3, ext={"rerank": {"query_text": "wing " * 20000}}),
            Expect((200,), origin="opensearch")),
    _search("huge_match_query", "body", lambda t: {"query": {"match": {"text": "wing " * 20000}}}, AS_DIRECT),
)

PATH_CASES = tuple(
    _raw(f"path_{name}", "path",
         lambda t, p=path: http_request("GET", p.format(index=t.index), opaque_id="rel-abuse-path"), PROXY_400)
    for name, path in (
        ("dot_dot", "/{index}/../_cluster/settings"),
        ("encoded_dot_dot", "/{index}/%2e%2e/_cluster/settings"),
        ("encoded_dot_dot_upper", "/{index}/%2E%2E/_cluster/settings"),
        ("half_encoded_dot_dot", "/{index}/.%2e/_cluster/settings"),
        ("dot_segment", "/./_cluster/health"),
        ("trailing_dot_dot", "/{index}/_search/.."),
        ("raw_backslash", "/{index}\\..\\_cluster"),
    )
) + tuple(
    _raw(f"path_{name}", "path",
         lambda t, p=path: http_request("GET", p.format(index=t.index), opaque_id="rel-abuse-path"), AS_DIRECT)
    for name, path in (
        ("double_encoded_dot_dot", "/{index}/%252e%252e/_cluster/settings"),
        # Encoded slashes are data inside one segment (ids holding URLs, date math): relayed as sent.
        ("encoded_slash", "/{index}%2F_doc/1"),
        ("encoded_slash_lower", "/{index}%2f..%2f_cluster/settings"),
        ("encoded_backslash", "/{index}%5C..%5C_cluster"),
        ("encoded_nul", "/{index}%00/_search"),
        ("dot_dot_semicolon", "/{index}/..;/_cluster/settings"),
        ("overlong_utf8_dots", "/{index}/%c0%ae%c0%ae/_cluster/settings"),
        ("fullwidth_dots", "/{index}/%EF%BC%8E%EF%BC%8E/_cluster/settings"),
    )
)


def _decoy_target(path: str):
    """A request-target aimed at the decoy: `{decoy}` becomes its host:port."""
    return lambda t: http_request("GET", path.format(decoy=t.decoy.address, index=t.index), opaque_id="rel-abuse-host")


def _decoy_header(name: str, value: str, path: str = "/"):
    return lambda t: http_request("GET", path, headers=((name, value.format(decoy=t.decoy.address)),),
                                  opaque_id="rel-abuse-host")


def _decoy_host(t: AbuseTarget) -> bytes:
    return http_request("GET", "/", opaque_id="rel-abuse-host", host=t.decoy.address)


REFUSED = Expect((400, 404, 405))
HOST_CASES = (
    _raw("host_header_names_decoy", "host", _decoy_host, SERVED),
    _raw("x_forwarded_host_names_decoy", "host", _decoy_header("X-Forwarded-Host", "{decoy}"), SERVED),
    _raw("forwarded_header_names_decoy", "host", _decoy_header("Forwarded", "host={decoy};proto=http"), SERVED),
    _raw("x_original_url_names_decoy", "host", _decoy_header("X-Original-URL", "http://{decoy}/"), SERVED),
    _raw("upgrade_h2c", "host", _decoy_header("Upgrade", "h2c"), Expect((200, 400), origin="")),
    _raw("absolute_uri_to_decoy", "host", _decoy_target("http://{decoy}/"), PROXY_400),
    _raw("absolute_uri_https_to_decoy", "host", _decoy_target("https://{decoy}/_search"), PROXY_400),
    _raw("absolute_uri_with_userinfo", "host", _decoy_target("http://user@{decoy}/"), PROXY_400),
    _raw("absolute_uri_search_path", "host", _decoy_target("http://{decoy}/{index}/_search"), PROXY_400),
    _raw("authority_form_connect", "host",
         lambda t: f"CONNECT {t.decoy.address} HTTP/1.1\r\nHost: {t.decoy.address}\r\n\r\n".encode(), REFUSED),
    _raw("asterisk_form_options", "host", lambda t: b"OPTIONS * HTTP/1.1\r\nHost: proxy\r\n\r\n", REFUSED),
    _raw("at_sign_target", "host", _decoy_target("@{decoy}/"), REFUSED),
    _raw("encoded_double_slash_to_decoy", "host", _decoy_target("/%2F%2F{decoy}/"), AS_DIRECT),
    _raw("backslashes_to_decoy", "host", _decoy_target("/\\\\{decoy}/"), PROXY_400),
    _raw("double_slash_to_decoy", "host",
         lambda t: http_request("GET", f"//{t.decoy.address}/", opaque_id="rel-abuse-host"), AS_DIRECT),
    _raw("url_in_path_to_decoy", "host",
         lambda t: http_request("GET", f"/http://{t.decoy.address}/", opaque_id="rel-abuse-host"), AS_DIRECT),
)

PAGING_CASES = (
    _search("size_2_pow_31_url", "paging", _match, AS_DIRECT, params="size=2147483648"),
    _search("from_2_pow_31_url", "paging", _match, AS_DIRECT, params="from=2147483648"),
    _search("size_beyond_int64_url", "paging", _match, AS_DIRECT, params="size=100000000000000000000"),
    _search("size_beyond_int64_body", "paging", lambda t: _match(t, size=10 ** 20), AS_DIRECT),
    _search("from_beyond_int64_body", "paging", lambda t: _match(t, **{"from": 10 ** 20}), AS_DIRECT),
    _search("size_1e400_body", "paging", lambda t: _json(_match(t))[:-1] + b',"size":1e400}', AS_DIRECT),
    _search("size_negative_body", "paging", lambda t: _match(t, size=-1), AS_DIRECT),
    _search("from_negative_url", "paging", _match, AS_DIRECT, params="from=-5"),
    _search("size_fraction_body", "paging", lambda t: _match(t, size=10.5), AS_DIRECT),
    _search("size_text_url", "paging", _match, AS_DIRECT, params="size=ten"),
    _search("size_as_string_body", "paging", lambda t: _match(t, size="3"), Expect((200,), same_as_direct=True)),
    _search("page_ends_at_max_result_window", "paging", lambda t: _match(t, size=10, **{"from": 9990}),
            Expect((200,), same_as_direct=True)),
    _search("page_past_max_result_window", "paging", lambda t: _match(t, size=10, **{"from": 9995}), AS_DIRECT),
    _search("size_max_result_window", "paging", lambda t: _match(t, size=10000), Expect((200,), same_as_direct=True)),
)


def _knobs(name: str, rerank) -> RawCase:
    return _search(f"ext_rerank_{name}", "ext_rerank", lambda t: _match(t, ext={"rerank": rerank}), PROXY_400)


EXT_CASES = tuple(_knobs(name, value) for name, value in (
    ("is_list", []), ("is_string", "on"), ("is_number", 5), ("is_null", None), ("is_true", True),
    ("window_string", {"window": "10"}), ("window_float", {"window": 10.5}), ("window_bool", {"window": True}),
    ("window_zero", {"window": 0}), ("window_negative", {"window": -1}), ("window_huge", {"window": 10 ** 30}),
    ("window_null", {"window": None}), ("enabled_string", {"enabled": "false"}), ("enabled_number", {"enabled": 0}),
    ("provenance_string", {"provenance": "yes"}), ("fields_number", {"fields": 5}), ("fields_empty", {"fields": []}),
    ("fields_numbers", {"fields": [1, 2]}), ("fields_empty_name", {"fields": [""]}), ("fields_object", {"fields": {"a": 1}}),
    ("query_text_number", {"query_text": 5}), ("query_text_empty", {"query_text": ""}),
    ("query_text_blank", {"query_text": "   "}), ("query_text_list", {"query_text": ["wing"]}),
    ("unknown_key", {"windw": 5}),
)) + (
    # OpenSearch's own 400; its line/col differ because the proxy re-serialised the (reranked) body.
    _search("ext_is_list", "ext_rerank", lambda t: _match(t, ext=[]),
            Expect((400,), error_type="parsing_exception", origin="opensearch")),
    _search("ext_rerank_window_beyond_result_window", "ext_rerank", lambda t: _match(t, ext={"rerank": {"window": 100}}),
            Expect((200,), origin="opensearch"), params="from=9950&size=50"),
)

REQUEST_CASES: tuple[RawCase, ...] = BODY_CASES + PATH_CASES + HOST_CASES + PAGING_CASES + EXT_CASES
