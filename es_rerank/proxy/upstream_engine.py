"""Which engine is upstream, OpenSearch or Elasticsearch: fixed by `--upstream-engine`, or told from its answers.

The answers the proxy makes itself (its errors, its own endpoints) take that engine's shape and
headers (`es_rerank.proxy.headers`, `es_rerank.proxy.httperror`). With `auto` the engine is asked
once at start-up (`GET /`) and otherwise read off the first answer that tells: Elasticsearch names
itself in `X-Elastic-Product` (its integ-test zip answers `GET /` with 405, the header still
there); a 2xx answer without the header is OpenSearch's. An answer that tells nothing (a 401 of a
secured cluster, the upstream down) leaves it open, and until then the proxy answers in
OpenSearch's shape.

Example:
    >>> engine = UpstreamEngine("auto")
    >>> engine.current, engine.known
    ('opensearch', False)
    >>> engine.note(401, {})                          # a secured cluster refusing an anonymous probe
    >>> engine.known
    False
    >>> engine.note(405, {"X-Elastic-Product": "Elasticsearch"})
    >>> engine.current, engine.label
    ('elasticsearch', 'Elasticsearch')
"""

from __future__ import annotations

import logging
from typing import Mapping

from es_rerank.engine.engine_profile import ELASTICSEARCH, LABELS, OPENSEARCH, PRODUCT_HEADER, identify

AUTO = "auto"

log = logging.getLogger("es_rerank.proxy")


class UpstreamEngine:
    """The upstream's engine: `configured` ('auto', 'opensearch' or 'elasticsearch'), then what was learnt."""

    def __init__(self, configured: str) -> None:
        self.configured = configured
        self._engine: str | None = None if configured == AUTO else configured

    @property
    def known(self) -> bool:
        return self._engine is not None

    @property
    def current(self) -> str:
        """The engine whose shape the proxy's own answers take: OpenSearch's until an answer tells."""
        return self._engine or OPENSEARCH

    @property
    def is_elasticsearch(self) -> bool:
        return self.current == ELASTICSEARCH

    @property
    def label(self) -> str:
        """'OpenSearch' or 'Elasticsearch', for messages."""
        return LABELS[self.current]

    def note(self, status: int, headers: Mapping[str, str], root: Mapping | None = None) -> None:
        """Learn the engine from one upstream answer (`root`: the parsed `GET /` body), if it tells and none is known.

        Example:
            >>> engine = UpstreamEngine("auto"); engine.note(200, {}, {"version": {"distribution": "opensearch"}})
            >>> engine.current, engine.known
            ('opensearch', True)
            >>> fixed = UpstreamEngine("elasticsearch"); fixed.note(200, {}); fixed.current
            'elasticsearch'
        """
        if self._engine is not None:
            return
        named = any(name.lower() == PRODUCT_HEADER for name in headers)
        if named or 200 <= status < 300:
            self._engine = identify(headers, root or {})
            log.info("upstream engine: %s (told by its answer)", LABELS[self._engine])

    def describe(self) -> str:
        """One line for the start-up log.

        Example:
            >>> UpstreamEngine("elasticsearch").describe(), UpstreamEngine("auto").describe()
            ('Elasticsearch (--upstream-engine)', "not known yet: OpenSearch's shape until an answer tells")
        """
        if self.configured != AUTO:
            return f"{self.label} (--upstream-engine)"
        if self._engine is None:
            return "not known yet: OpenSearch's shape until an answer tells"
        return f"{self.label} (detected)"
