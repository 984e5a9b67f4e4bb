"""A proxy started inside `es-rerank ab --model DIR`, so the reranked side is still what the proxy serves.

The proxy runs on its own event loop in a background thread, on a free port of 127.0.0.1, and
reranks the compared index only. Its rerank deadline is the search timeout: an offline
comparison should measure the model, not fall back to BM25 on a slow CPU. With fusion weights
and a bi-encoder it serves the fused order, with or without a cross-encoder (`ce: 0`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

from es_rerank.errors import ModelError
from es_rerank.scoring.fusion import FusionWeights
from es_rerank.scoring.cross_encoder import Scorer

DENSE_NAME = "dense"   # the name the in-process proxy's one bi-encoder goes by in its rule


@contextlib.contextmanager
def serve_scorer(scorer: Scorer | None, opensearch_url: str, index: str, deadline_s: float = 60.0,
                 dense: Scorer | None = None, fusion: FusionWeights | None = None) -> Iterator[str]:
    """Serve `scorer` through a real proxy in front of `opensearch_url`; yield the proxy's URL.

    With `fusion` and a `dense` bi-encoder the index gets the fused order; `scorer` may then be
    None when the weights give the cross-encoder nothing. Credentials in `opensearch_url` are
    moved onto the yielded URL: the proxy takes none of its own and forwards the client's
    Authorization header.
    """
    from es_rerank.proxy.settings import IndexRule, ProxySettings, ServerSettings, UpstreamSettings
    from es_rerank.proxy.server import ProxyThread

    parts = urlsplit(opensearch_url)
    upstream = urlunsplit((parts.scheme, _host_port(parts), parts.path, "", ""))
    rule = IndexRule(index, deadline_ms=int(deadline_s * 1000), fusion=fusion,
                     dense_model=DENSE_NAME if dense is not None else None)
    settings = ProxySettings(UpstreamSettings(upstream), rules=(rule,), server=ServerSettings(host="127.0.0.1", port=0))
    with ProxyThread(settings, scorer, {DENSE_NAME: dense} if dense is not None else None) as proxy:
        # Wait for the models' warm-up calls, so the first searches are not measured on a cold model.
        for batcher in proxy.context.batchers():
            if not batcher.warm.wait(deadline_s):
                raise ModelError(f"the model did not finish its warm-up call within {deadline_s:g}s",
                                 hint="raise --timeout or check the model")
            if batcher.warm_error:
                raise ModelError(f"the model failed its warm-up call: {batcher.warm_error}",
                                 hint="check the export with `es-rerank bench` or re-export it")
        yield _with_credentials(proxy.url, parts.username, parts.password)


@contextlib.contextmanager
def serve_model(model_dir: Path | None, opensearch_url: str, index: str, deadline_s: float = 60.0,
                dense_dir: Path | None = None, fusion: FusionWeights | None = None) -> Iterator[str]:
    """Load an exported cross-encoder and/or bi-encoder (ONNX) and serve them as in `serve_scorer`."""
    try:
        from es_rerank.scoring.bi_encoder import DenseScorer
        from es_rerank.scoring.cross_encoder import OnnxScorer
    except ImportError as exc:
        raise ModelError(f"the ONNX scorer is unavailable: {exc}", hint="pip install 'es-rerank[serve]'") from exc
    scorer = OnnxScorer.load(model_dir) if model_dir is not None else None
    # The cache holds a corpus's worth of documents: an A/B sees each one in many windows.
    dense = DenseScorer.load(dense_dir, cache_size=100_000) if dense_dir is not None else None
    with serve_scorer(scorer, opensearch_url, index, deadline_s, dense, fusion) as url:
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
