"""`index.max_result_window` of each search target, read from OpenSearch and cached for a while.

The reranked window must not end past it (OpenSearch would refuse the search), and the setting
can change at any time: a cached value lives WINDOW_CACHE_S, and a search that trips over a
lowered one reads it again (`fresh=True`).
"""

from __future__ import annotations

import time
from typing import Mapping

from es_rerank.proxy.headers import bodiless_headers
from es_rerank.proxy.jsonio import loads
from es_rerank.proxy.plan import DEFAULT_MAX_RESULT_WINDOW, max_result_window, settings_path
from es_rerank.proxy.upstream import Upstream

WINDOW_CACHE_ENTRIES = 1024
# A lowered index.max_result_window is picked up within this long (and at once when a search trips over it).
WINDOW_CACHE_S = 10.0


class ResultWindows:
    """The cache of `index.max_result_window` per search target."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self._cached: dict[str, tuple[float, int]] = {}  # target -> (read at, index.max_result_window)

    async def get(self, target: str, client_headers: Mapping[str, str], fresh: bool = False) -> int:
        """`index.max_result_window` of the search target, read with the client's own credentials.

        Cached for WINDOW_CACHE_S; `fresh` reads it again.
        """
        cached = self._cached.get(target)
        if cached is not None and not fresh and time.monotonic() - cached[0] < WINDOW_CACHE_S:
            return cached[1]
        status, _, body = await self._upstream.fetch("GET", settings_path(target), bodiless_headers(client_headers),
                                                     None)
        if status != 200:
            return DEFAULT_MAX_RESULT_WINDOW  # e.g. a missing index: the search itself will say so
        try:
            value = max_result_window(loads(body))
        except (ValueError, TypeError, AttributeError):  # an answer of another shape: OpenSearch's default
            return DEFAULT_MAX_RESULT_WINDOW
        if len(self._cached) >= WINDOW_CACHE_ENTRIES:
            self._cached.clear()
        self._cached[target] = (time.monotonic(), value)
        return value
