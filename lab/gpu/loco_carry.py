"""Lay out the folder `loco_gpu` reads on the GPU machine (which has no OpenSearch and no network).

Made here: the training mixture (`es-rerank mix`), each evaluation set's BM25 top-100
(`es-rerank fusion-candidates`), its qrels, and a float16 copy of the base model (a device call
carries at most 64 MiB, the repository included). Everything but the model goes into one
`data.tar.xz` of plain (not gzipped) files: xz over the whole tar is a third smaller than the
gzipped files, as SQuAD paragraphs recur across the mixture and the candidates.
`--evaluations` picks the evaluation sets; `--max-queries` keeps the first N queries of each,
for a quick check on a CPU.

Usage::

    python -m lab.gpu.loco_carry --mix artifacts/loco/mix-scifact-squad --candidates artifacts/loco/cands \\
        --data ../shared/data --base MODEL_DIR --out artifacts/loco-carry
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from es_rerank.errors import DatasetError

# evaluation set -> (collection folder, qrels split); the candidates are CANDIDATES/{folder}-{split}.jsonl.gz
EVALUATIONS = {"scifact-test": ("scifact", "test"), "squad-dev": ("squad-v1.1", "dev"),
               "cranfield-test": ("cranfield", "test"), "med-test": ("med", "test"), "adi-test": ("adi", "test"),
               "time-test": ("time", "test"), "lisa-test": ("lisa", "test")}


def make_carry(mix: Path, candidates: Path, data: Path, base: Path, out: Path, evaluations: list[str],
               max_queries: int | None = None) -> float:
    """Write `out/base` and `out/data.tar.xz`; returns the size in MiB, refusing more than a device call carries."""
    import tarfile
    import tempfile

    from lab.gpu.carry_limit import checked_carry_size
    from lab.gpu.half_copy import half_copy

    if out.exists():
        raise DatasetError(f"{out} exists", hint="remove it or pass a new --out")
    unknown = sorted(set(evaluations) - set(EVALUATIONS))
    if unknown:
        raise DatasetError(f"unknown evaluation sets {unknown}", hint=f"choose from {', '.join(EVALUATIONS)}")
    for name in evaluations:  # every input is checked before anything is written
        source = candidates_file(candidates, name)
        if not source.is_file():
            folder, split = EVALUATIONS[name]
            raise DatasetError(f"no candidates at {source}",
                               hint=f"make them with es-rerank fusion-candidates DATA/{folder} --split {split}")
    with tempfile.TemporaryDirectory(prefix="loco-carry-") as staging_dir:
        _stage(mix, candidates, data, evaluations, max_queries, Path(staging_dir))
        out.mkdir(parents=True)
        with tarfile.open(out / "data.tar.xz", "w:xz", preset=9) as tar:
            for item in sorted(Path(staging_dir).rglob("*")):
                if item.is_file():
                    tar.add(item, arcname=str(item.relative_to(staging_dir)))
    half_copy(base, out / "base")
    return checked_carry_size(out, hint="mine fewer SQuAD questions (--max-queries) or mix with a smaller --neg-depth")


def candidates_file(candidates: Path, name: str) -> Path:
    """Where `es-rerank fusion-candidates` output for an evaluation set is expected.

    Example:
        >>> candidates_file(Path("cands"), "squad-dev").as_posix()
        'cands/squad-v1.1-dev.jsonl.gz'
    """
    folder, split = EVALUATIONS[name]
    return candidates / f"{folder}-{split}.jsonl.gz"


def _stage(mix: Path, candidates: Path, data: Path, evaluations: list[str], max_queries: int | None,
           staging: Path) -> None:
    """The plain files of data.tar.xz: mix/, cands/NAME.jsonl and qrels/NAME.tsv."""
    from es_rerank.data.candidates import CandidateSet, read_candidates, write_candidates
    from es_rerank.data.textfiles import read_bytes

    (staging / "qrels").mkdir()
    (staging / "cands").mkdir()
    (staging / "mix").mkdir()
    for item in mix.rglob("*"):
        if item.is_file():
            target = staging / "mix" / item.relative_to(mix)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.with_name(item.name.removesuffix(".gz")).write_bytes(read_bytes(item))
    for name in evaluations:
        folder, split = EVALUATIONS[name]
        source = candidates_file(candidates, name)
        target = staging / "cands" / f"{name}.jsonl"
        if max_queries is None:
            target.write_bytes(read_bytes(source))
        else:
            full = read_candidates(source)
            kept = full.queries[:max_queries]
            docs = {d: full.docs[d] for q in kept for d in q.doc_ids}
            write_candidates(CandidateSet(full.meta, docs, kept), target)
        shutil.copy2(data / folder / "qrels" / f"{split}.tsv", staging / "qrels" / f"{name}.tsv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", type=Path, required=True, help="folder written by es-rerank mix (scifact + squad)")
    parser.add_argument("--candidates", type=Path, required=True, help="folder of FOLDER-SPLIT.jsonl.gz candidates")
    parser.add_argument("--data", type=Path, required=True, help="folder holding the BEIR collections")
    parser.add_argument("--base", type=Path, required=True, help="the base model directory")
    parser.add_argument("--out", type=Path, required=True, help="carry folder to write")
    parser.add_argument("--evaluations", default=",".join(EVALUATIONS), help="comma-separated evaluation sets")
    parser.add_argument("--max-queries", type=int, default=None, help="keep this many queries per evaluation set")
    args = parser.parse_args(argv)
    size = make_carry(args.mix, args.candidates, args.data, args.base, args.out,
                      [e.strip() for e in args.evaluations.split(",") if e.strip()], args.max_queries)
    print(f"{args.out}: {size:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
