"""What produced a checkpoint, written beside it and carried into the export's meta.json.

The record names the recipe (the resolved settings file and its sha256), the training data
(the groups file and its sha256), the seed, whether deterministic mode was on, and the versions
of torch, transformers and tokenizers. A figure is reproduced from this record, not from memory.

Deterministic mode (`deterministic: true` in a recipe, `--deterministic`) asks torch for
deterministic kernels (an error, not a silent difference, where one has none), pins cuBLAS's
workspace and keeps TF32 off, so that the same seed and data give the same weights on the same
machine and versions. It costs speed on a GPU; on the CPU the kernels are deterministic anyway.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import torch

from es_rerank.export.checkpoints import PROVENANCE_FILE
from es_rerank.data.textfiles import file_sha256

# cuBLAS needs a fixed workspace for deterministic matmuls (CUDA >= 10.2); set before CUDA starts.
CUBLAS_DETERMINISTIC = ":4096:8"


def library_versions() -> dict[str, str]:
    """The versions that decide what a training run computes."""
    import tokenizers
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def run_provenance(recipe: Path, data: Path, seed: int, deterministic: bool, world_size: int) -> dict[str, Any]:
    """The record of one training run, from its written recipe and its training data file."""
    return {"recipe": recipe.name, "recipe_sha256": file_sha256(recipe), "data": data.name,
            "data_sha256": file_sha256(data), "seed": seed, "deterministic": deterministic,
            "world_size": world_size, "versions": library_versions()}


def write_provenance(out_dir: Path, record: dict[str, Any]) -> Path:
    path = out_dir / PROVENANCE_FILE
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Deterministic kernels for the duration of a run when `enabled`; the previous settings after it."""
    if not enabled:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.backends.cudnn.deterministic)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1], before[2]
