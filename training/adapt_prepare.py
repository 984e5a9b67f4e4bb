"""`es-rerank adapt --prepare-only`: pseudo-queries from an index, their BM25 hits, and teacher scores. Torch-free.

Runs where OpenSearch runs. For every pseudo-query (`es_rerank.data.pseudo_queries`) it sends the
served BM25 query (`es_rerank.engine.bm25_query.bm25_body`, batched through `_msearch`), drops the
query's own document and exact copies of it from the hits (a document is never its own
negative), keeps the top `depth`, and scores the masked positive and every hit with the teacher
models through the `Scorer` protocol: the dense bi-encoder (ONNX, no torch) and optionally the
current cross-encoder export. The BM25 scores come with the hits (without a model the teacher
can only be BM25). How the teacher inputs are mixed is a training setting, so one prepared file
serves several teachers (tests/integration/test_adapt.py prepares from a real node).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from es_rerank.data.beir import iter_corpus_docs
from es_rerank.errors import ConfigError, DatasetError, OpenSearchUnavailable
from es_rerank.data.pseudo_queries import (PseudoQuery, PseudoQuerySettings, SourceDocument, hashed_subset,
                                      make_pseudo_queries, scan_index_documents)
from es_rerank.engine.bm25_query import DEFAULT_FIELDS, bm25_body, hits_from_response
from es_rerank.scoring.cross_encoder import Scorer
from es_rerank.scoring.validity import check_scores
from es_rerank.training.adapt_groups import AdaptGroups, LabelledGroup, PseudoGroup

Progress = Callable[[Iterable, int, str], Iterable]
MSEARCH_BATCH = 64
SCORE_CHUNK_QUERIES = 32


@dataclass(frozen=True)
class PrepareSettings:
    """What `--prepare-only` makes: which pseudo-queries, how many, and how deep the BM25 hits go."""

    sources: tuple[str, ...] = ("title", "first", "ict")
    ict_per_doc: int = 1
    min_words: int = 3
    max_words: int = 24
    min_positive_words: int = 10
    max_queries: int | None = 3000
    max_docs: int | None = None
    depth: int = 30
    seed: int = 0
    fields: tuple[str, ...] = DEFAULT_FIELDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "fields", tuple(self.fields))
        self.query_settings()  # validates the pseudo-query part
        for name in ("max_queries", "max_docs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"adapt setting {name} must be a positive integer or null, got {value!r}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise ConfigError(f"adapt setting depth must be an integer >= 1, got {self.depth!r}", hint="e.g. 30")
        if not self.fields or not all(isinstance(f, str) and f for f in self.fields):
            raise ConfigError(f"adapt setting fields must be a list of field names, got {list(self.fields)!r}",
                              hint="e.g. [title, text]")

    def query_settings(self) -> PseudoQuerySettings:
        return PseudoQuerySettings(sources=self.sources, ict_per_doc=self.ict_per_doc, min_words=self.min_words,
                                   max_words=self.max_words, min_positive_words=self.min_positive_words,
                                   seed=self.seed)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.update(sources=list(self.sources), fields=list(self.fields))
        return data


def prepare_adapt_groups(client, index: str, settings: PrepareSettings, dense: Scorer | None = None,
                         ce: Scorer | None = None, corpus: Path | None = None, labelled: Path | None = None,
                         labelled_queries: Path | None = None, labels: dict[str, str] | None = None,
                         progress: Progress | None = None) -> AdaptGroups:
    """Build the whole prepared file in memory (see the module docstring).

    `corpus` reads the documents from a BEIR directory instead of scrolling the index (they must
    be the index's documents). `labelled` is a groups file from `es-rerank mine`, whose query
    texts come from `labelled_queries`. `labels` names the teacher models in the file's meta.
    """
    step = progress or (lambda items, total, desc: items)
    docs = _read_documents(client, index, settings.fields, corpus)
    if settings.max_docs is not None and len(docs) > settings.max_docs:
        keep = hashed_subset(docs, settings.max_docs, settings.seed)
        docs = {d: doc for d, doc in docs.items() if d in keep}
    queries = make_pseudo_queries(docs.values(), settings.query_settings(), settings.max_queries)
    if not queries:
        raise DatasetError(f"no pseudo-query could be cut from the {len(docs)} documents of {index!r}",
                           hint="check --fields names the title and body fields, or lower min_words")
    texts: dict[str, str] = {}
    pseudo = _search_groups(client, index, queries, docs, settings, texts, step)
    scorers = [(name, scorer) for name, scorer in (("dense", dense), ("ce", ce)) if scorer is not None]
    for name, scorer in scorers:
        _score_groups(pseudo, texts, name, scorer, step)
    labelled_groups = []
    if labelled is not None:
        labelled_groups = _labelled_groups(client, index, labelled, labelled_queries, settings, texts)
    used = {d for g in pseudo for d in g.doc_ids} | {d for g in labelled_groups for d in (*g.positives, *g.negatives)}
    meta = {"index": index, "documents": len(docs), "settings": settings.to_dict(),
            "teachers": dict(labels or {}), "sources": dict(Counter(g.source for g in pseudo)),
            "dropped_without_hits": len(queries) - len(pseudo)}
    return AdaptGroups(meta, {d: texts[d] for d in texts if d in used}, pseudo, labelled_groups)


def _read_documents(client, index: str, fields: Sequence[str], corpus: Path | None) -> dict[str, SourceDocument]:
    if corpus is None:
        docs = {doc.doc_id: doc for doc in scan_index_documents(client, index, fields)}
    else:
        docs = {}
        for doc_id, doc in iter_corpus_docs(corpus):
            docs[doc_id] = SourceDocument.from_source(doc_id, {"title": doc.title, "text": doc.text}, fields)
    if not docs:
        raise DatasetError(f"index {index!r} has no documents" if corpus is None else f"{corpus} has no documents",
                           hint="index the corpus first with `es-rerank index`")
    return docs


def _search_groups(client, index: str, queries: list[PseudoQuery], docs: dict[str, SourceDocument],
                   settings: PrepareSettings, texts: dict[str, str], step: Progress) -> list[PseudoGroup]:
    """BM25 hits of every query, without the query's own document or copies of it."""
    groups = []
    batches = [queries[i:i + MSEARCH_BATCH] for i in range(0, len(queries), MSEARCH_BATCH)]
    # a few spare hits replace the query's own document and its copies
    size = settings.depth + 3
    for batch in step(batches, len(batches), f"BM25 {index}"):
        for query, hits in zip(batch, _msearch(client, index, [q.text for q in batch], size, settings.fields)):
            own = _normal(" ".join((docs[query.doc_id].title, docs[query.doc_id].body)))
            kept = []
            for hit in hits:
                text = hit.text(settings.fields)
                if hit.doc_id == query.doc_id or _normal(text) == own:
                    continue
                texts.setdefault(hit.doc_id, text)
                kept.append(hit)
            kept = kept[:settings.depth]
            if not kept:
                continue
            bm25 = np.array([np.nan] + [h.score for h in kept], dtype=np.float64)
            groups.append(PseudoGroup(query.qid, query.source, query.doc_id, query.text, query.positive_text,
                                      tuple(h.doc_id for h in kept), {"bm25": bm25}))
    return groups


def _msearch(client, index: str, texts: Sequence[str], size: int, fields: Sequence[str]) -> list[list]:
    """The served BM25 query for each text, in one `_msearch` round trip."""
    from opensearchpy.exceptions import OpenSearchException

    body: list[dict] = []
    for text in texts:
        body.extend(({"index": index}, bm25_body(text, size, fields, source=list(fields))))
    try:
        responses = client.msearch(body=body)["responses"]
    except OpenSearchException as exc:
        raise OpenSearchUnavailable(f"BM25 search on {index!r} failed: {exc}",
                                    hint="check that the index exists and the cluster is healthy") from exc
    failed = [r["error"] for r in responses if "error" in r]
    if failed:
        raise OpenSearchUnavailable(f"BM25 search on {index!r} failed: {failed[0]}",
                                    hint="check that the index exists and the cluster is healthy")
    return [hits_from_response(r) for r in responses]


def _score_groups(groups: list[PseudoGroup], texts: dict[str, str], name: str, scorer: Scorer,
                  step: Progress) -> None:
    """Add score column `name` to every group: the masked positive first, then the hits."""
    chunks = [groups[i:i + SCORE_CHUNK_QUERIES] for i in range(0, len(groups), SCORE_CHUNK_QUERIES)]
    for chunk in step(chunks, len(chunks), f"{name} teacher"):
        queries, documents = [], []
        for group in chunk:
            entries = ([group.positive] if group.has_positive else []) + [texts[d] for d in group.doc_ids]
            queries.extend([group.query] * len(entries))
            documents.extend(entries)
        scores = np.asarray(scorer.score_pairs(queries, documents), dtype=np.float64)
        check_scores(scores, len(documents), f"the {name} teacher")
        start = 0
        for group in chunk:
            group.scores[name] = scores[start:start + group.size]
            start += group.size


def _labelled_groups(client, index: str, path: Path, queries_path: Path | None, settings: PrepareSettings,
                     texts: dict[str, str]) -> list[LabelledGroup]:
    """Judged groups of `es-rerank mine`, cut to `depth` negatives, with their texts from the index."""
    from es_rerank.data.beir import read_queries
    from es_rerank.data.mining import read_groups

    if queries_path is None:
        raise ConfigError("--labelled-groups needs --labelled-queries (the queries file the groups were mined for)")
    query_texts = read_queries(queries_path)
    mined = [g for g in read_groups(path) if g.qid in query_texts and g.positives and g.negatives]
    if not mined:
        raise DatasetError(f"no usable group in {path}: none has query text, a positive and a negative",
                           hint="pass the groups and queries of the same collection")
    wanted = sorted({d for g in mined for d in (*g.positives, *g.negatives[:settings.depth])} - texts.keys())
    texts.update(fetch_texts(client, index, wanted, settings.fields))
    groups = []
    for g in mined:
        positives = tuple(d for d in g.positives if d in texts)
        negatives = tuple(d for d in g.negatives[:settings.depth] if d in texts)
        if positives and negatives:
            groups.append(LabelledGroup(g.qid, query_texts[g.qid], positives, negatives))
    return groups


def fetch_texts(client, index: str, doc_ids: Sequence[str], fields: Sequence[str], chunk: int = 500) -> dict[str, str]:
    """`{id: served text}` of the ids found in `index` (`_mget`), as `Hit.text(fields)` joins them."""
    from opensearchpy.exceptions import OpenSearchException

    from es_rerank.types import Hit

    found = {}
    for start in range(0, len(doc_ids), chunk):
        try:
            response = client.mget(index=index, body={"ids": list(doc_ids[start:start + chunk])},
                                   _source=list(fields))
        except OpenSearchException as exc:
            raise OpenSearchUnavailable(f"reading documents of {index!r} failed: {exc}") from exc
        for doc in response["docs"]:
            if doc.get("found"):
                found[str(doc["_id"])] = Hit(str(doc["_id"]), 0.0, doc.get("_source") or {}).text(tuple(fields))
    return found


def _normal(text: str) -> str:
    return " ".join(text.split()).lower()
