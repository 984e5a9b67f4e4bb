"""A proxy started inside `es-rerank ab --model DIR`, so the reranked side is still what the proxy serves.

The proxy runs on its own event loop in a background thread, on a free port of 127.0.0.1, and
reranks the compared index only. Its rerank deadline is the search timeout: an offline
comparison should measure the model, not fall back to BM25 on a slow CPU.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

from es_rerank.errors import ModelError
from es_rerank.scorer import Scorer


@contextlib.contextmanager
def serve_scorer(scorer: Scorer, opensearch_url: str, index: str, deadline_s: float = 60.0) -> Iterator[str]:
    """Serve `scorer` through a real proxy in front of `opensearch_url`; yield the proxy's URL.

    Credentials in `opensearch_url` are moved onto the yielded URL: the proxy takes none of its
    own and forwards the client's Authorization header.
    """
    from es_rerank.config import IndexRule, ProxySettings, ServerSettings, UpstreamSettings
    from es_rerank.proxy.server import ProxyThread

    parts = urlsplit(opensearch_url)
    upstream = urlunsplit((parts.scheme, _host_port(parts), parts.path, "", ""))
    settings = ProxySettings(UpstreamSettings(upstream), rules=(IndexRule(index, deadline_ms=int(deadline_s * 1000)),),
                             server=ServerSettings(host="127.0.0.1", port=0))
    with ProxyThread(settings, scorer) as proxy:
        batcher = proxy.context.batcher
        # Wait for the model's warm-up call, so the first searches are not measured on a cold model.
        if not batcher.warm.wait(deadline_s):
            raise ModelError(f"the model did not finish its warm-up call within {deadline_s:g}s",
                             hint="raise --timeout or check the model")
        if batcher.warm_error:
            raise ModelError(f"the model failed its warm-up call: {batcher.warm_error}",
                             hint="check the export with `es-rerank bench` or re-export it")
        yield _with_credentials(proxy.url, parts.username, parts.password)


@contextlib.contextmanager
def serve_model(model_dir: Path, opensearch_url: str, index: str, deadline_s: float = 60.0) -> Iterator[str]:
    """Load an exported model (ONNX) and serve it as in `serve_scorer`."""
    try:
        from es_rerank.scorer import OnnxScorer
    except ImportError as exc:
        raise ModelError(f"the ONNX scorer is unavailable: {exc}", hint="pip install 'es-rerank[serve]'") from exc
    scorer = OnnxScorer.load(model_dir)
    with serve_scorer(scorer, opensearch_url, index, deadline_s) as url:
        yield url


def _host_port(parts) -> str:
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    return f"{host}:{parts.port}" if parts.port else host


def _with_credentials(url: str, username: str | None, password: str | None) -> str:
    if not username:
        return url
    parts = urlsplit(url)
    netloc = f"{username}:{password or ''}@{parts.netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
