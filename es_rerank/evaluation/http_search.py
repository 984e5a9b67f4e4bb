"""One `_search` over plain HTTP, keeping the response headers and the latency.

`ab` talks to OpenSearch and to the proxy the same way a user's application does, and it needs
what opensearch-py hides: response headers (the proxy marks BM25 fallbacks there) and the time
each search took end to end.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from es_rerank.errors import ConfigError, OpenSearchUnavailable
from es_rerank.engine.client import redact
from es_rerank.engine.bm25_query import hits_from_response
from es_rerank.types import Hit


@dataclass(frozen=True)
class SearchResult:
    """Hits in served order, response headers (lower-case names) and wall-clock latency."""

    hits: list[Hit]
    headers: dict[str, str] = field(default_factory=dict)
    latency_ms: float = 0.0
    status: int = 200


class SearchEndpoint:
    """A base URL (OpenSearch or the proxy) plus fixed request headers; thread-safe.

    Credentials may ride in the URL (`https://user:pass@host:9200`); they are sent as basic auth
    and never printed.
    """

    def __init__(self, base_url: str, headers: dict[str, str] | None = None, timeout_s: float = 60.0,
                 verify_certs: bool = True) -> None:
        import urllib3

        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"search URL {base_url!r} is not an http(s) URL", hint="use e.g. http://127.0.0.1:8080")
        if timeout_s <= 0:
            raise ConfigError(f"timeout must be positive, got {timeout_s}")
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.base_url = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
        self.display_url = redact(base_url.rstrip("/"))
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
        if parts.username:
            self._headers.update(urllib3.make_headers(basic_auth=f"{parts.username}:{parts.password or ''}"))
        # Connection errors are retried; a request that reached the server is not sent twice.
        retries = urllib3.Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0)
        self._pool = urllib3.PoolManager(
            num_pools=4, maxsize=16, retries=retries,
            timeout=urllib3.Timeout(connect=min(10.0, timeout_s), read=timeout_s),
            cert_reqs="CERT_REQUIRED" if verify_certs else "CERT_NONE",
        )

    def search(self, index: str, body: dict) -> SearchResult:
        """POST `body` to `/{index}/_search`; raise `OpenSearchUnavailable` on any non-200 answer."""
        import urllib3

        url = f"{self.base_url}/{quote(index, safe=',*')}/_search"
        started = time.perf_counter()
        try:
            response = self._pool.request("POST", url, body=json.dumps(body).encode(), headers=self._headers)
        except urllib3.exceptions.HTTPError as exc:
            raise OpenSearchUnavailable(f"search at {self.display_url} failed: {exc}",
                                        hint="check that the server is up and the URL is right") from exc
        latency_ms = (time.perf_counter() - started) * 1000.0
        if response.status != 200:
            reason = response.data[:300].decode("utf-8", "replace")
            raise OpenSearchUnavailable(
                f"search on index {index!r} at {self.display_url} answered HTTP {response.status}: {reason}",
                hint="check the index name and that the proxy is configured for it")
        try:
            payload = json.loads(response.data)
        except json.JSONDecodeError as exc:
            raise OpenSearchUnavailable(f"search at {self.display_url} did not answer JSON: {exc}",
                                        hint="point the URL at OpenSearch or the es-rerank proxy") from exc
        headers = {name.lower(): value for name, value in response.headers.items()}
        return SearchResult(hits_from_response(payload), headers, latency_ms, response.status)

    def close(self) -> None:
        """Release pooled connections."""
        self._pool.clear()
