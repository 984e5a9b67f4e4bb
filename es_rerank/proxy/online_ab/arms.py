"""The online A/B as the proxy uses it: pick the arm, build the page, write the log line, take clicks.

One `OnlineAb` per proxy process holds the settings and the two log writers; everything it does
is a call into the pure modules beside it (`assignment`, `interleave`, `decision_log`,
`events`). The proxy works on positions in its BM25 window (0 = BM25's first hit), so the
interleaved page comes back as window positions plus the team of each.

Example:
    >>> ab = OnlineAb(OnlineAbConfig(split=1.0, mode="interleave"))
    >>> decision = ab.decide({}, "10.0.0.7")
    >>> decision.variant
    'interleave'
    >>> positions, teams = ab.page(decision, reranked=[2, 0, 1], start=0, size=3, seed_text="gene therapy")
    >>> sorted(positions), len(teams)
    ([0, 1, 2], 3)
"""

from __future__ import annotations

import uuid
from typing import Mapping, Sequence

from es_rerank.proxy.online_ab.assignment import Decision, OnlineAbConfig, decide
from es_rerank.proxy.online_ab.decision_log import JsonLinesWriter, decision_record
from es_rerank.proxy.online_ab.interleave import seeded_coins, team_draft
from es_rerank.evaluation.protocol import BM25, QUERY_ID_HEADER, RERANK, SHARED, VARIANT_HEADER


class OnlineAb:
    """Settings plus the decision and events logs of one proxy process.
    """

    def __init__(self, config: OnlineAbConfig) -> None:
        self.config = config
        self.log = JsonLinesWriter(config.log_path) if config.log_path else None
        # Click events go to their own file when given, else into the decision log.
        self.events = JsonLinesWriter(config.events_path) if config.events_path else self.log

    def decide(self, headers: Mapping[str, str], peer: str | None) -> Decision:
        """The arm of one reranked search (call it only for searches the proxy would rerank)."""
        return decide(self.config, headers, peer)

    def page(self, decision: Decision, reranked: Sequence[int], start: int, size: int,
             seed_text: str, total: int | None = None) -> tuple[list[int], list[str]]:
        """Window positions of the page `[start:start+size]` to serve for this arm, and each hit's team.

        `reranked` is the window in model order (positions into the BM25 window). `seed_text`
        (index and query text) fixes the interleaving coins together with the user's key, so
        every page of one search comes from the same merged list. `total` (default: the window)
        counts all hits the proxy holds: those past the window follow in BM25 order, in an
        interleaved list as team `shared` since both rankings hold them there.

        Example:
            >>> ab = OnlineAb(OnlineAbConfig(split=1.0, mode="interleave"))
            >>> ab.page(ab.decide({}, "10.0.0.7"), [1, 0], start=1, size=3, seed_text="q", total=4)[1][1:]
            ['shared', 'shared']
        """
        window = len(reranked)
        total = window if total is None else total
        if total < window:
            raise ValueError(f"total ({total}) must count at least the {window} window hits")
        tail = list(range(window, total))
        if decision.variant == RERANK:
            order, teams = list(reranked) + tail, [RERANK] * total
        elif decision.variant == BM25:
            order, teams = list(range(total)), [BM25] * total
        else:  # interleave
            merged = team_draft(list(reranked), list(range(window)),
                                seeded_coins(f"{decision.key_hash}|{seed_text}"))
            order, teams = merged.ids + tail, merged.teams + [SHARED] * len(tail)
        return order[start:start + size], teams[start:start + size]

    def record(self, *, query_id: str, decision: Decision, hit_ids: Sequence[str], teams: Sequence[str],
               latency_ms: float, index: str, start: int, query_text: str, fallback: bool = False) -> None:
        """Append the decision line for one served search (no-op without a log)."""
        if self.log is None:
            return
        self.log.append(decision_record(
            query_id=query_id, client_hash=decision.key_hash, variant=decision.variant, hit_ids=hit_ids,
            teams=teams, latency_ms=latency_ms, index=index, offset=start, fallback=fallback,
            query_text=query_text if self.config.log_query_text else None))

    def events_handler(self):
        """The aiohttp handler for `POST /_rerank/events` (events go to the events log)."""
        from es_rerank.proxy.online_ab.events import make_events_handler

        if self.events is None:
            raise ValueError("no log configured for click events; set the decision log path")
        return make_events_handler(self.events, self.config.secret)

    @property
    def dropped(self) -> int:
        """Log lines lost to a full queue or a failing disk (export as a metric)."""
        return sum(w.dropped for w in {id(w): w for w in (self.log, self.events) if w}.values())

    def close(self) -> None:
        """Flush and close the logs (on proxy shutdown)."""
        for writer in {id(w): w for w in (self.log, self.events) if w}.values():
            writer.close()


def new_query_id() -> str:
    """A fresh UBI query_id for one search.

    Example:
        >>> len(new_query_id())
        36
    """
    return str(uuid.uuid4())


def response_headers(decision: Decision, query_id: str) -> dict[str, str]:
    """Headers telling the client its arm and the id to send back with click events.

    Example:
        >>> response_headers(Decision("interleave", "h"), "q-1")
        {'X-Rerank-Variant': 'interleave', 'X-Rerank-Query-Id': 'q-1'}
    """
    return {VARIANT_HEADER: decision.variant, QUERY_ID_HEADER: query_id}
