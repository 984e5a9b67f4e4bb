"""The proxy's resources, made once per app and cleaned up with it (`ProxyContext.lifespan`).

The context holds things, not logic: the settings, the metrics, the upstream pool, one scoring
worker per model, the admission permits, the result-window cache and, in an online A/B test, its
arms and log. The routes (`app`), the reranked-search path (`search`) and the proxy's own
endpoints (`internal`) use them.

Example:
    >>> context = ProxyContext(ProxySettings(UpstreamSettings("http://127.0.0.1:9200")), scorer=None)
    >>> context.batchers(), context.admission.in_flight, context.draining
    ([], 0, False)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Mapping

from aiohttp import web

from es_rerank.errors import ConfigError
from es_rerank.proxy.admission import Admission
from es_rerank.proxy.batcher import Batcher
from es_rerank.proxy.metrics import Counter, Gauge, ProxyMetrics
from es_rerank.proxy.online_ab.arms import OnlineAb
from es_rerank.proxy.result_windows import ResultWindows
from es_rerank.proxy.settings import ProxySettings, UpstreamSettings  # noqa: F401 (doctest)
from es_rerank.proxy.upstream import Upstream
from es_rerank.scoring.cross_encoder import Scorer

log = logging.getLogger("es_rerank.proxy")


class ProxyContext:
    """The proxy's resources and state, created once per app and cleaned up with it."""

    def __init__(self, settings: ProxySettings, scorer: Scorer | None,
                 dense_scorers: Mapping[str, Scorer] | None = None) -> None:
        dense_scorers = dict(dense_scorers or {})
        check_models(settings, scorer, dense_scorers)
        self.settings = settings
        self.scorer = scorer
        self.metrics = ProxyMetrics()
        self.upstream = Upstream(settings.upstream, self.metrics)
        self.admission = Admission(settings.load, self.metrics)
        self.windows = ResultWindows(self.upstream)
        self.batcher = Batcher(scorer, settings.batch, self.metrics) if scorer is not None else None
        # One worker per dense model, like the cross-encoder's: both model calls of a search run at once.
        self.dense_batchers = {name: Batcher(dense, settings.batch, self.metrics)
                               for name, dense in dense_scorers.items()}
        # Online A/B (--ab-split): the arm of each reranked search, its log line, and click events.
        self.ab = OnlineAb(settings.online_ab) if settings.online_ab else None
        self.ab_events = self.ab.events_handler() if self.ab is not None else None
        self.ab_searches = Counter("es_rerank_ab_searches_total", "Searches served under the online A/B test, by arm.",
                                   ("variant",))
        self.ab_dropped = Gauge("es_rerank_ab_log_dropped", "A/B log lines lost to a full queue or a failing disk.")
        self.draining = False

    async def lifespan(self, app: web.Application):
        """aiohttp cleanup context (`app.cleanup_ctx`): open the pool, start the scoring worker; close both at the end."""
        await self.upstream.start()
        await self.upstream.detect_engine()
        log.info("upstream engine: %s", self.upstream.engine.describe())
        for batcher in self.batchers():
            batcher.start()
        yield
        await self.upstream.close()
        for batcher in self.batchers():
            await asyncio.to_thread(batcher.stop)
        if self.ab is not None:
            await asyncio.to_thread(self.ab.close)  # writes what is queued: the log thread may be behind

    def batchers(self) -> list[Batcher]:
        """Every scoring worker: the cross-encoder's first, then one per dense model.

        Example:
            >>> ProxyContext(ProxySettings(UpstreamSettings("http://127.0.0.1:9200")), scorer=None).batchers()
            []
        """
        return ([self.batcher] if self.batcher is not None else []) + list(self.dense_batchers.values())


def check_models(settings: ProxySettings, scorer: Scorer | None, dense_scorers: Mapping[str, Scorer]) -> None:
    """Refuse rules that need a model that was not loaded (a ConfigError before the port opens)."""
    for rule in settings.rules if scorer is not None or dense_scorers else ():
        if rule.rerank and rule.dense_model is not None and rule.dense_model not in dense_scorers:
            raise ConfigError(f"index {rule.pattern!r} names dense model {rule.dense_model!r}, "
                              "which was not loaded", hint="load each rule's dense_model and pass it in dense_scorers")
        if scorer is None and rule.rerank and (rule.fusion is None or rule.fusion.needs_ce or not rule.dense_model):
            raise ConfigError(f"index {rule.pattern!r} needs a cross-encoder, and none is loaded",
                              hint="pass --model, or give the index fusion weights with ce 0 and a dense model "
                                   "(recipes/fusion/bm25_dense_minilm.yaml), or set rerank: false for it")


CONTEXT = web.AppKey("es_rerank_proxy", ProxyContext)
