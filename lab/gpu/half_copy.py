"""A float16 copy of a Hugging Face model directory, for transfers with a size limit.

The GPU machine takes at most 64 MiB of files per call, and MiniLM-L6's fp32 weights alone are
87 MiB. The copy rounds every floating-point tensor to float16 (relative error below 5e-4,
far under what fine-tuning changes) and copies every other file as is; `load_cross_encoder`
loads it back into fp32 weights.

Usage: `python -m lab.gpu.half_copy SRC_DIR DST_DIR`
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from es_rerank.errors import ModelError

WEIGHT_FILES = ("model.safetensors",)


def half_copy(src: Path, dst: Path) -> Path:
    """Copy `src` to `dst` with `model.safetensors` cast to float16."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = src / "model.safetensors"
    if not weights.is_file():
        raise ModelError(f"{src} has no model.safetensors", hint="pass a Hugging Face model directory")
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_file() and item.name not in WEIGHT_FILES:
            shutil.copy2(item, dst / item.name)
    tensors = {name: (t.to(torch.float16) if t.is_floating_point() else t).contiguous()
               for name, t in load_file(str(weights)).items()}
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m lab.gpu.half_copy SRC_DIR DST_DIR")
    print(half_copy(Path(sys.argv[1]), Path(sys.argv[2])))
