"""Where the parity check's (query, documents) pairs come from.

`--parity-data` may name:
- a candidates file (JSON lines from `es-rerank bench scorer --write-candidates`): real BM25
  candidates, usable where no OpenSearch runs (the GPU machine);
- a BEIR directory with `--parity-index`: each judged query's BM25 top candidates from that
  OpenSearch index, retrieved now;
- a BEIR directory alone: each judged query's judged documents plus seeded random corpus
  documents (real texts without a search engine).
With no `--parity-data`, the built-in sample pairs are used.

Example:
    >>> items, source = load_parity_pairs(ParitySource())
    >>> source.startswith("built-in"), len(items)
    (True, 6)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from es_rerank.data.candidates import TextWindow, collect_candidates, read_candidates, sample_from_qrels
from es_rerank.errors import ConfigError
from es_rerank.export.builtin_pairs import BUILTIN_QUERIES


@dataclass(frozen=True)
class ParitySource:
    """`data`: candidates file or BEIR directory (None: built-in pairs); `index`: OpenSearch index
    for BM25 candidates of a BEIR directory; at most `queries` queries and `candidates` documents each."""

    data: Path | None = None
    index: str | None = None
    opensearch_url: str | None = None
    queries: int = 20
    candidates: int = 20
    split: str = "test"


def load_parity_pairs(source: ParitySource) -> tuple[list[TextWindow], str]:
    """The parity pairs and a one-line description of where they came from.

    Example:
        >>> items, text = load_parity_pairs(ParitySource(queries=2, candidates=3))
        >>> [len(i.docs) for i in items], text
        ([3, 3], 'built-in sample pairs (2 queries x up to 3 documents)')
    """
    if source.queries < 1 or source.candidates < 1:
        raise ConfigError(f"--parity-queries and --parity-candidates must be >= 1, got {source.queries} and "
                          f"{source.candidates}")
    if source.data is None:
        if source.index:
            raise ConfigError("--parity-index needs --parity-data naming the BEIR directory its queries come from")
        items = [TextWindow(str(i), q, docs) for i, (q, docs) in enumerate(BUILTIN_QUERIES)]
        where = "built-in sample pairs"
    elif Path(source.data).is_file():
        items = read_candidates(source.data).windows()
        where = f"candidates file {Path(source.data).name}"
    elif Path(source.data).is_dir() and source.index:
        items = _bm25(source)
        where = f"BM25 top-{source.candidates} from index {source.index} for {Path(source.data).name} queries"
    elif Path(source.data).is_dir():
        items = sample_from_qrels(source.data, source.queries, source.candidates, split=source.split).windows()
        where = f"{Path(source.data).name} {source.split} qrels: judged + random documents"
    else:
        raise ConfigError(f"--parity-data {source.data} does not exist",
                          hint="pass a candidates file (.jsonl[.gz]) or a BEIR-layout directory")
    items = [item.head(source.candidates) for item in items[:source.queries] if item.docs]
    if not items:
        raise ConfigError(f"no parity pairs in {source.data}",
                          hint="pass a file or directory with queries and documents")
    return items, f"{where} ({len(items)} queries x up to {source.candidates} documents)"


def _bm25(source: ParitySource) -> list[TextWindow]:
    from es_rerank.data.beir import read_qrels, read_queries
    from es_rerank.engine.client import check_reachable, make_client, resolve_url

    queries = read_queries(source.data)
    judged = [q for q in read_qrels(source.data, source.split) if q in queries][:source.queries]
    url = resolve_url(source.opensearch_url)
    client = make_client(url)
    check_reachable(client, url)
    return collect_candidates(client, source.index, {q: queries[q] for q in judged}, source.candidates).windows()
