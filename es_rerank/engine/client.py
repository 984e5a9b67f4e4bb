"""Which cluster to talk to (OpenSearch or Elasticsearch), and an opensearch-py client for it.

`OPENSEARCH_URL` points every command at a user's own cluster; without it, commands use the
local node that `es-rerank opensearch start` runs.

Example:
    >>> resolve_url(None, env={})
    'http://127.0.0.1:9200'
    >>> resolve_url(None, env={"OPENSEARCH_URL": "https://search.example:9200"})
    'https://search.example:9200'
"""

from __future__ import annotations

import os
from typing import Mapping
from urllib.parse import urlsplit

from es_rerank.engine.engine_profile import engine_and_version
from es_rerank.errors import ConfigError, OpenSearchUnavailable
from es_rerank.engine.local_node.node import DEFAULT_PORT

LOCAL_URL = f"http://127.0.0.1:{DEFAULT_PORT}"


def resolve_url(explicit: str | None, env: Mapping[str, str] | None = None) -> str:
    """An explicit URL wins, then `OPENSEARCH_URL`, then the local node."""
    env = os.environ if env is None else env
    url = explicit or env.get("OPENSEARCH_URL") or LOCAL_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"OpenSearch URL {url!r} is not an http(s) URL", hint="use e.g. http://127.0.0.1:9200")
    return url.rstrip("/")


def uses_local_node(url: str) -> bool:
    """True when `url` is the local node's default address (so commands may start it)."""
    return url.rstrip("/") == LOCAL_URL


def make_client(url: str, timeout_s: float = 60.0, http_compress: bool = False, verify_certs: bool = True):
    """Build an opensearch-py client; credentials may ride in the URL (`https://user:pass@host`).
    """
    from opensearchpy import OpenSearch

    parts = urlsplit(url)
    auth = (parts.username, parts.password or "") if parts.username else None
    host = {"host": parts.hostname, "port": parts.port or (443 if parts.scheme == "https" else 80)}
    if parts.path and parts.path != "/":
        host["url_prefix"] = parts.path
    return OpenSearch(
        hosts=[host],
        http_auth=auth,
        use_ssl=parts.scheme == "https",
        verify_certs=verify_certs,
        ssl_show_warn=verify_certs,
        timeout=timeout_s,
        http_compress=http_compress,
        max_retries=2,
        retry_on_timeout=False,
    )


def check_reachable(client, url: str) -> str:
    """Return the cluster's version, or raise an error that says how to get a cluster."""
    from opensearchpy.exceptions import OpenSearchException

    try:
        return engine_and_version(client)[1] or "unknown"
    except OpenSearchException as exc:
        hint = "start the local node with `es-rerank opensearch start`" if uses_local_node(url) else \
            "check OPENSEARCH_URL and that the cluster is up"
        raise OpenSearchUnavailable(f"OpenSearch at {redact(url)} is not reachable: {exc}", hint=hint) from exc


def redact(url: str) -> str:
    """Hide the password in a URL before it is printed or logged.

    Example:
        >>> redact("https://admin:secret@host:9200")
        'https://admin:***@host:9200'
    """
    parts = urlsplit(url)
    if not parts.password:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
