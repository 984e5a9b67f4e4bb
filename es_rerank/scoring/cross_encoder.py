"""Scoring (query, document) pairs with a cross-encoder: the pair-logit head over `OnnxSession`.

`Scorer` is the one interface the proxy, `ab`, `mine` and training evaluation score through.
Implementations return float32 scores in input order.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Protocol, Sequence, TypeVar, cast, runtime_checkable

import numpy as np

from es_rerank.errors import ModelError, ScoringError
from es_rerank.scoring.export_meta import EXPORT_HINT, ONNX_DTYPE_KEY, ExportMeta, ModelVariant, read_meta
from es_rerank.scoring.onnx_session import OnnxSession, check_device, resolve_device
from es_rerank.scoring.token_batches import EncodedBatch, EncodedPair, PackedPairs, batch_by_length
from es_rerank.scoring.pair_encoding import PairEncoder, load_tokenizer
from es_rerank.scoring.validity import check_scores

T = TypeVar("T")
_DONE = object()


@runtime_checkable
class TwoStageScorer(Protocol):
    """A scorer whose tokenizing (CPU, any thread) and model run (one worker) can be split."""

    def encode_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> list: ...

    def score_encoded(self, pairs: Sequence) -> np.ndarray: ...


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores pairs. Must be safe to call from several threads."""

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Score `queries[i]` against `documents[i]`; float32 array of len(documents), input order."""
        ...


def score(scorer: Scorer, query: str, documents: Sequence[str]) -> np.ndarray:
    """Score one query against many documents.

    Example:
        >>> class Length:
        ...     def score_pairs(self, queries, documents):
        ...         return np.array([len(d) for d in documents], dtype=np.float32)
        >>> score(Length(), "q", ["a", "abc"]).tolist()
        [1.0, 3.0]
    """
    if not documents:
        return np.zeros(0, dtype=np.float32)
    return scorer.score_pairs([query] * len(documents), documents)


class OnnxScorer:
    """Scores pairs with an `es-rerank export` directory through ONNX Runtime.

    One `OnnxSession` per scorer. Pairs are tokenized with the Rust `tokenizers` library
    (`PairEncoder`), grouped by length and run in batches of at most `batch_size` pairs and,
    with `batch_tokens`, at most that many padded tokens; each pair's logit, through the
    export's output activation, is its score. On CUDA the next batch is padded on a helper
    thread while the GPU runs the current one, so the GPU does not wait for NumPy.
    """

    def __init__(self, session: OnnxSession, encoder: PairEncoder, meta: ExportMeta, variant: ModelVariant,
                 batch_size: int, batch_tokens: int | None = None) -> None:
        """Use `OnnxScorer.load`; this only wires already validated parts together."""
        self.session = session
        self.encoder = encoder
        self.meta = meta
        self.variant = variant
        self.device = session.device
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self._padder = ThreadPoolExecutor(2, thread_name_prefix="es-rerank-pad") if self.device == "cuda" else None

    @classmethod
    def load(cls, export_dir: str | Path, device: str = "auto", batch_size: int = 64, variant: str | None = None,
             threads: int | None = None, gpu_mem_limit_mb: int | None = None,
             batch_tokens: int | None = None) -> "OnnxScorer":
        """Load an export directory through its meta.json.

        `device`: "auto" (CUDA when onnxruntime-gpu can run here, else CPU), "cuda" or "cpu".
        `variant`: "fp32", "fp16" or "int8"; by default fp16 on CUDA, int8 (when exported) on
        CPU, else fp32. `threads`: CPU threads per run (default: ONNX Runtime's choice).
        `gpu_mem_limit_mb`: cap on ONNX Runtime's CUDA memory arena. `batch_tokens`: most padded
        tokens per run (None: `batch_size` rows whatever their length).

        Example:
            >>> OnnxScorer.load("no/such/export")
            Traceback (most recent call last):
            ...
            es_rerank.errors.ModelError: export directory no/such/export does not exist (run `es-rerank export CHECKPOINT no/such/export` first)
        """
        check_device(device)
        _check_positive("batch_size", batch_size)
        if threads is not None:
            _check_positive("threads", threads)
        if gpu_mem_limit_mb is not None:
            _check_positive("gpu_mem_limit_mb", gpu_mem_limit_mb)
        if batch_tokens is not None:
            _check_positive("batch_tokens", batch_tokens)
        export_dir = Path(export_dir)
        meta = read_meta(export_dir)
        encoder = load_encoder(export_dir, meta)
        wanted = resolve_device(device)
        chosen = meta.variant(variant, wanted)
        session = _open_variant(export_dir, meta, chosen, device, threads, gpu_mem_limit_mb)
        if session.device != wanted and variant is None and meta.variant(None, session.device) != chosen:
            chosen = meta.variant(None, session.device)  # "auto" fell back to CPU: take the CPU default variant
            session = _open_variant(export_dir, meta, chosen, session.device, threads, None)
        return cls(session, encoder, meta, chosen, batch_size, batch_tokens)

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Score `queries[i]` against `documents[i]`: float32 scores in input order.

        Raises `ScoringOutOfMemory` when the runtime runs out of memory and `ScoringError` on
        any other runtime failure (the proxy falls back to BM25 order on both); a wrong
        argument (lengths differ, a non-str text) raises `ValueError` or `TypeError`.
        """
        return self.score_encoded(self.encode_pairs(queries, documents))

    def encode_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> PackedPairs:
        """Tokenize pairs without running the model: the CPU half of `score_pairs`, which the
        proxy runs on several threads while one worker feeds the model.
        """
        return encode_for_scoring(self.encoder, queries, documents)

    def score_encoded(self, pairs: Sequence[EncodedPair]) -> np.ndarray:
        """Run the model over already tokenized pairs: float32 scores in input order.
        """
        scores = np.zeros(len(pairs), dtype=np.float32)
        batches = self._batches(pairs)
        for batch in batches if self._padder is None else one_ahead(batches, self._padder):
            scores[batch.rows] = self.score_batch(batch)
        return scores

    def encode(self, queries: Sequence[str], documents: Sequence[str]) -> list[EncodedBatch]:
        """The padded, length-grouped batches `score_pairs` runs.
        """
        return list(self._batches(self.encode_pairs(queries, documents)))

    def _batches(self, pairs: Sequence[EncodedPair]) -> Iterator[EncodedBatch]:
        return batch_by_length(pairs, self.batch_size, self.encoder.pad_id, max_width=self.encoder.max_length,
                               max_tokens=self.batch_tokens)

    def score_batch(self, batch: EncodedBatch) -> np.ndarray:
        """Run one padded batch; float32 scores in the batch's row order.
        """
        logits = self.session.run(batch)
        if logits.ndim == 2 and logits.shape[1] == 1:
            logits = logits[:, 0]
        check_scores(logits, batch.shape[0], "the cross-encoder")
        scores = logits.astype(np.float32, copy=False)
        if self.meta.output_activation == "sigmoid":
            scores = (1.0 / (1.0 + np.exp(-scores))).astype(np.float32)
        return scores


def one_ahead(items: Iterator[T], pool: ThreadPoolExecutor) -> Iterator[T]:
    """`items`, each one made on `pool` while the caller works on the one before it.

    Example:
        >>> with ThreadPoolExecutor(1) as pool:
        ...     list(one_ahead(iter([1, 2, 3]), pool))
        [1, 2, 3]
    """
    item = next(items, _DONE)  # the first on this thread: there is nothing yet to overlap it with
    while item is not _DONE:
        upcoming = pool.submit(next, items, _DONE)
        yield cast(T, item)
        item = upcoming.result()


def encode_for_scoring(encoder: PairEncoder, queries: Sequence[str], documents: Sequence[str]) -> PackedPairs:
    """`encoder.encode`, with the Rust tokenizer's own failures turned into a `ScoringError` (a
    BM25 fallback in the proxy); a wrong argument stays a `ValueError` or `TypeError` (a bug)."""
    try:
        return encoder.encode(queries, documents)
    except (TypeError, ValueError):
        raise
    except Exception as exc:
        raise ScoringError(f"tokenizing {len(documents)} pairs failed: {exc}",
                           hint="check the texts; the proxy falls back to BM25 order") from exc


def _open_variant(export_dir: Path, meta: ExportMeta, variant: ModelVariant, device: str, threads: int | None,
                  gpu_mem_limit_mb: int | None) -> OnnxSession:
    """The session of one variant's ONNX file, checked against what meta.json says about it."""
    path = export_dir / variant.file
    session = OnnxSession.open(path, device, meta.input_names, meta.output_name, hint=EXPORT_HINT,
                               threads=threads, gpu_mem_limit_mb=gpu_mem_limit_mb)
    dtype = session.metadata(ONNX_DTYPE_KEY)
    if dtype != variant.dtype:
        raise ModelError(f"{path.name} is labelled dtype {dtype!r} but meta.json says variant {variant.name!r} "
                         f"is {variant.dtype!r}", hint=EXPORT_HINT)
    return session


def load_encoder(export_dir: Path, meta: ExportMeta | None = None) -> PairEncoder:
    """The pair encoder of an export: its tokenizer within its length limits (meta.json read when not given)."""
    meta = meta if meta is not None else read_meta(export_dir)
    tokenizer = load_tokenizer(export_dir / meta.tokenizer_file, EXPORT_HINT)
    try:
        return PairEncoder(tokenizer, meta.max_length, meta.query_max_length, meta.pad_token_id)
    except ValueError as exc:
        raise ModelError(f"cannot load tokenizer {export_dir / meta.tokenizer_file}: {exc}",
                         hint=EXPORT_HINT) from exc


def _check_positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
