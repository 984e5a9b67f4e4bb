"""Recall of candidate pools: BM25's top-k, the engine's kNN top-k over stored vectors, and both;
and nDCG@10 of ranking the BM25 pool and the union pool.

A reranker can only promote what its pool holds, so recall@k of the pool bounds what any reranker
of it can reach. The index must hold document vectors (`es-rerank index --dense-model EXPORT`);
queries are embedded by the same export. Each pool is ranked by BM25, by the bi-encoder alone and
by the fusion recipe (`--fusion`, default the quickstart's BM25 + bi-encoder weights), through
`evaluation.fusion_fit.evaluate_systems`, the ranking function fusion fitting uses. Run from a
checkout:

    python -m lab.bench.pools DATASET_DIR --index INDEX --dense-model EXPORT [--depth 100] [--url URL]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from es_rerank.data.beir import read_qrels, read_queries, relevant
from es_rerank.data.candidates import CandidateSet, collect_candidates
from es_rerank.data.pools import collect_union_candidates
from es_rerank.engine.bm25_query import search_bm25
from es_rerank.engine.client import check_reachable, make_client, resolve_url
from es_rerank.engine.engine_profile import detect
from es_rerank.engine.knn_query import search_knn
from es_rerank.evaluation.fusion_fit import evaluate_systems, score_candidates
from es_rerank.scoring.bi_encoder import DenseScorer
from es_rerank.scoring.fusion import FusionWeights, load_weights

DEFAULT_FUSION = Path(__file__).resolve().parents[2] / "recipes" / "fusion" / "bm25_dense_minilm.yaml"


@dataclass(frozen=True)
class PoolRecall:
    """Mean recall of each pool over the judged queries, and the union's mean size."""

    queries: int
    depth: int
    bm25: float
    knn: float
    union: float
    union_size: float


def pool_recall(pools: dict[str, list[tuple[set[str], set[str]]]], depth: int) -> PoolRecall:
    """Mean recall per pool from (pool ids, relevant ids) per query.

    Example:
        >>> pools = {"bm25": [({"a"}, {"a", "b"})], "knn": [({"b"}, {"a", "b"})], "union": [({"a", "b"}, {"a", "b"})]}
        >>> pool_recall(pools, 1)
        PoolRecall(queries=1, depth=1, bm25=0.5, knn=0.5, union=1.0, union_size=2.0)
    """
    def mean(name: str) -> float:
        rows = pools[name]
        return sum(len(ids & rel) / len(rel) for ids, rel in rows) / len(rows)

    sizes = [len(ids) for ids, _ in pools["union"]]
    return PoolRecall(len(pools["bm25"]), depth, round(mean("bm25"), 4), round(mean("knn"), 4),
                      round(mean("union"), 4), round(sum(sizes) / len(sizes), 1))


def pool_ndcg(cands: CandidateSet, qrels, scorer: DenseScorer, label: str, weights: FusionWeights) -> dict[str, float]:
    """nDCG@10 of the pool ranked by BM25, by the bi-encoder alone and fused."""
    score_candidates(cands, "dense", scorer, label)
    return {s.system: round(s.ndcg10, 4) for s in evaluate_systems(cands, qrels, {"fused": weights})}


def measure(dataset: Path, index: str, dense_dir: Path, depth: int, split: str, url: str | None,
            fusion: Path = DEFAULT_FUSION) -> dict:
    resolved = resolve_url(url)
    client = make_client(resolved)
    check_reachable(client, resolved)
    engine = detect(client).engine
    scorer = DenseScorer.load(dense_dir)
    queries, qrels = read_queries(dataset), read_qrels(dataset, split)
    judged = [q for q in qrels if q in queries and relevant(qrels, q)]
    vectors = scorer.embed([queries[q] for q in judged])
    pools: dict[str, list[tuple[set[str], set[str]]]] = {"bm25": [], "knn": [], "union": []}
    for query_id, vector in zip(judged, vectors):
        rel = relevant(qrels, query_id)
        bm25 = {h.doc_id for h in search_bm25(client, index, queries[query_id], depth, source=False)}
        knn = {h.doc_id for h in search_knn(client, index, engine, vector, depth)}
        for name, ids in (("bm25", bm25), ("knn", knn), ("union", bm25 | knn)):
            pools[name].append((ids, rel))
    recall = pool_recall(pools, depth)
    texts = {q: queries[q] for q in judged}
    weights = load_weights(fusion)
    ranked = {"bm25_pool": collect_candidates(client, index, texts, depth),
              "union_pool": collect_union_candidates(client, index, engine, texts, dict(zip(judged, vectors)), depth)}
    cached = DenseScorer.load(dense_dir, cache_size=len(ranked["union_pool"].docs))
    ndcg = {pool: pool_ndcg(cands, qrels, cached, str(dense_dir.name), weights) for pool, cands in ranked.items()}
    return {"recall": recall.__dict__, "ndcg10": ndcg, "fusion": weights.as_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--index", required=True)
    parser.add_argument("--dense-model", type=Path, required=True)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--split", default="test")
    parser.add_argument("--url", default=None, help="engine URL; default OPENSEARCH_URL or the local node")
    parser.add_argument("--fusion", type=Path, default=DEFAULT_FUSION, help="fusion recipe whose weights rank each pool")
    args = parser.parse_args()
    print(json.dumps(measure(args.dataset, args.index, args.dense_model, args.depth, args.split, args.url, args.fusion)))


if __name__ == "__main__":
    main()
