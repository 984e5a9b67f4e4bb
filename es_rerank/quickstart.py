"""The README's main job on local defaults: node up, corpus indexed, BM25 results shown.

Example:
    >>> run_quickstart(QuickstartSettings(dataset=Path("../shared/data/scifact")), print)   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from es_rerank.datasets import read_qrels, read_queries, relevant
from es_rerank.types import Hit


@dataclass(frozen=True)
class QuickstartSettings:
    dataset: Path
    index: str = ""
    opensearch_url: str | None = None
    queries_shown: int = 3
    hits_shown: int = 5
    split: str = "test"

    @property
    def index_name(self) -> str:
        return self.index or self.dataset.resolve().name.lower()


def run_quickstart(settings: QuickstartSettings, echo: Callable[[str], None],
                   progress: Callable | None = None) -> None:
    """Start the local node if needed, index the corpus and print BM25 hits for a few queries."""
    from es_rerank.indexing import index_corpus
    from es_rerank.local_node import LocalNode, NodeSettings
    from es_rerank.opensearch_client import check_reachable, make_client, resolve_url, uses_local_node
    from es_rerank.retrieval import search_bm25

    url = resolve_url(settings.opensearch_url)
    if uses_local_node(url):
        echo("starting the local OpenSearch node (the first run downloads it from Maven Central)...")
        echo(LocalNode(NodeSettings()).start().describe())
    client = make_client(url)
    check_reachable(client, url)
    report = index_corpus(client, settings.dataset, settings.index_name, progress=progress)
    echo(f"index {settings.index_name}: {report.index_count} documents")

    queries = read_queries(settings.dataset)
    qrels = read_qrels(settings.dataset, settings.split)
    shown = [qid for qid in qrels if qid in queries][: settings.queries_shown]
    for qid in shown:
        hits = search_bm25(client, settings.index_name, queries[qid], settings.hits_shown)
        echo("")
        echo(format_hits(f"query {qid}: {queries[qid]}", hits, relevant(qrels, qid)))


def format_hits(heading: str, hits: list[Hit], judged_relevant: set[str], title_width: int = 70) -> str:
    """A plain-text table of ranked hits; `*` marks judged-relevant documents.

    Example:
        >>> print(format_hits("q", [Hit("d1", 3.25, {"title": "A title"})], {"d1"}))
        q
          rank  rel  doc id          BM25  title
             1   *   d1             3.250  A title
    """
    lines = [heading, f"  {'rank':>4}  rel  {'doc id':<12} {'BM25':>7}  title"]
    for rank, hit in enumerate(hits, start=1):
        title = str(hit.source.get("title") or hit.source.get("text") or "")[:title_width]
        mark = "*" if hit.doc_id in judged_relevant else " "
        lines.append(f"  {rank:>4}   {mark}   {hit.doc_id:<12} {hit.score:>7.3f}  {title}")
    return "\n".join(lines)
