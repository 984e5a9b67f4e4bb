"""Body limits, gzip inflation, JSON depth, path checks and error shapes."""

import gzip
import json

import pytest

from es_rerank.proxy.httperror import ProxyHTTPError, error_body
from es_rerank.proxy.limits import check_declared_length, check_json_depth, inflate, json_depth
from es_rerank.proxy.paths import check_path


def test_declared_length_over_the_limit_is_413():
    check_declared_length(None, 10)
    check_declared_length(10, 10)
    with pytest.raises(ProxyHTTPError) as caught:
        check_declared_length(11, 10)
    assert caught.value.status == 413 and caught.value.close


def test_gzip_and_deflate_bodies_inflate_within_the_limit():
    body = json.dumps({"query": {"match_all": {}}}).encode()
    assert inflate(gzip.compress(body), "gzip", 1000) == body
    import zlib
    assert inflate(zlib.compress(body), "deflate", 1000) == body


def test_a_zip_bomb_stops_at_the_limit():
    bomb = gzip.compress(b"0" * 10_000_000)
    with pytest.raises(ProxyHTTPError) as caught:
        inflate(bomb, "gzip", 1000)
    assert caught.value.status == 413


def test_unknown_encoding_and_corrupt_data():
    with pytest.raises(ProxyHTTPError) as caught:
        inflate(b"x", "br", 10)
    assert caught.value.status == 415
    with pytest.raises(ProxyHTTPError) as caught:
        inflate(b"garbage", "gzip", 10)
    assert caught.value.status == 400


def test_json_depth():
    assert json_depth({"a": [1, {"b": []}]}) == 4
    deep = []
    for _ in range(5000):
        deep = [deep]
    assert json_depth(deep) == 5001  # no recursion limit
    with pytest.raises(ProxyHTTPError):
        check_json_depth(deep, 100)


@pytest.mark.parametrize("path", ["/a/../b", "/a/%2e%2E/b", "/a/./b", "/a\\b",
                                  "*", "http://evil/x"])
def test_paths_the_proxy_refuses(path):
    with pytest.raises(ProxyHTTPError) as caught:
        check_path(path)
    assert caught.value.status == 400


@pytest.mark.parametrize("path", ["/", "/idx/_doc/a%20b", "/_cat/indices", "/a..b/_search", "/idx/_doc/x.y",
                                  "/a%2fb", "/a%2Fb/_doc", "/a%5cb", "/idx/_doc/a%2F..%2Fb"])
def test_paths_the_proxy_relays(path):
    check_path(path)


def test_error_body_has_opensearch_shape():
    body = json.loads(error_body(429, "rejected_execution_exception", "busy"))
    assert body == {"error": {"root_cause": [{"type": "rejected_execution_exception", "reason": "busy"}],
                              "type": "rejected_execution_exception", "reason": "busy"}, "status": 429}
