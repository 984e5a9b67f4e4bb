"""Dense bi-encoder scoring without torch: the embedding-cosine head over `OnnxSession`,
tokenized by the Rust `tokenizers` library.

The score of a (query, document) pair is the cosine of their embeddings, so it implements
the same `Scorer` protocol as the cross-encoder and can be a fusion input or a reranker of
its own. The export directory (made by `es-rerank export-dense`) holds `model.onnx`, whose
single output is the L2-normalised pooled embedding, `tokenizer.json`, and `meta.json` with
`"kind": "bi-encoder"`; the scorer trusts only that file for how to run the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from es_rerank.errors import ModelError, ScoringError
from es_rerank.scoring.onnx_session import OnnxSession, check_device
from es_rerank.scoring.token_batches import EncodedBatch, EncodedPair, batch_by_length
from es_rerank.scoring.pair_encoding import TextCache, load_tokenizer
from es_rerank.scoring.validity import check_scores

META_FILE = "meta.json"
KIND = "bi-encoder"
FORMAT_VERSION = 1
EXPORT_HINT = "re-export with `es-rerank export-dense`"


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
            raise ModelError(f"{where} is not a JSON object", hint=EXPORT_HINT)
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
                                 hint=EXPORT_HINT)
        unknown_inputs = set(data["input_names"]) - {"input_ids", "attention_mask", "token_type_ids"}
        if unknown_inputs or "input_ids" not in data["input_names"]:
            raise ModelError(f"{where}: input_names {data['input_names']} are not a subset of "
                             "input_ids, attention_mask, token_type_ids including input_ids",
                             hint=EXPORT_HINT)
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
        raise ModelError(f"cannot read {path}: {exc}", hint=EXPORT_HINT) from exc
    return DenseMeta.from_dict(data, str(path))


class DenseScorer:
    """Cosine similarity of bi-encoder embeddings; a `Scorer`, safe to call from several threads.

    Texts are stripped (and lowercased when the model says so) like sentence-transformers does,
    cut to `max_length` tokens, deduplicated within a call, and embedded in length-sorted batches
    so padding stays small. With `cache_size` > 0 the embeddings of the most recently used
    texts are kept, so a document that comes back in many windows is embedded once.
    """

    def __init__(self, session: OnnxSession, tokenizer, meta: DenseMeta, batch_size: int = 64,
                 cache_size: int = 0) -> None:
        """Use `DenseScorer.load`; `tokenizer` is a `tokenizers.Tokenizer` that truncates to `meta.max_length`."""
        for name, value, low in (("batch_size", batch_size, 1), ("cache_size", cache_size, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ModelError(f"{name} must be an integer >= {low}, got {value!r}", hint="e.g. 64")
        self.session = session
        self.device = session.device
        self.tokenizer = tokenizer
        self.meta = meta
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: TextCache[np.ndarray] = TextCache(cache_size)

    @classmethod
    def load(cls, export_dir: str | Path, device: str = "cpu", batch_size: int = 64,
             threads: int = 0, cache_size: int = 0) -> "DenseScorer":
        """Open an export made by `es-rerank export-dense`.

        `device` is "cpu", "cuda" (needs onnxruntime-gpu) or "auto" (CUDA when it can run here);
        `threads` caps CPU intra-op threads (0: onnxruntime's default); `cache_size` is how many
        text embeddings to keep (0: none).
        """
        check_device(device)
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
            raise ModelError(f"threads must be an integer >= 0, got {threads!r}", hint="0 lets onnxruntime choose")
        export_dir = Path(export_dir)
        meta = read_meta(export_dir)
        tokenizer = load_tokenizer(export_dir / meta.tokenizer, EXPORT_HINT)
        session = OnnxSession.open(export_dir / meta.onnx, device, meta.input_names, meta.output_name,
                                   hint=EXPORT_HINT, unit="texts", threads=threads or None)
        tokenizer.no_padding()  # batch_by_length pads each length-sorted batch
        tokenizer.enable_truncation(meta.max_length)
        return cls(session, tokenizer, meta, batch_size=batch_size, cache_size=cache_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per text, in input order.
        """
        prepared = [self._prepare(text) for text in texts]
        out = np.empty((len(prepared), self.meta.dim), dtype=np.float32)
        missing = []
        for i, cached in enumerate(self._cache.get_many(prepared)):
            if cached is None:
                missing.append(i)
            else:
                out[i] = cached
        if missing:
            unique = list(dict.fromkeys(prepared[i] for i in missing))
            vectors = self._embed_uncached(unique)
            row = {text: j for j, text in enumerate(unique)}
            out[missing] = vectors[[row[prepared[i]] for i in missing]]
            if self.cache_size:
                self._cache.put_many({text: vector.copy() for text, vector
                                      in zip(unique[-self.cache_size:], vectors[-self.cache_size:])})
        return out

    def _embed_uncached(self, prepared: list[str]) -> np.ndarray:
        try:
            encodings = self.tokenizer.encode_batch(prepared)
        except Exception as exc:
            raise ScoringError(f"tokenizing {len(prepared)} texts failed: {exc}",
                               hint="texts must be strings") from exc
        texts = [EncodedPair(e.ids, e.type_ids) for e in encodings]
        out = np.empty((len(prepared), self.meta.dim), dtype=np.float32)
        for batch in batch_by_length(texts, self.batch_size, self.meta.pad_id, max_width=self.meta.max_length):
            out[batch.rows] = self._run(batch)
        return out

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
        scores = np.einsum("ij,ij->i", left, right).astype(np.float32)
        check_scores(scores, len(documents), "the bi-encoder")
        return scores

    def _prepare(self, text: str) -> str:
        if not isinstance(text, str):
            raise ScoringError(f"texts must be strings, got {type(text).__name__}", hint="pass str values")
        text = text.strip()
        return text.lower() if self.meta.lowercase else text

    def _run(self, batch: EncodedBatch) -> np.ndarray:
        embeddings = self.session.run(batch)
        if embeddings.shape != (batch.shape[0], self.meta.dim):
            raise ScoringError(f"the bi-encoder returned embeddings of shape {embeddings.shape} for "
                               f"{batch.shape[0]} texts; expected ({batch.shape[0]}, {self.meta.dim})",
                               hint=EXPORT_HINT)
        return embeddings
