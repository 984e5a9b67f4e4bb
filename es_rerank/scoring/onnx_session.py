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
from pathlib import Path
from typing import Sequence

import numpy as np

from es_rerank.errors import ModelError, ScoringError, ScoringOutOfMemory
from es_rerank.scoring.token_batches import EncodedBatch
# Also importable from here, where they lived before token_batches: other builds' modules that the
# lab benchmarks load side by side (lab.bench.scorer_host --against) still import them from here.
from es_rerank.scoring.token_batches import PAD_MULTIPLE, TOKEN_DTYPE, EncodedPair, batch_by_length  # noqa: F401

DEVICES = ("auto", "cuda", "cpu")
# Fragments of ONNX Runtime error messages that mean the device (or host) ran out of memory.
_OOM_MARKERS = ("out of memory", "failed to allocate memory", "bfcarena", "alloc_failed", "cudaerrormemoryallocation")


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
