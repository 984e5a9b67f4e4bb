"""Scoring (query, document) pairs with a cross-encoder.

`Scorer` is the one interface the proxy, `ab`, `mine` and training evaluation score through.
Implementations return float32 scores in input order.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from es_rerank.errors import ModelError, ScoringError, ScoringOutOfMemory
from es_rerank.scoring.export_meta import EXPORT_HINT, ONNX_DTYPE_KEY, ExportMeta, ModelVariant, read_meta
from es_rerank.scoring.pair_encoding import EncodedBatch, EncodedPair, PairEncoder, batch_by_length


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



# Fragments of ONNX Runtime error messages that mean the device (or host) ran out of memory.
_OOM_MARKERS = ("out of memory", "failed to allocate memory", "bfcarena", "alloc_failed", "cudaerrormemoryallocation")
DEVICES = ("auto", "cuda", "cpu")


class OnnxScorer:
    """Scores pairs with an `es-rerank export` directory through ONNX Runtime.

    One ONNX Runtime session per scorer. Pairs are tokenized with the Rust `tokenizers`
    library (`PairEncoder`), grouped by length and run in batches of at most `batch_size`.
    On CUDA, inputs and outputs go through IOBinding and runs are serialised by a lock (they
    share one GPU stream; overlapping them would only multiply memory); on CPU runs may overlap.
    """

    def __init__(self, session, encoder: PairEncoder, meta: ExportMeta, variant: ModelVariant, device: str,
                 batch_size: int) -> None:
        """Use `OnnxScorer.load`; this only wires already validated parts together."""
        self._session = session
        self.encoder = encoder
        self.meta = meta
        self.variant = variant
        self.device = device
        self.batch_size = batch_size
        self._input_names = list(meta.input_names)
        self._gpu_lock = threading.Lock() if device == "cuda" else None

    @classmethod
    def load(cls, export_dir: str | Path, device: str = "auto", batch_size: int = 64, variant: str | None = None,
             threads: int | None = None, gpu_mem_limit_mb: int | None = None) -> "OnnxScorer":
        """Load an export directory through its meta.json.

        `device`: "auto" (CUDA when onnxruntime-gpu can run here, else CPU), "cuda" or "cpu".
        `variant`: "fp32", "fp16" or "int8"; by default fp16 on CUDA, int8 (when exported) on
        CPU, else fp32. `threads`: CPU threads per run (default: ONNX Runtime's choice).
        `gpu_mem_limit_mb`: cap on ONNX Runtime's CUDA memory arena.

        Example:
            >>> OnnxScorer.load("no/such/export")
            Traceback (most recent call last):
            ...
            es_rerank.errors.ModelError: export directory no/such/export does not exist (run `es-rerank export CHECKPOINT no/such/export` first)
        """
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        _check_positive("batch_size", batch_size)
        if threads is not None:
            _check_positive("threads", threads)
        if gpu_mem_limit_mb is not None:
            _check_positive("gpu_mem_limit_mb", gpu_mem_limit_mb)
        export_dir = Path(export_dir)
        meta = read_meta(export_dir)
        encoder = _load_encoder(export_dir, meta)
        wanted = _resolve_device(device)
        chosen = meta.variant(variant, wanted)
        session = _open_session(export_dir / chosen.file, meta, chosen, wanted, threads, gpu_mem_limit_mb)
        actual = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
        if actual != wanted:
            if device == "cuda":
                raise ModelError("ONNX Runtime's CUDA execution provider failed to start (CUDA or cuDNN libraries "
                                 "missing or mismatched?)", hint="check `nvidia-smi` and the onnxruntime-gpu build, "
                                 "or pass --device cpu")
            if variant is None and meta.variant(None, actual) != chosen:  # "auto" fell back to CPU
                chosen = meta.variant(None, actual)
                session = _open_session(export_dir / chosen.file, meta, chosen, actual, threads, None)
        return cls(session, encoder, meta, chosen, actual, batch_size)

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Score `queries[i]` against `documents[i]`: float32 scores in input order.

        Raises `ScoringOutOfMemory` when the runtime runs out of memory and `ScoringError` on
        any other runtime failure (the proxy falls back to BM25 order on both); a wrong
        argument (lengths differ, a non-str text) raises `ValueError` or `TypeError`.
        """
        return self.score_encoded(self.encode_pairs(queries, documents))

    def encode_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> list[EncodedPair]:
        """Tokenize pairs without running the model: the CPU half of `score_pairs`, which the
        proxy runs on several threads while one worker feeds the model.
        """
        try:
            return self.encoder.encode(queries, documents)
        except (TypeError, ValueError):
            raise
        except Exception as exc:  # the Rust tokenizer's own failures
            raise ScoringError(f"tokenizing {len(documents)} pairs failed: {exc}",
                               hint="check the texts; the proxy falls back to BM25 order") from exc

    def score_encoded(self, pairs: Sequence[EncodedPair]) -> np.ndarray:
        """Run the model over already tokenized pairs: float32 scores in input order.
        """
        scores = np.zeros(len(pairs), dtype=np.float32)
        for batch in batch_by_length(pairs, self.batch_size, self.encoder.pad_id, max_width=self.encoder.max_length):
            scores[batch.rows] = self.score_batch(batch)
        return scores

    def encode(self, queries: Sequence[str], documents: Sequence[str]) -> list[EncodedBatch]:
        """The padded, length-grouped batches `score_pairs` runs.
        """
        pairs = self.encode_pairs(queries, documents)
        return list(batch_by_length(pairs, self.batch_size, self.encoder.pad_id, max_width=self.encoder.max_length))

    def score_batch(self, batch: EncodedBatch) -> np.ndarray:
        """Run one padded batch; float32 scores in the batch's row order.
        """
        inputs = batch.arrays(self._input_names)
        try:
            if self._gpu_lock is None:
                logits = self._session.run([self.meta.output_name], inputs)[0]
            else:
                with self._gpu_lock:
                    logits = self._run_bound(inputs)
        except Exception as exc:
            raise scoring_failure(exc, batch.shape) from exc
        if logits.shape not in ((batch.shape[0],), (batch.shape[0], 1)):
            raise ScoringError(f"the model returned logits of shape {logits.shape} for {batch.shape[0]} pairs; "
                               "expected one logit per pair", hint=EXPORT_HINT)
        scores = logits.reshape(-1).astype(np.float32, copy=False)
        if self.meta.output_activation == "sigmoid":
            scores = (1.0 / (1.0 + np.exp(-scores))).astype(np.float32)
        return scores

    def _run_bound(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        # A fresh binding per run: IOBinding objects are not safe to share between threads.
        binding = self._session.io_binding()
        for name, array in inputs.items():
            binding.bind_cpu_input(name, array)
        binding.bind_output(self.meta.output_name, "cuda")
        self._session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


def scoring_failure(exc: BaseException, shape: tuple[int, int]) -> ScoringError:
    """The `ScoringError` (or `ScoringOutOfMemory`) to raise for a runtime failure on a batch.

    Example:
        >>> type(scoring_failure(RuntimeError("CUDA failure 2: out of memory"), (100, 256))).__name__
        'ScoringOutOfMemory'
        >>> type(scoring_failure(RuntimeError("Invalid rank for input"), (100, 256))).__name__
        'ScoringError'
    """
    text = str(exc)
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if isinstance(exc, MemoryError) or any(marker in text.lower() for marker in _OOM_MARKERS):
        return ScoringOutOfMemory(
            f"out of memory scoring a batch of {shape[0]} pairs x {shape[1]} tokens: {first_line}",
            hint="lower the batch size or max length, or give the scorer more memory")
    return ScoringError(f"ONNX Runtime failed scoring a batch of {shape[0]} pairs x {shape[1]} tokens: {first_line}",
                        hint="see the message; the proxy falls back to BM25 order")


def _resolve_device(device: str) -> str:
    import onnxruntime

    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise ModelError(f"--device cuda asked for, but this onnxruntime ({onnxruntime.__version__}) has no CUDA "
                         "execution provider", hint="install onnxruntime-gpu (the [gpu] extra) or use --device cpu")
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    return device


def _open_session(path: Path, meta: ExportMeta, variant: ModelVariant, device: str, threads: int | None,
                  gpu_mem_limit_mb: int | None):
    """An ONNX Runtime session for `path`, checked against what meta.json says about it."""
    import onnxruntime

    if not path.is_file():
        raise ModelError(f"model file {path} named by meta.json is missing", hint=EXPORT_HINT)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings such as "some nodes run on CPU" are expected and noisy
    if threads is not None:
        options.intra_op_num_threads = threads
    # Idle worker threads would otherwise spin between runs, taking CPU from the proxy's event
    # loop and anything else on the box.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list = ["CPUExecutionProvider"]
    if device == "cuda":
        _preload_cuda_libraries(onnxruntime)
        # fp32 means fp32: TF32 matmuls would break parity with the PyTorch fp32 model
        cuda = {"device_id": 0, "use_tf32": "0"}
        if gpu_mem_limit_mb is not None:
            cuda["gpu_mem_limit"] = str(gpu_mem_limit_mb * 1024 * 1024)
        providers.insert(0, ("CUDAExecutionProvider", cuda))
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:
        raise ModelError(f"ONNX Runtime cannot load {path}: {str(exc).strip().splitlines()[0]}",
                         hint=EXPORT_HINT) from exc
    _check_session(session, path, meta, variant)
    return session


_preloaded = threading.Event()


def _preload_cuda_libraries(onnxruntime) -> None:
    """Load CUDA and cuDNN from the pip `nvidia-*` packages (those PyTorch installs) once, so the
    CUDA provider starts without LD_LIBRARY_PATH; a no-op on builds without `preload_dlls`."""
    if _preloaded.is_set() or not hasattr(onnxruntime, "preload_dlls"):
        return
    try:
        onnxruntime.preload_dlls()
    except Exception:  # best effort: the provider may still find system-wide libraries
        pass
    _preloaded.set()


def _check_session(session, path: Path, meta: ExportMeta, variant: ModelVariant) -> None:
    """Fail when the ONNX file disagrees with meta.json (inputs, output, dtype)."""
    inputs = {i.name: i.type for i in session.get_inputs()}
    if sorted(inputs) != sorted(meta.input_names):
        raise ModelError(f"{path.name} takes inputs {sorted(inputs)} but meta.json lists {list(meta.input_names)}",
                         hint=EXPORT_HINT)
    wrong = {name: kind for name, kind in inputs.items() if kind != "tensor(int64)"}
    if wrong:
        raise ModelError(f"{path.name} inputs {wrong} are not int64 tensors", hint=EXPORT_HINT)
    outputs = [o.name for o in session.get_outputs()]
    if meta.output_name not in outputs:
        raise ModelError(f"{path.name} has outputs {outputs} but meta.json names {meta.output_name!r}",
                         hint=EXPORT_HINT)
    dtype = session.get_modelmeta().custom_metadata_map.get(ONNX_DTYPE_KEY)
    if dtype != variant.dtype:
        raise ModelError(f"{path.name} is labelled dtype {dtype!r} but meta.json says variant {variant.name!r} "
                         f"is {variant.dtype!r}", hint=EXPORT_HINT)


def _load_encoder(export_dir: Path, meta: ExportMeta) -> PairEncoder:
    path = export_dir / meta.tokenizer_file
    if not path.is_file():
        raise ModelError(f"tokenizer file {path} named by meta.json is missing", hint=EXPORT_HINT)
    try:
        return PairEncoder.from_file(path, meta.max_length, meta.query_max_length, meta.pad_token_id)
    except Exception as exc:
        raise ModelError(f"cannot load tokenizer {path}: {exc}", hint=EXPORT_HINT) from exc


def _check_positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
