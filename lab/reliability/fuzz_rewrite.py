"""Property-based fuzzing of response rewriting (`es_rerank.proxy.rewrite`), with hypothesis.

`rewrite_cases()` generates an OpenSearch search response (unique ids, descending BM25
scores, `_source` and `fields` of mixed types, other top-level keys), a RerankSpec and finite
model scores for the window. `rewrite_problems` states what must hold:

- a page holds `min(size, hits - from)` hits (never negative), each id at most once, each
  one of the response's hits;
- paging through the reranked result page by page yields every hit exactly once (no hit
  repeated or skipped), the window's hits by descending model score, then the rest in BM25
  order with their BM25 scores;
- `max_score` is the top model score; everything but `hits.hits`/`max_score` is unchanged;
- fields the proxy added for scoring are gone from every hit; other fields stay;
- the BM25 fallback page is exactly `hits[from:from+size]`;
- the input response is not modified.

Example:
    >>> spec = RerankSpec("q", ("text",), window=2, start=0, size=2, deadline_s=1.0)
    >>> response = {"took": 1, "hits": {"max_score": 2.0, "hits": [{"_id": "a", "_score": 2.0}, {"_id": "b", "_score": 1.0}]}}
    >>> rewrite_problems(RewriteCase(response, spec, np.array([0.1, 0.9], dtype=np.float32)))
    []
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
from hypothesis import strategies as st

from es_rerank.proxy.plan import RerankSpec
from es_rerank.proxy.rewrite import bm25_page, reranked_page, window_texts

FIELD_NAMES = ("title", "text", "meta.title")


@dataclass(frozen=True)
class RewriteCase:
    """A response, the spec it is rewritten for, and the model's scores for its window."""

    response: dict
    spec: RerankSpec
    scores: np.ndarray


_field_values = st.one_of(st.none(), st.sampled_from(["wing", "lift and drag", ""]), st.integers(-5, 5),
                         st.lists(st.sampled_from(["a", "b c", None]), max_size=3))
_sources = st.dictionaries(st.sampled_from(["title", "text", "meta", "date"]), _field_values, max_size=3)
_hit_fields = st.one_of(st.none(), st.lists(st.sampled_from(FIELD_NAMES + ("date",)), unique=True, max_size=3))


@st.composite
def rewrite_cases(draw) -> RewriteCase:
    """A hypothesis strategy of RewriteCases.
    """
    count = draw(st.integers(0, 40))
    bm25 = sorted(draw(st.lists(st.floats(0, 50, allow_nan=False), min_size=count, max_size=count)), reverse=True)
    sources = draw(st.lists(_sources, min_size=count, max_size=count))
    field_names = draw(st.lists(_hit_fields, min_size=count, max_size=count))
    added = tuple(draw(st.lists(st.sampled_from(FIELD_NAMES), unique=True, max_size=2)))
    hits = []
    for position, (score, source, names) in enumerate(zip(bm25, sources, field_names)):
        hit = {"_index": "docs", "_id": f"d{position}", "_score": score, "_source": source}
        if names is not None:
            hit["fields"] = {name: [f"{name}-{position}"] for name in names}
        hits.append(hit)
    response = {"took": draw(st.integers(0, 99)), "timed_out": False, "_shards": {"total": 1},
                "hits": {"total": {"value": count, "relation": "eq"}, "max_score": bm25[0] if bm25 else None,
                         "hits": hits},
                "aggregations": {"n": {"value": draw(st.integers())}}}
    spec = RerankSpec(query_text=draw(st.text(min_size=1, max_size=10)),
                      fields=tuple(draw(st.lists(st.sampled_from(FIELD_NAMES), min_size=1, unique=True))),
                      window=draw(st.integers(1, 50)), start=draw(st.integers(0, 50)), size=draw(st.integers(1, 50)),
                      deadline_s=1.0, provenance=draw(st.booleans()),
                      text_source=draw(st.sampled_from(["_source", "fields"])), added_fields=added)
    window = min(spec.window, count)
    scores = np.asarray(draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=window,
                                      max_size=window)), dtype=np.float32)
    return RewriteCase(response, spec, scores)


