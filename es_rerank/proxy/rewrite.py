"""Pure response rewriting: reorder the window, cut the client's page, strip what the proxy added.

Everything but the order of `hits.hits`, their `_score` and `hits.max_score` is kept as OpenSearch
sent it. Hits past the window keep BM25 order and their BM25 `_score`. A response parsed with
deferred hits (`rawjson.DEFERRED_HITS_SHAPE`) passes `open_hit` to the page functions, so that only
the hits served are walked.

Example:
    >>> spec = RerankSpec("q", ("text",), window=3, start=0, size=2, deadline_s=1.0)
    >>> response = {"took": 3, "hits": {"total": {"value": 3, "relation": "eq"}, "max_score": 9.0, "hits": [
    ...     {"_id": "a", "_score": 9.0, "_source": {"text": "x"}},
    ...     {"_id": "b", "_score": 8.0, "_source": {"text": "y"}},
    ...     {"_id": "c", "_score": 7.0, "_source": {"text": "z"}}]}}
    >>> window_texts(response, spec)
    ['x', 'y', 'z']
    >>> page = reranked_page(response, spec, np.array([0.1, 0.9, 0.5], dtype=np.float32))
    >>> [(h["_id"], h["_score"]) for h in page["hits"]["hits"]], page["hits"]["max_score"], page["took"]
    ([('b', 0.9), ('c', 0.5)], 0.9, 3)
    >>> [h["_id"] for h in bm25_page(response, spec)["hits"]["hits"]]
    ['a', 'b']
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from es_rerank.proxy.plan import RerankSpec
from es_rerank.scoring.rerank import order_by_scores
from es_rerank.types import Hit

HitOpener = Callable[[dict], dict]  # a hit as parsed -> the hit to copy into the page


def as_parsed(hit: dict) -> dict:
    """The `HitOpener` of a response parsed whole: each hit is served as it is."""
    return hit


def response_hits(response) -> list | None:
    """`hits.hits` of a search response, or None when the response has no such list.

    Example:
        >>> response_hits({"hits": {"hits": []}}), response_hits({"error": {}})
        ([], None)
    """
    hits = response.get("hits") if isinstance(response, dict) else None
    hits = hits.get("hits") if isinstance(hits, dict) else None
    return hits if isinstance(hits, list) else None


def window_texts(response: dict, spec: RerankSpec) -> list[str]:
    """The text of each hit in the window, in BM25 order; missing fields count as empty, lists are joined.

    Example:
        >>> window_texts({"hits": {"hits": [{"_source": {"t": ["a", "b"]}}, {}]}}, RerankSpec("q", ("t",), 5, 0, 5, 1.0))
        ['a b', '']
    """
    return [hit_text(hit, spec) for hit in response_hits(response)[: spec.window]]


def hit_text(hit: dict, spec: RerankSpec) -> str:
    """One hit's text from `_source` (dotted names walk objects) or from the fields API's `fields`.

    Example:
        >>> spec = RerankSpec("q", ("meta.title", "tags"), 10, 0, 10, 1.0)
        >>> hit_text({"_source": {"meta": {"title": "T"}, "tags": ["a", "b"]}}, spec)
        'T a b'
    """
    if spec.text_source == "fields":
        values = hit.get("fields") or {}
        found = {name: values.get(name) for name in spec.fields}
    else:
        source = hit.get("_source") or {}
        found = {name: source_value(source, name) for name in spec.fields}
    return Hit(str(hit.get("_id", "")), 0.0, found).text(spec.fields)


def source_value(source: dict, name: str):
    """`source[name]`, or for a dotted name the value reached through nested objects (lists flattened).

    Example:
        >>> source_value({"a": [{"b": "x"}, {"b": "y"}]}, "a.b")
        ['x', 'y']
        >>> source_value({"a.b": "flat"}, "a.b")
        'flat'
    """
    if name in source:
        return source[name]
    head, dot, rest = name.partition(".")
    if not dot or head not in source:
        return None
    node = source[head]
    if isinstance(node, dict):
        return source_value(node, rest)
    if isinstance(node, list):
        values = [source_value(item, rest) for item in node if isinstance(item, dict)]
        flat = [v for value in values for v in (value if isinstance(value, list) else [value]) if v is not None]
        return flat or None
    return None


def reranked_page(response: dict, spec: RerankSpec, scores: np.ndarray, open_hit: HitOpener = as_parsed) -> dict:
    """The client's page from the reranked window; `max_score` becomes the window's top model score.

    Example:
        >>> response = {"hits": {"max_score": 2.0, "hits": [{"_id": "a", "_score": 2.0}, {"_id": "b", "_score": 1.0}]}}
        >>> page = reranked_page(response, RerankSpec("q", ("t",), 2, 0, 1, 1.0), np.array([0.2, 0.7]))
        >>> page["hits"]["hits"], page["hits"]["max_score"]
        ([{'_id': 'b', '_score': 0.7}], 0.7)
    """
    hits = response_hits(response)
    window = len(hits[: spec.window])
    if len(scores) != window:
        raise ValueError(f"expected {window} scores for the window, got {len(scores)}")
    ranked: list[tuple[int, float | None]] = list(order_by_scores(range(window), scores))
    ranked += [(position, None) for position in range(window, len(hits))]
    max_score = _float32(ranked[0][1]) if window else response["hits"].get("max_score")
    return _page(response, spec, ranked, max_score, open_hit)


def bm25_page(response: dict, spec: RerankSpec, open_hit: HitOpener = as_parsed) -> dict:
    """The fallback: the same page cut from the window in BM25 order, scores untouched.

    Example:
        >>> response = {"hits": {"max_score": 2.0, "hits": [{"_id": "a", "_score": 2.0}, {"_id": "b", "_score": 1.0}]}}
        >>> bm25_page(response, RerankSpec("q", ("t",), 2, 1, 1, 1.0))["hits"]["hits"]
        [{'_id': 'b', '_score': 1.0}]
    """
    hits = response_hits(response)
    return _page(response, spec, [(position, None) for position in range(len(hits))],
                 response["hits"].get("max_score"), open_hit)


def interleaved_page(response: dict, spec: RerankSpec, positions: list[int], teams: list[str],
                     open_hit: HitOpener = as_parsed) -> dict:
    """The client's page of an interleaved list: `positions` (into the response's hits) and their teams.

    `positions` is the page already cut from the merged list (it starts at rank `spec.start`).
    A merged list has no model score, so a hit at (0-based) rank r gets the score 1/(r+1) and
    `max_score` is 1.0: descending, and the same on every page of the list.
    Provenance, when asked for, also names the team that contributed each hit.

    Example:
        >>> response = {"hits": {"max_score": 2.0, "hits": [{"_id": "a", "_score": 2.0}, {"_id": "b", "_score": 1.0},
        ...                                                 {"_id": "c", "_score": 0.5}]}}
        >>> page = interleaved_page(response, RerankSpec("q", ("t",), 3, 1, 2, 1.0), [0, 2], ["bm25", "rerank"])
        >>> [(h["_id"], h["_score"]) for h in page["hits"]["hits"]], page["hits"]["max_score"]
        ([('a', 0.5), ('c', 0.3333333333333333)], 1.0)
    """
    if len(positions) != len(teams):
        raise ValueError(f"expected a team for each of the {len(positions)} positions, got {len(teams)}")
    hits = response_hits(response)
    page = []
    for rank, (position, team) in enumerate(zip(positions, teams), start=spec.start):
        hit = _page_hit(open_hit(hits[position]), position, 1.0 / (rank + 1), spec)
        if spec.provenance:
            hit["_rerank"]["team"] = team
            hit["_rerank"]["reranked"] = position < spec.window  # past the window nothing was scored
        page.append(hit)
    return {**response, "hits": {**response["hits"], "max_score": 1.0 if hits else None, "hits": page}}


def _page(response: dict, spec: RerankSpec, ranked: list[tuple[int, float | None]], max_score,
          open_hit: HitOpener) -> dict:
    hits = response_hits(response)
    # Only the served page's scores are written, so only they are rounded to float32's text.
    page = [_page_hit(open_hit(hits[position]), position, None if score is None else _float32(score), spec)
            for position, score in ranked[spec.start: spec.start + spec.size]]
    return {**response, "hits": {**response["hits"], "max_score": max_score, "hits": page}}


def _page_hit(original: dict, position: int, score: float | None, spec: RerankSpec) -> dict:
    """One hit as served: a copy with the new score (None keeps BM25's), proxy-added fields gone, provenance."""
    hit = dict(original)
    bm25_score = hit.get("_score")
    if score is not None:
        hit["_score"] = score
    _strip_added_fields(hit, spec.added_fields)
    if spec.provenance:
        hit["_rerank"] = {"bm25_score": bm25_score, "bm25_rank": position + 1, "reranked": score is not None}
    return hit


def _strip_added_fields(hit: dict, added: tuple[str, ...]) -> None:
    """Remove from `hit.fields` the names only the proxy asked for; drop `fields` if that empties it."""
    if not added or not isinstance(hit.get("fields"), dict):
        return
    fields = {k: v for k, v in hit["fields"].items() if k not in added}
    if fields:
        hit["fields"] = fields
    else:
        del hit["fields"]


def _float32(score) -> float:
    """A model score as the shortest decimal that round-trips through float32 (as OpenSearch writes scores)."""
    return float(str(np.float32(score)))
