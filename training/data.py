"""The files a training run reads, turned into what it trains and evaluates on. Torch-free.

Everything comes from files, because the GPU machine has no OpenSearch: the groups written by
`es-rerank mine`, a BEIR corpus and queries, and for evaluation a BM25 run written by
`es-rerank bm25-run` with the qrels it is judged against.

Dev queries are held out of the training queries (never the test split) by a hash of the
query id and `split_seed`, so the split does not depend on file order or on the training seed.

Example:
    >>> train, dev = split_dev(["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"], 0.2, seed=0)
    >>> len(train), len(dev), sorted(set(train) & set(dev))
    (8, 2, [])
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from es_rerank.data.beir import Qrels, iter_corpus_docs
from es_rerank.errors import DatasetError
from es_rerank.data.mining import Group
from es_rerank.engine.bm25_query import DEFAULT_FIELDS
from es_rerank.types import Hit


def split_dev(qids: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train ids, dev ids): the `fraction` of ids with the smallest hash of (seed, id) go to dev.

    Example:
        >>> split_dev(["a", "b"], 0.0, 0)
        (['a', 'b'], [])
    """
    n_dev = int(round(len(qids) * fraction))
    ranked = sorted(qids, key=lambda qid: hashlib.sha256(f"{seed}:{qid}".encode()).hexdigest())
    dev = set(ranked[:n_dev])
    return [q for q in qids if q not in dev], [q for q in qids if q in dev]


@dataclass
class GroupReport:
    """Groups dropped or trimmed while preparing them for training."""

    no_positive: list[str] = field(default_factory=list)
    no_negative: list[str] = field(default_factory=list)
    unknown_docs: int = 0
    no_query_text: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        lines = []
        if self.no_query_text:
            lines.append(f"{len(self.no_query_text)} groups dropped: query id not in the queries file")
        if self.no_positive:
            lines.append(f"{len(self.no_positive)} groups dropped: no positive in the corpus")
        if self.no_negative:
            lines.append(f"{len(self.no_negative)} groups dropped: no negative in the top neg_depth")
        if self.unknown_docs:
            lines.append(f"{self.unknown_docs} document ids in groups are not in the corpus and were ignored")
        return lines


def prepare_groups(groups: Iterable[Group], doc_ids: set[str] | Mapping[str, object], queries: Mapping[str, str],
                   neg_depth: int) -> tuple[list[Group], GroupReport]:
    """Keep documents the corpus has, cut negatives to the BM25 top `neg_depth`, drop unusable groups.

    Example:
        >>> kept, report = prepare_groups([Group("1", ("a",), ("b", "x", "c")), Group("2", ("x",), ("b",))],
        ...                               {"a", "b", "c"}, {"1": "q", "2": "q"}, neg_depth=2)
        >>> kept[0].negatives, report.no_positive, report.unknown_docs
        (('b',), ['2'], 2)
    """
    report = GroupReport()
    kept = []
    for group in groups:
        if group.qid not in queries:
            report.no_query_text.append(group.qid)
            continue
        positives = tuple(d for d in group.positives if d in doc_ids)
        top = group.negatives[:neg_depth]
        negatives = tuple(d for d in top if d in doc_ids)
        report.unknown_docs += (len(group.positives) - len(positives)) + (len(top) - len(negatives))
        if not positives:
            report.no_positive.append(group.qid)
        elif not negatives:
            report.no_negative.append(group.qid)
        else:
            kept.append(Group(group.qid, positives, negatives))
    return kept, report


def read_corpus_sources(dataset: str | Path, wanted: set[str] | None = None) -> dict[str, dict]:
    """`{doc_id: {"title": ..., "text": ...}}`, the `_source` shape a BM25 hit carries.

    `wanted` limits memory to the documents a run needs.
    """
    sources = {}
    for doc_id, doc in iter_corpus_docs(dataset):
        if wanted is None or doc_id in wanted:
            sources[doc_id] = {"title": doc.title, "text": doc.text}
    return sources


def document_text(source: Mapping[str, object], fields: tuple[str, ...] = DEFAULT_FIELDS) -> str:
    """The text the model sees for a document: exactly what `rerank_hits` scores at serving time.

    Example:
        >>> document_text({"title": "T", "text": "body"})
        'T body'
    """
    return Hit("", 0.0, dict(source)).text(fields)


def restrict_qrels(qrels: Qrels, qids: Iterable[str]) -> Qrels:
    """The judgments of `qids` only.

    Example:
        >>> restrict_qrels({"1": {"a": 1}, "2": {"b": 1}}, ["2"])
        {'2': {'b': 1}}
    """
    wanted = set(qids)
    return {qid: dict(judged) for qid, judged in qrels.items() if qid in wanted}


def check_run_documents(run: Mapping[str, Sequence[Hit]], sources: Mapping[str, object], what: str) -> None:
    """Every document of an evaluation run must be in the corpus the run is scored against."""
    missing = sorted({h.doc_id for hits in run.values() for h in hits if h.doc_id not in sources})
    if missing:
        raise DatasetError(f"{len(missing)} documents of the {what} run are not in the corpus: {', '.join(missing[:5])}",
                           hint="pass the corpus the index was built from")
