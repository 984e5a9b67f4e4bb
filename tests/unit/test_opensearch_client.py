import base64

import pytest

from es_rerank.errors import ConfigError
from es_rerank.engine.client import make_client, redact, resolve_url, uses_local_node


def test_explicit_beats_env_beats_local():
    env = {"OPENSEARCH_URL": "https://cluster.example:9200/"}
    assert resolve_url("http://a:1", env) == "http://a:1"
    assert resolve_url(None, env) == "https://cluster.example:9200"
    assert resolve_url(None, {}) == "http://127.0.0.1:9200"
    assert uses_local_node(resolve_url(None, {})) and not uses_local_node(resolve_url(None, env))


def test_bad_url_is_refused():
    with pytest.raises(ConfigError, match="not an http"):
        resolve_url("127.0.0.1:9200", {})


def test_credentials_in_url_are_used_and_redacted():
    client = make_client("https://admin:s3cret@search.example:9243")
    conn = client.transport.connection_pool.connections[0]
    assert conn.host == "https://search.example:9243"
    assert conn.headers["authorization"] == "Basic " + base64.b64encode(b"admin:s3cret").decode()
    assert redact("https://admin:s3cret@search.example:9243") == "https://admin:***@search.example:9243"
