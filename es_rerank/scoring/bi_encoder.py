"""Dense bi-encoder scoring without torch: an ONNX sentence encoder run by onnxruntime,
tokenized by the Rust `tokenizers` library.

The score of a (query, document) pair is the cosine of their embeddings, so it implements
the same `Scorer` protocol as the cross-encoder and can be a fusion input or a reranker of
its own. The export directory (made by `es-rerank export-dense`) holds `model.onnx`, whose
single output is the L2-normalised pooled embedding, `tokenizer.json`, and `meta.json` with
`"kind": "bi-encoder"`; the scorer trusts only that file for how to run the model.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from es_rerank.errors import ModelError, ScoringError, ScoringOutOfMemory

META_FILE = "meta.json"
KIND = "bi-encoder"
FORMAT_VERSION = 1
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class DenseMeta:
    """What `meta.json` of a bi-encoder export says about running it.

    Example:
        >>> DenseMeta.from_dict({"kind": "bi-encoder", "format_version": 1, "onnx": "model.onnx",
        ...     "tokenizer": "tokenizer.json", "max_length": 256, "lowercase": False, "pad_id": 0,
        ...     "input_names": ["input_ids", "attention_mask"], "output_name": "sentence_embedding",
        ...     "dim": 384}, "x/meta.json").max_length
        256
    """

    onnx: str
    tokenizer: str
    max_length: int
    lowercase: bool
    pad_id: int
    input_names: tuple[str, ...]
    output_name: str
    dim: int

    @classmethod
    def from_dict(cls, data: object, where: str) -> "DenseMeta":
        """Validate a parsed `meta.json`; `where` names the file in error messages."""
        if not isinstance(data, dict):
            raise ModelError(f"{where} is not a JSON object", hint="re-export with `es-rerank export-dense`")
        if data.get("kind") != KIND:
            raise ModelError(f"{where} has kind {data.get('kind')!r}, expected {KIND!r}",
                             hint="pass a directory made by `es-rerank export-dense` (a cross-encoder export "
                                  "is loaded by the cross-encoder scorer instead)")
        if data.get("format_version") != FORMAT_VERSION:
            raise ModelError(f"{where} has format_version {data.get('format_version')!r}, "
                             f"this es-rerank reads {FORMAT_VERSION}",
                             hint="re-export the model with this version of `es-rerank export-dense`")
        expected = {"onnx": str, "tokenizer": str, "max_length": int, "lowercase": bool, "pad_id": int,
                    "input_names": list, "output_name": str, "dim": int}
        for key, kind in expected.items():
            if not isinstance(data.get(key), kind) or (kind is int and isinstance(data.get(key), bool)):
                raise ModelError(f"{where}: {key} should be a {kind.__name__}, got {data.get(key)!r}",
                                 hint="re-export with `es-rerank export-dense`")
        unknown_inputs = set(data["input_names"]) - {"input_ids", "attention_mask", "token_type_ids"}
        if unknown_inputs or "input_ids" not in data["input_names"]:
            raise ModelError(f"{where}: input_names {data['input_names']} are not a subset of "
                             "input_ids, attention_mask, token_type_ids including input_ids",
                             hint="re-export with `es-rerank export-dense`")
        if data["max_length"] < 2:
            raise ModelError(f"{where}: max_length {data['max_length']} is too small", hint="expected e.g. 256")
        return cls(onnx=data["onnx"], tokenizer=data["tokenizer"], max_length=data["max_length"],
                   lowercase=data["lowercase"], pad_id=data["pad_id"], input_names=tuple(data["input_names"]),
                   output_name=data["output_name"], dim=data["dim"])


def read_meta(export_dir: str | Path) -> DenseMeta:
    """Read and validate `<export_dir>/meta.json`.
    """
    path = Path(export_dir) / META_FILE
    if not path.is_file():
        raise ModelError(f"no {META_FILE} in {export_dir}",
                         hint="export the bi-encoder first: es-rerank export-dense MODEL OUTDIR")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}", hint="re-export with `es-rerank export-dense`") from exc
    return DenseMeta.from_dict(data, str(path))


class DenseScorer:
    """Cosine similarity of bi-encoder embeddings; a `Scorer`, safe to call from several threads.

    Texts are stripped (and lowercased when the model says so) like sentence-transformers does,
    cut to `max_length` tokens, deduplicated within a call, and embedded in length-sorted batches
    so padding stays small. With `cache_size` > 0 the embeddings of the most recently used
    texts are kept, so a document that comes back in many windows is embedded once.
    """

    def __init__(self, session, tokenizer, meta: DenseMeta, batch_size: int = 64, cache_size: int = 0) -> None:
        for name, value, low in (("batch_size", batch_size, 1), ("cache_size", cache_size, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ModelError(f"{name} must be an integer >= {low}, got {value!r}", hint="e.g. 64")
        self.session = session
        self.tokenizer = tokenizer
        self.meta = meta
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    @classmethod
    def load(cls, export_dir: str | Path, device: str = "cpu", batch_size: int = 64,
             threads: int = 0, cache_size: int = 0) -> "DenseScorer":
        """Open an export made by `es-rerank export-dense`.

        `device` is `cpu` or `cuda` (needs onnxruntime-gpu); `threads` caps CPU intra-op threads
        (0: onnxruntime's default); `cache_size` is how many text embeddings to keep (0: none).
        """
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if device not in DEVICES:
            raise ModelError(f"device must be one of {', '.join(DEVICES)}, got {device!r}", hint="use cpu or cuda")
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
            raise ModelError(f"threads must be an integer >= 0, got {threads!r}", hint="0 lets onnxruntime choose")
        export_dir = Path(export_dir)
        meta = read_meta(export_dir)
        for name in (meta.onnx, meta.tokenizer):
            if not (export_dir / name).is_file():
                raise ModelError(f"{export_dir / name} is missing though {META_FILE} names it",
                                 hint="re-export with `es-rerank export-dense`")
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelError("device cuda asked for, but this onnxruntime has no CUDAExecutionProvider",
                                 hint="install onnxruntime-gpu, or use --device cpu")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # Idle worker threads would otherwise spin between runs, taking CPU from the proxy's loop.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(export_dir / meta.onnx), sess_options=options, providers=providers)
            tokenizer = Tokenizer.from_file(str(export_dir / meta.tokenizer))
        except Exception as exc:  # onnxruntime and tokenizers raise their own untyped errors
            raise ModelError(f"cannot load the bi-encoder in {export_dir}: {exc}",
                             hint="re-export with `es-rerank export-dense`") from exc
        tokenizer.no_padding()  # we pad per length-sorted batch ourselves
        tokenizer.enable_truncation(meta.max_length)
        return cls(session, tokenizer, meta, batch_size=batch_size, cache_size=cache_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per text, in input order.
        """
        prepared = [self._prepare(text) for text in texts]
        out = np.empty((len(prepared), self.meta.dim), dtype=np.float32)
        missing = []
        with self._cache_lock:
            for i, text in enumerate(prepared):
                cached = self._cache.get(text)
                if cached is None:
                    missing.append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = cached
        if missing:
            unique = list(dict.fromkeys(prepared[i] for i in missing))
            vectors = self._embed_uncached(unique)
            row = {text: j for j, text in enumerate(unique)}
            out[missing] = vectors[[row[prepared[i]] for i in missing]]
            self._remember(unique, vectors)
        return out

    def _embed_uncached(self, prepared: list[str]) -> np.ndarray:
        try:
            encodings = self.tokenizer.encode_batch(prepared)
        except Exception as exc:
            raise ScoringError(f"tokenizing {len(prepared)} texts failed: {exc}",
                               hint="texts must be strings") from exc
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        out = np.empty((len(prepared), self.meta.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            out[rows] = self._run([encodings[i] for i in rows])
        return out

    def _remember(self, texts: list[str], vectors: np.ndarray) -> None:
        if self.cache_size == 0:
            return
        with self._cache_lock:
            for text, vector in zip(texts[-self.cache_size:], vectors[-self.cache_size:]):
                self._cache[text] = vector.copy()
                self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Cosine of `queries[i]` and `documents[i]` embeddings; float32, input order.
        """
        if len(queries) != len(documents):
            raise ScoringError(f"got {len(queries)} queries but {len(documents)} documents",
                               hint="pass one query per document")
        if not documents:
            return np.zeros(0, dtype=np.float32)
        vectors = self.embed([*queries, *documents])  # repeated texts are embedded once
        left, right = vectors[:len(queries)], vectors[len(queries):]
        return np.einsum("ij,ij->i", left, right).astype(np.float32)

    def _prepare(self, text: str) -> str:
        if not isinstance(text, str):
            raise ScoringError(f"texts must be strings, got {type(text).__name__}", hint="pass str values")
        text = text.strip()
        return text.lower() if self.meta.lowercase else text

    def _run(self, encodings) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        feeds = {"input_ids": np.full((len(encodings), width), self.meta.pad_id, dtype=np.int64),
                 "attention_mask": np.zeros((len(encodings), width), dtype=np.int64),
                 "token_type_ids": np.zeros((len(encodings), width), dtype=np.int64)}
        for i, encoding in enumerate(encodings):
            n = len(encoding.ids)
            feeds["input_ids"][i, :n] = encoding.ids
            feeds["attention_mask"][i, :n] = encoding.attention_mask
            feeds["token_type_ids"][i, :n] = encoding.type_ids
        try:
            (embeddings,) = self.session.run([self.meta.output_name],
                                             {name: feeds[name] for name in self.meta.input_names})
        except Exception as exc:
            if "out of memory" in str(exc).lower():
                raise ScoringOutOfMemory(f"bi-encoder ran out of memory on a batch of {len(encodings)}",
                                         hint="lower the batch size") from exc
            raise ScoringError(f"bi-encoder inference failed: {exc}", hint="check the export with "
                               "`es-rerank export-dense` parity output") from exc
        return embeddings
