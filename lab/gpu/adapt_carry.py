"""Lay out the folder `adapt_gpu` reads on the GPU machine (which has no OpenSearch and no network).

Everything in it is made here: the prepared groups (`es-rerank adapt --prepare-only`), the
scored candidates (`es-rerank fusion-candidates` + `score-candidates --dense`), the qrels, and
a float16 copy of the base model (the device machine takes at most 64 MiB per call, the
repository included).

Usage::

    python -m lab.gpu.adapt_carry --scifact-groups G1 --cranfield-groups G2 \\
        --candidates artifacts/fusion --data ../shared/data --base MODEL_DIR --out artifacts/adapt-carry
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from es_rerank.errors import DatasetError

CANDIDATES = ("scifact-dev", "scifact-test", "cranfield-test")
QRELS = {"scifact-train": ("scifact", "train"), "scifact-test": ("scifact", "test"),
         "cranfield-test": ("cranfield", "test")}


def make_carry(scifact_groups: Path, cranfield_groups: Path, candidates: Path, data: Path, base: Path,
               out: Path) -> float:
    """Copy everything into `out`; returns its size in MiB, refusing more than a device call carries."""
    from lab.gpu.carry_limit import checked_carry_size
    from lab.gpu.half_copy import half_copy

    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    shutil.copy2(scifact_groups, out / "scifact.groups.jsonl.gz")
    shutil.copy2(cranfield_groups, out / "cranfield.groups.jsonl.gz")
    for name in CANDIDATES:
        source = candidates / f"{name}.scored.jsonl.gz"
        if not source.is_file():
            raise DatasetError(f"no scored candidates at {source}",
                               hint="make them with es-rerank fusion-candidates and score-candidates --dense")
        shutil.copy2(source, out / source.name)
    for name, (collection, split) in QRELS.items():
        shutil.copy2(data / collection / "qrels" / f"{split}.tsv", out / "qrels" / f"{name}.tsv")
    half_copy(base, out / "base")
    return checked_carry_size(out, hint="prepare fewer pseudo-queries (--max-queries) or a shallower --depth")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scifact-groups", type=Path, required=True, help="prepared SciFact groups file")
    parser.add_argument("--cranfield-groups", type=Path, required=True, help="prepared Cranfield groups file")
    parser.add_argument("--candidates", type=Path, required=True,
                        help="folder with scifact-dev, scifact-test, cranfield-test .scored.jsonl.gz")
    parser.add_argument("--data", type=Path, required=True, help="folder holding the scifact/ and cranfield/ BEIR dirs")
    parser.add_argument("--base", type=Path, required=True, help="the student's base model directory")
    parser.add_argument("--out", type=Path, required=True, help="carry folder to write")
    args = parser.parse_args(argv)
    size = make_carry(args.scifact_groups, args.cranfield_groups, args.candidates, args.data, args.base, args.out)
    print(f"{args.out}: {size:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
