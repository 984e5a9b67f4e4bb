"""Loading the models `serve` runs, with the errors a user of `serve` needs: one place for the
single-process proxy, the model-server process and the worker processes of `serve --workers N`.

Example:
    >>> load_cross_encoder_for_serving(Path("no/such/export"))
    Traceback (most recent call last):
    ...
    es_rerank.errors.ModelError: model directory no/such/export does not exist (pass the directory `es-rerank export` wrote (it holds meta.json and model.onnx))
"""

from __future__ import annotations

from pathlib import Path

from es_rerank.errors import ModelError

# Embeddings kept of documents that come back in many windows (popular queries, paging).
DENSE_CACHE_SIZE = 10_000


def load_cross_encoder_for_serving(model_dir: Path, device: str = "auto", batch_size: int = 64,
                                   batch_tokens: int | None = None):
    """The `OnnxScorer` of an `es-rerank export` directory."""
    _check_export_dir(model_dir, "model", "es-rerank export")
    from es_rerank.scoring.cross_encoder import OnnxScorer

    return OnnxScorer.load(model_dir, device=device, batch_size=batch_size, batch_tokens=batch_tokens)


def load_dense_for_serving(export_dir: Path, device: str = "auto", threads: int = 0):
    """The `DenseScorer` of an `es-rerank export-dense` directory, with its document cache."""
    _check_export_dir(export_dir, "dense model", "es-rerank export-dense")
    from es_rerank.scoring.bi_encoder import DenseScorer

    return DenseScorer.load(export_dir, device=device, threads=threads, cache_size=DENSE_CACHE_SIZE)


def _check_export_dir(path: Path, what: str, command: str) -> None:
    """Refuse a missing export directory, or a missing ONNX Runtime (the serve extra), with the fix."""
    if not path.is_dir():
        raise ModelError(f"{what} directory {path} does not exist",
                         hint=f"pass the directory `{command}` wrote (it holds meta.json and model.onnx)")
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ModelError(f"the {what} cannot run: {exc}", hint="pip install 'es-rerank[serve]' or '[gpu]'") from exc
