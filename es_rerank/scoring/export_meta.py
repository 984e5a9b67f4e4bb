"""`meta.json`: what an export directory holds and how to run it.

`es-rerank export` writes it; `OnnxScorer` trusts nothing else. It names the ONNX file of each
variant (fp32 always; fp16 and int8 when exported), the tokenizer file, the length limits, the
model's input and output names, the output activation, the source checkpoint, the fused-op
counts and the parity figures. Each ONNX file also carries its variant's dtype in its own
metadata, so a file swapped behind meta.json's back is caught at load time.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from es_rerank.errors import ModelError

META_FILE = "meta.json"
FORMAT = "es-rerank-onnx"
FORMAT_VERSION = 1
MAX_LENGTH_LIMIT = 512
# variant name -> (ONNX file, dtype written in meta.json and in the ONNX file's metadata)
VARIANT_FILES = {"fp32": "model.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx"}
VARIANT_DTYPES = {"fp32": "float32", "fp16": "float16", "int8": "int8"}
ONNX_DTYPE_KEY = "es_rerank.dtype"
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ACTIVATIONS = ("identity", "sigmoid")
EXPORT_HINT = "re-create the directory with `es-rerank export CHECKPOINT OUTDIR`"


@dataclass(frozen=True)
class ModelVariant:
    """One ONNX file of an export: its variant name, file, dtype, fused-op counts and parity."""

    name: str
    file: str
    dtype: str
    fused_ops: dict[str, int] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportMeta:
    """The contents of meta.json.

    Example:
        >>> meta = ExportMeta("ckpt", 256, 64, ("input_ids", "attention_mask"), "logits", "identity", 0,
        ...                   "tokenizer.json", {"fp32": ModelVariant("fp32", "model.onnx", "float32")})
        >>> ExportMeta.from_json(meta.to_json(), "meta.json") == meta
        True
    """

    source_checkpoint: str
    max_length: int
    query_max_length: int
    input_names: tuple[str, ...]
    output_name: str
    output_activation: str
    pad_token_id: int
    tokenizer_file: str
    variants: dict[str, ModelVariant]
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to meta.json."""
        data = {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}
        data["input_names"] = list(self.input_names)
        for variant in data["variants"].values():
            del variant["name"]
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> "ExportMeta":
        """Validate a parsed meta.json; `where` names it in error messages."""
        if not isinstance(data, dict):
            raise ModelError(f"{where} must hold a JSON object, got {type(data).__name__}", hint=EXPORT_HINT)
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"{where} has format {data.get('format')!r} version {data.get('format_version')!r}; "
                f"expected {FORMAT!r} version {FORMAT_VERSION}", hint=EXPORT_HINT)
        get = _Getter(data, where)
        max_length = get.integer("max_length", 8, MAX_LENGTH_LIMIT)
        query_max_length = get.integer("query_max_length", 1, max_length - 1)
        input_names = tuple(get.texts("input_names"))
        missing = [n for n in ("input_ids", "attention_mask") if n not in input_names]
        unknown = [n for n in input_names if n not in KNOWN_INPUTS]
        if missing or unknown or len(set(input_names)) != len(input_names):
            raise ModelError(f"{where}: input_names {list(input_names)} must list input_ids and attention_mask, "
                             f"optionally token_type_ids, each once", hint=EXPORT_HINT)
        activation = get.text("output_activation")
        if activation not in ACTIVATIONS:
            raise ModelError(f"{where}: output_activation {activation!r} is not one of {list(ACTIVATIONS)}",
                             hint=EXPORT_HINT)
        variants_data = data.get("variants")
        if not isinstance(variants_data, dict) or not variants_data:
            raise ModelError(f"{where}: 'variants' must be a non-empty object naming the ONNX files", hint=EXPORT_HINT)
        variants = {name: _variant(name, value, where) for name, value in variants_data.items()}
        details = data.get("details", {})
        return cls(
            source_checkpoint=get.text("source_checkpoint"), max_length=max_length,
            query_max_length=query_max_length, input_names=input_names, output_name=get.text("output_name"),
            output_activation=activation, pad_token_id=get.integer("pad_token_id", 0, 2**31),
            tokenizer_file=get.text("tokenizer_file"), variants=variants,
            details=details if isinstance(details, dict) else {})

    def variant(self, name: str | None, device: str) -> ModelVariant:
        """The variant to run: `name`, or by default fp16 on cuda and int8 (when exported) on cpu,
        else fp32.

        Example:
            >>> meta = ExportMeta("c", 64, 8, ("input_ids", "attention_mask"), "logits", "identity", 0, "t.json",
            ...                   {"fp32": ModelVariant("fp32", "model.onnx", "float32")})
            >>> meta.variant(None, "cuda").name
            'fp32'
            >>> meta.variant("int8", "cpu")
            Traceback (most recent call last):
            ...
            es_rerank.errors.ModelError: this export has no 'int8' model; it has ['fp32'] (export again with --int8, or pick one of those)
        """
        if name is None:
            preferred = {"cuda": ("fp16", "fp32"), "cpu": ("int8", "fp32")}.get(device, ("fp32",))
            name = next((v for v in preferred if v in self.variants), next(iter(self.variants)))
        if name not in self.variants:
            flag = {"fp16": "--fp16", "int8": "--int8"}.get(name, "the matching option")
            raise ModelError(f"this export has no {name!r} model; it has {sorted(self.variants)}",
                             hint=f"export again with {flag}, or pick one of those")
        return self.variants[name]


