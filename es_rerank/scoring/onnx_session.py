"""The one ONNX Runtime layer under both scoring heads, the cross-encoder and the bi-encoder.

It knows how to run an exported transformer and nothing about what the output means: the
device names (`auto`, `cuda`, `cpu`) and the execution providers behind them, session
options, padded int64 id batches and how they are fed, and turning runtime failures into
the error tree (`ModelError` when loading, `ScoringError` / `ScoringOutOfMemory` when
running). The heads read the output: `cross_encoder.OnnxScorer` a logit per pair,
`bi_encoder.DenseScorer` a pooled embedding per text.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from es_rerank.errors import ModelError, ScoringError, ScoringOutOfMemory

DEVICES = ("auto", "cuda", "cpu")
# Batches are padded to a multiple of this many tokens: fewer distinct shapes for the runtime
# to plan for, and tensor-core friendly widths on GPUs.
PAD_MULTIPLE = 8
# Token ids as the tokenizer's output is kept (cached documents, encoded pairs): half of int64's
# memory; batches are widened to the int64 the exported models take.
TOKEN_DTYPE = np.int32
# Fragments of ONNX Runtime error messages that mean the device (or host) ran out of memory.
_OOM_MARKERS = ("out of memory", "failed to allocate memory", "bfcarena", "alloc_failed", "cudaerrormemoryallocation")


@dataclass(frozen=True, eq=False)
class EncodedPair:
    """One sequence's token ids and token type ids (segment ids), unpadded: a (query, document)
    pair for the cross-encoder, one text for the bi-encoder. Lists or arrays; equal by value.

    Example:
        >>> EncodedPair(np.array([101, 102]), np.array([0, 0])) == EncodedPair([101, 102], [0, 0])
        True
    """

    ids: np.ndarray | Sequence[int]
    type_ids: np.ndarray | Sequence[int]

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, EncodedPair) and np.array_equal(self.ids, other.ids)
                and np.array_equal(self.type_ids, other.type_ids))

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside


@dataclass(frozen=True)
class EncodedBatch:
    """A padded batch: int64 arrays of shape (rows, width), and where each row came from.

    `rows[i]` is the position, in the caller's input, of the sequence in row `i`.

    Example:
        >>> batch = EncodedBatch.pad([EncodedPair([101, 7, 102], [0, 0, 0])], np.array([0]), pad_id=0, multiple=4)
        >>> batch.input_ids.tolist(), batch.attention_mask.tolist()
        ([[101, 7, 102, 0]], [[1, 1, 1, 0]])
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    rows: np.ndarray

    @classmethod
    def pad(cls, pairs: Sequence[EncodedPair], rows: np.ndarray, pad_id: int, multiple: int = 1,
            max_width: int | None = None) -> "EncodedBatch":
        """Pad `pairs` to the longest one, rounded up to `multiple` (never past `max_width`)."""
        lengths = np.fromiter((len(p) for p in pairs), dtype=np.int64, count=len(pairs))
        longest = int(lengths.max()) if len(pairs) else 1
        width = -(-longest // multiple) * multiple
        if max_width is not None:
            width = max(longest, min(width, max_width))
        # Row-major order of the mask's true cells is the order of the concatenated pairs, so each
        # array is filled with one scatter instead of one copy per row.
        mask = np.arange(width) < lengths[:, None]
        input_ids = np.full((len(pairs), width), pad_id, dtype=np.int64)
        token_type_ids = np.zeros((len(pairs), width), dtype=np.int64)
        if len(pairs):
            input_ids[mask] = np.concatenate([p.ids for p in pairs])
            token_type_ids[mask] = np.concatenate([p.type_ids for p in pairs])
        attention_mask = mask.astype(np.int64)
        return cls(input_ids, attention_mask, token_type_ids, np.asarray(rows, dtype=np.int64))

    def arrays(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The model inputs by name, e.g. ("input_ids", "attention_mask").

        Example:
            >>> b = EncodedBatch.pad([EncodedPair([5], [0])], np.array([0]), pad_id=0)
            >>> sorted(b.arrays(["input_ids", "attention_mask"]))
            ['attention_mask', 'input_ids']
        """
        known = {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                 "token_type_ids": self.token_type_ids}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown model input(s) {unknown}; expected some of {sorted(known)}")
        return {name: known[name] for name in names}

    @property
    def shape(self) -> tuple[int, int]:
        return self.input_ids.shape


def batch_by_length(pairs: Sequence[EncodedPair], batch_size: int, pad_id: int,
                    max_width: int | None = None, max_tokens: int | None = None) -> Iterator[EncodedBatch]:
    """Sort sequences by length and cut the sorted list into padded batches of at most `batch_size`
    rows and, with `max_tokens`, at most that many padded tokens, so short sequences are not
    padded to the longest one in the call and a batch of long ones stays within a memory budget.

    Example:
        >>> pairs = [EncodedPair([1] * n, [0] * n) for n in (9, 2, 8, 3)]
        >>> [(b.rows.tolist(), b.shape[1]) for b in batch_by_length(pairs, 2, pad_id=0)]
        [([1, 3], 8), ([2, 0], 16)]
        >>> [b.rows.tolist() for b in batch_by_length(pairs, 4, pad_id=0, max_tokens=16)]
        [[1, 3], [2], [0]]
    """
    lengths = np.fromiter((len(p) for p in pairs), dtype=np.int64, count=len(pairs))
    for rows in plan_batches(lengths, batch_size, max_width, max_tokens):
        yield EncodedBatch.pad([pairs[i] for i in rows], rows, pad_id, PAD_MULTIPLE, max_width)


def plan_batches(lengths: np.ndarray, batch_size: int, max_width: int | None = None,
                 max_tokens: int | None = None) -> list[np.ndarray]:
    """Row groups of `lengths`, shortest first: each at most `batch_size` rows and, with
    `max_tokens`, at most that many tokens once padded as `EncodedBatch.pad` pads (a row longer
    than the budget gets a batch of its own).

    Example:
        >>> [g.tolist() for g in plan_batches(np.array([200, 10, 12, 190]), 64, max_tokens=300)]
        [[1, 2], [3], [0]]
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive int or None, got {max_tokens!r}")
    order = np.argsort(lengths, kind="stable")
    if max_tokens is None:
        return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    sorted_lengths = lengths[order]
    widths = -(-sorted_lengths // PAD_MULTIPLE) * PAD_MULTIPLE
    if max_width is not None:
        widths = np.maximum(sorted_lengths, np.minimum(widths, max_width))
    groups, start = [], 0
    while start < len(order):
        end = min(start + batch_size, len(order))
        # Sorted ascending, so a group's padded width is its last row's: rows * width must fit.
        fits = np.nonzero(widths[start:end] * np.arange(1, end - start + 1) <= max_tokens)[0]
        end = start + (int(fits[-1]) + 1 if len(fits) else 1)
        groups.append(order[start:end])
        start = end
    return groups


def check_device(device: str) -> None:
    """Refuse a device name outside the one vocabulary both heads take.

    Example:
        >>> check_device("gpu")
        Traceback (most recent call last):
        ...
        ValueError: device must be one of auto, cuda, cpu, got 'gpu'
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")


def resolve_device(device: str) -> str:
    """`cuda` or `cpu`: "auto" is CUDA when this onnxruntime has the CUDA provider, else CPU.

    Example:
        >>> resolve_device("cpu")
        'cpu'
    """
    import onnxruntime

    check_device(device)
    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise ModelError(f"--device cuda asked for, but this onnxruntime ({onnxruntime.__version__}) has no CUDA "
                         "execution provider", hint="install onnxruntime-gpu (the [gpu] extra) or use --device cpu")
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    return device


def scoring_failure(exc: BaseException, shape: tuple[int, int], unit: str = "pairs") -> ScoringError:
    """The `ScoringError` (or `ScoringOutOfMemory`) to raise for a runtime failure on a batch
    of `shape` = (rows, tokens); `unit` names the rows (pairs, texts).

    Example:
        >>> type(scoring_failure(RuntimeError("CUDA failure 2: out of memory"), (100, 256))).__name__
        'ScoringOutOfMemory'
        >>> str(scoring_failure(RuntimeError("Invalid rank for input"), (100, 256), "texts")).split(":")[0]
        'ONNX Runtime failed scoring a batch of 100 texts x 256 tokens'
    """
    text = str(exc)
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if isinstance(exc, MemoryError) or any(marker in text.lower() for marker in _OOM_MARKERS):
        return ScoringOutOfMemory(
            f"out of memory scoring a batch of {shape[0]} {unit} x {shape[1]} tokens: {first_line}",
            hint="lower the batch size or max length, or give the scorer more memory")
    return ScoringError(f"ONNX Runtime failed scoring a batch of {shape[0]} {unit} x {shape[1]} tokens: "
                        f"{first_line}", hint="see the message; the proxy falls back to BM25 order")


class OnnxSession:
    """One ONNX Runtime session fed `EncodedBatch`es; safe to call from several threads.

    On CUDA, inputs and outputs go through IOBinding and runs are serialised by a lock (they
    share one GPU stream; overlapping them would only multiply memory); on CPU runs may overlap.
    """

    def __init__(self, session, device: str, input_names: Sequence[str], output_name: str,
                 unit: str = "pairs") -> None:
        """Use `OnnxSession.open`; this only wires an already checked session."""
        self._session = session
        self.device = device
        self.input_names = tuple(input_names)
        self.output_name = output_name
        self.unit = unit
        self._gpu_lock = threading.Lock() if device == "cuda" else None

    @classmethod
    def open(cls, path: Path, device: str, input_names: Sequence[str], output_name: str, *, hint: str,
             unit: str = "pairs", threads: int | None = None, gpu_mem_limit_mb: int | None = None) -> "OnnxSession":
        """Open `path` on `device` and check it takes `input_names` (int64) and has `output_name`.

        `device` "auto" falls back to CPU when the CUDA provider fails to start; "cuda" then
        raises. `threads`: CPU threads per run (None: ONNX Runtime's choice). `gpu_mem_limit_mb`
        caps ONNX Runtime's CUDA memory arena. `hint` is what the caller's errors say to do
        (how to re-export); `unit` names a batch's rows in run errors.

        Example:
            >>> OnnxSession.open(Path("no/model.onnx"), "cpu", ["input_ids"], "logits", hint="export it")
            Traceback (most recent call last):
            ...
            es_rerank.errors.ModelError: model file no/model.onnx named by meta.json is missing (export it)
        """
        import onnxruntime

        wanted = resolve_device(device)
        if not path.is_file():
            raise ModelError(f"model file {path} named by meta.json is missing", hint=hint)
        try:
            session = onnxruntime.InferenceSession(str(path), session_options(threads),
                                                   providers=_providers(onnxruntime, wanted, gpu_mem_limit_mb))
        except Exception as exc:
            raise ModelError(f"ONNX Runtime cannot load {path}: {str(exc).strip().splitlines()[0]}",
                             hint=hint) from exc
        _check_io(session, path, input_names, output_name, hint)
        actual = "cuda" if "CUDAExecutionProvider" in session.get_providers() else "cpu"
        if device == "cuda" and actual != "cuda":
            raise ModelError("ONNX Runtime's CUDA execution provider failed to start (CUDA or cuDNN libraries "
                             "missing or mismatched?)", hint="check `nvidia-smi` and the onnxruntime-gpu build, "
                             "or pass --device cpu")
        return cls(session, actual, input_names, output_name, unit)

    def metadata(self, key: str) -> str | None:
        """A custom metadata entry of the ONNX file (e.g. the dtype label export writes)."""
        return self._session.get_modelmeta().custom_metadata_map.get(key)

    def run(self, batch: EncodedBatch) -> np.ndarray:
        """The model's output for one padded batch, rows in the batch's order.

        Raises `ScoringOutOfMemory` when the runtime runs out of memory and `ScoringError` on
        any other runtime failure.
        """
        inputs = batch.arrays(self.input_names)
        try:
            if self._gpu_lock is None:
                return self._session.run([self.output_name], inputs)[0]
            with self._gpu_lock:
                return self._run_bound(inputs)
        except Exception as exc:
            raise scoring_failure(exc, batch.shape, self.unit) from exc

    def _run_bound(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        # A fresh binding per run: IOBinding objects are not safe to share between threads.
        binding = self._session.io_binding()
        for name, array in inputs.items():
            binding.bind_cpu_input(name, array)
        binding.bind_output(self.output_name, "cuda")
        self._session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


def session_options(threads: int | None):
    """Quiet session options; `threads` intra-op CPU threads (None: ONNX Runtime's choice)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings such as "some nodes run on CPU" are expected and noisy
    if threads is not None:
        options.intra_op_num_threads = threads
    # Idle worker threads would otherwise spin between runs, taking CPU from the proxy's event
    # loop and anything else on the box.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _providers(onnxruntime, device: str, gpu_mem_limit_mb: int | None) -> list:
    providers: list = ["CPUExecutionProvider"]
    if device == "cuda":
        _preload_cuda_libraries(onnxruntime)
        # fp32 means fp32: TF32 matmuls would break parity with the PyTorch fp32 model
        cuda = {"device_id": 0, "use_tf32": "0"}
        if gpu_mem_limit_mb is not None:
            cuda["gpu_mem_limit"] = str(gpu_mem_limit_mb * 1024 * 1024)
        providers.insert(0, ("CUDAExecutionProvider", cuda))
    return providers


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


def _check_io(session, path: Path, input_names: Sequence[str], output_name: str, hint: str) -> None:
    """Fail when the ONNX file disagrees with what meta.json says about its inputs and output."""
    inputs = {i.name: i.type for i in session.get_inputs()}
    if sorted(inputs) != sorted(input_names):
        raise ModelError(f"{path.name} takes inputs {sorted(inputs)} but meta.json lists {list(input_names)}",
                         hint=hint)
    wrong = {name: kind for name, kind in inputs.items() if kind != "tensor(int64)"}
    if wrong:
        raise ModelError(f"{path.name} inputs {wrong} are not int64 tensors", hint=hint)
    outputs = [o.name for o in session.get_outputs()]
    if output_name not in outputs:
        raise ModelError(f"{path.name} has outputs {outputs} but meta.json names {output_name!r}", hint=hint)