def rewrite_problems(case: RewriteCase) -> list[str]:
    """What is wrong with rewriting `case` (empty when every property holds).

    Example:
        >>> spec = RerankSpec("q", ("text",), window=1, start=5, size=3, deadline_s=1.0)
        >>> rewrite_problems(RewriteCase({"hits": {"hits": [{"_id": "a", "_score": 1.0}]}}, spec, np.zeros(1)))
        []
    """
    original = copy.deepcopy(case.response)
    hits = case.response["hits"]["hits"]
    spec = case.spec
    window = min(spec.window, len(hits))
    problems = []
    if len(window_texts(case.response, spec)) != window:
        problems.append("window_texts did not give one text per window hit")
    try:
        page = reranked_page(case.response, spec, case.scores)
        fallback = bm25_page(case.response, spec)
    except Exception as exc:
        return [f"rewriting raised {type(exc).__name__}: {exc}"]
    problems += _page_problems(page, case, expected_ids=_reranked_ids(case)[spec.start: spec.start + spec.size])
    problems += _page_problems(fallback, case, expected_ids=[h["_id"] for h in hits[spec.start: spec.start + spec.size]])
    problems += _tiling_problems(case)
    positions = {h["_id"]: i for i, h in enumerate(hits)}
    for hit in page["hits"]["hits"]:
        i = positions[hit["_id"]]
        expected = float(str(np.float32(case.scores[i]))) if i < window else hits[i]["_score"]
        if hit["_score"] != expected:
            problems.append(f"hit {hit['_id']} has _score {hit['_score']}, expected {expected}")
    if window and page["hits"]["max_score"] != float(str(np.float32(case.scores.max()))):
        problems.append(f"max_score {page['hits']['max_score']} is not the top model score {case.scores.max()}")
    if case.response != original:
        problems.append("rewriting modified the input response")
    return problems


def _reranked_ids(case: RewriteCase) -> list[str]:
    """The order reranking must give: window by descending score (ties in BM25 order), then the rest."""
    hits = case.response["hits"]["hits"]
    window = min(case.spec.window, len(hits))
    order = sorted(range(window), key=lambda i: (-float(case.scores[i]), i))
    return [hits[i]["_id"] for i in order] + [h["_id"] for h in hits[window:]]


def _page_problems(page: dict, case: RewriteCase, expected_ids: list[str]) -> list[str]:
    spec = case.spec
    hits = case.response["hits"]["hits"]
    by_id = {h["_id"]: h for h in hits}
    got = [h["_id"] for h in page["hits"]["hits"]]
    problems = []
    if len(got) != max(0, min(spec.size, len(hits) - spec.start)):
        problems.append(f"page has {len(got)} hits for from={spec.start} size={spec.size} of {len(hits)}")
    if len(set(got)) != len(got):
        problems.append(f"page repeats a hit: {got}")
    if got != expected_ids:
        problems.append(f"page order {got[:8]} differs from {expected_ids[:8]}")
    for key in case.response:
        if key != "hits" and page.get(key) != case.response[key]:
            problems.append(f"top-level {key!r} changed")
    if page["hits"].get("total") != case.response["hits"].get("total"):
        problems.append("hits.total changed")
    for hit in page["hits"]["hits"]:
        original = by_id.get(hit["_id"], {})
        kept = {k: v for k, v in (original.get("fields") or {}).items() if k not in spec.added_fields}
        if (hit.get("fields") or {}) != kept:
            problems.append(f"hit {hit['_id']} fields {hit.get('fields')} should be {kept}")
        if hit.get("_source") != original.get("_source"):
            problems.append(f"hit {hit['_id']} _source changed")
        if spec.provenance and hit.get("_rerank", {}).get("bm25_rank") != hits.index(original) + 1:
            problems.append(f"hit {hit['_id']} provenance rank is wrong")
    return problems


def _tiling_problems(case: RewriteCase) -> list[str]:
    """Pages of sizes 1, 3 and 7 over the whole result: each hit exactly once, in the reranked order."""
    hits = case.response["hits"]["hits"]
    for size in (1, 3, 7):
        seen = []
        for start in range(0, len(hits) + size, size):
            page = reranked_page(case.response, replace(case.spec, start=start, size=size), case.scores)
            seen += [h["_id"] for h in page["hits"]["hits"]]
        if seen != _reranked_ids(case):
            return [f"paging with size {size} gave {seen[:10]}, expected {_reranked_ids(case)[:10]}"]
    return []