def read_meta(export_dir: str | Path) -> ExportMeta:
    """Read and validate `<export_dir>/meta.json`; every problem is a `ModelError` saying what to do.

    Example:
        >>> read_meta("no/such/dir")
        Traceback (most recent call last):
        ...
        es_rerank.errors.ModelError: export directory no/such/dir does not exist (run `es-rerank export CHECKPOINT no/such/dir` first)
    """
    directory = Path(export_dir)
    if not directory.is_dir():
        raise ModelError(f"export directory {directory} does not exist",
                         hint=f"run `es-rerank export CHECKPOINT {directory}` first")
    path = directory / META_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing; {directory} is not an es-rerank export", hint=EXPORT_HINT)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}", hint=EXPORT_HINT) from exc
    return ExportMeta.from_json(data, str(path))


def write_meta(export_dir: str | Path, meta: ExportMeta) -> Path:
    """Write meta.json (through a temporary file, so a crash never leaves half a file).
    """
    path = Path(export_dir) / META_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _variant(name: str, value: Any, where: str) -> ModelVariant:
    if name not in VARIANT_FILES or not isinstance(value, dict):
        raise ModelError(f"{where}: unknown model variant {name!r}; expected some of {sorted(VARIANT_FILES)}",
                         hint=EXPORT_HINT)
    get = _Getter(value, f"{where} variants.{name}")
    dtype = get.text("dtype")
    if dtype != VARIANT_DTYPES[name]:
        raise ModelError(f"{where}: variant {name!r} says dtype {dtype!r}; expected {VARIANT_DTYPES[name]!r}",
                         hint=EXPORT_HINT)
    file = get.text("file")
    if Path(file).name != file:
        raise ModelError(f"{where}: variant {name!r} file {file!r} must be a plain file name inside the export",
                         hint=EXPORT_HINT)
    fused = value.get("fused_ops", {})
    parity = value.get("parity", {})
    return ModelVariant(name, file, dtype, dict(fused) if isinstance(fused, Mapping) else {},
                        dict(parity) if isinstance(parity, Mapping) else {})


class _Getter:
    """Typed field access with messages naming the file and the field."""

    def __init__(self, data: dict, where: str) -> None:
        self.data, self.where = data, where

    def _get(self, key: str) -> Any:
        if key not in self.data:
            raise ModelError(f"{self.where} lacks {key!r}", hint=EXPORT_HINT)
        return self.data[key]

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value:
            raise ModelError(f"{self.where}: {key!r} must be a non-empty string, got {value!r}", hint=EXPORT_HINT)
        return value

    def integer(self, key: str, low: int, high: int) -> int:
        value = self._get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ModelError(f"{self.where}: {key!r} must be an integer from {low} to {high}, got {value!r}",
                             hint=EXPORT_HINT)
        return value

    def texts(self, key: str) -> list[str]:
        value = self._get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ModelError(f"{self.where}: {key!r} must be a non-empty list of strings, got {value!r}",
                             hint=EXPORT_HINT)
        return value
