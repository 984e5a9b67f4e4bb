"""Documents embedded per second by two bi-encoder exports on the same real documents, in one run.

Rounds alternate the exports (ABBA), so a shared machine's load drifts onto both alike; the
figure to keep is the ratio. Run from a checkout:

    python -m lab.bench.dense_speed BASELINE_EXPORT CANDIDATE_EXPORT --dataset DIR [--docs 192 --rounds 4]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

from es_rerank.data.beir import iter_corpus_docs
from es_rerank.scoring.bi_encoder import DenseScorer


def corpus_texts(dataset: Path, count: int) -> list[str]:
    """The first `count` documents of a BEIR corpus as the bi-encoder sees them (title and text)."""
    return [f"{doc.title} {doc.text}".strip() for _, doc in itertools.islice(iter_corpus_docs(dataset), count)]


def docs_per_second(scorer: DenseScorer, texts: list[str]) -> float:
    started = time.perf_counter()
    scorer.embed(texts)
    return len(texts) / (time.perf_counter() - started)


def compare(baseline: Path, candidate: Path, texts: list[str], rounds: int, threads: int) -> dict:
    """Mean docs/s of each export over `rounds` alternating rounds, after one warm-up call each."""
    scorers = {name: DenseScorer.load(path, device="cpu", batch_size=16, threads=threads)
               for name, path in (("baseline", baseline), ("candidate", candidate))}
    for scorer in scorers.values():
        scorer.embed(texts[:16])
    rates: dict[str, list[float]] = {name: [] for name in scorers}
    for r in range(rounds):
        for name in (list(scorers) if r % 2 == 0 else list(scorers)[::-1]):
            rates[name].append(docs_per_second(scorers[name], texts))
    mean = {name: sum(values) / len(values) for name, values in rates.items()}
    return {"docs": len(texts), "rounds": rounds, "threads": threads, "load_average_1m": os.getloadavg()[0],
            "baseline_docs_per_s": round(mean["baseline"], 2), "candidate_docs_per_s": round(mean["candidate"], 2),
            "ratio": round(mean["candidate"] / mean["baseline"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--docs", type=int, default=192)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads; 0 lets it choose")
    args = parser.parse_args()
    print(json.dumps(compare(args.baseline, args.candidate, corpus_texts(args.dataset, args.docs), args.rounds,
                             args.threads)))


if __name__ == "__main__":
    main()
