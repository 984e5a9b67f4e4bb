"""The host work of one top-100 search in the proxy, around its model call, against another build.

What a search costs on the CPU besides the model, with the document cache warm (as in serving,
where the same documents come back): the worker parses the upstream response keeping its raw
text, reads the window's texts, tokenizes the pairs and writes the model server's frame; the
model server reads the frame and pads the batches its scorer runs (its token budget); the worker
rebuilds and serialises the client's page from the scores. Nothing runs a model, and HTTP is left
out, so only the host work is timed.

Another build is the package of another commit, run in its own process on the same searches,
the two sides alternating round by round so both see the same machine load. Both must pad the
same batches and write the same pages (a sha256 of each), or the comparison is refused:

    git archive REV es_rerank | tar -x -C OLD_TREE
    python -m lab.bench.window_host --export EXPORT_DIR --against-tree OLD_TREE [--rounds 8]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_REPLAY = Path("runs/proxy-replay/scifact-top100.jsonl.gz")
STAGES = ("parse", "texts", "encode", "frame", "read_frame", "pad", "rewrite", "total")
MODEL_SERVER_BATCH_TOKENS = 65_536


def replay_searches(replay: Path, count: int) -> list[tuple[str, str]]:
    """(query text, upstream response) of the first `count` replayed searches."""
    from lab.bench.scorer_host import leaf_strings
    from lab.proxy_bench.replay import load_replay

    return [(" ".join(leaf_strings(json.loads(entry.client_body).get("query", {}))), entry.response)
            for entry in load_replay(replay).searches[:count]]


def _batch_by_length():
    """This build's `batch_by_length` (builds before the packed pairs kept it in onnx_session)."""
    try:
        from es_rerank.scoring.token_batches import batch_by_length
    except ImportError:
        from es_rerank.scoring.onnx_session import batch_by_length  # type: ignore[attr-defined,no-redef]
    return batch_by_length


def _search_path():
    """This build's parse of an upstream response and its page from scores, as its `proxy.search` does them
    (builds before deferred hits walked every hit at parse time)."""
    from es_rerank.proxy.rawjson import dump_keeping_raw, parse_keeping_raw
    from es_rerank.proxy.rewrite import reranked_page

    try:
        from es_rerank.proxy.rawjson import DEFERRED_HITS_SHAPE, opened
    except ImportError:
        return parse_keeping_raw, lambda value, raw, spec, scores: dump_keeping_raw(reranked_page(value, spec, scores), raw)

    def page(value, raw, spec, scores) -> bytes:
        return dump_keeping_raw(reranked_page(value, spec, scores, lambda hit: opened(hit, raw)), raw)

    return (lambda body: parse_keeping_raw(body, DEFERRED_HITS_SHAPE)), page


def time_stages(export_dir: Path, searches: list[tuple[str, str]], passes: int) -> dict:
    """Mean ms a search of each stage, over `passes` passes after one that fills the document cache,
    and `sha256`: a digest of every padded batch (ids, mask, type ids, rows) and every page written
    in that first pass, so two builds can be checked to do the same work."""
    import numpy as np

    from es_rerank.proxy.model_server.frames import REQUEST_HEAD, parse_request, request_frame
    from es_rerank.proxy.plan import RerankSpec
    from es_rerank.proxy.rewrite import window_texts
    from es_rerank.scoring.cross_encoder import load_encoder

    batch_by_length = _batch_by_length()
    parse, page_of = _search_path()
    encoder = load_encoder(export_dir)
    totals = dict.fromkeys(STAGES, 0.0)
    digest = hashlib.sha256()
    bodies = [(query, response.encode()) for query, response in searches]
    for n in range(passes + 1):
        for query, body in bodies:
            t0 = time.perf_counter()
            value, raw = parse(body)
            t1 = time.perf_counter()
            if not isinstance(value, dict):
                raise SystemExit("a replayed response is not a JSON object: record the replay again")
            spec = RerankSpec(query, ("title", "text"), 100, 0, 10, 60.0)
            texts = window_texts(value, spec)
            t2 = time.perf_counter()
            pairs = encoder.encode([query] * len(texts), texts)
            t3 = time.perf_counter()
            frame = request_frame(1, pairs)
            t4 = time.perf_counter()
            _, count, tokens = REQUEST_HEAD.unpack(frame[:REQUEST_HEAD.size])
            received = parse_request(frame[REQUEST_HEAD.size:], count, tokens)
            t5 = time.perf_counter()
            batches = list(batch_by_length(received, 128, encoder.pad_id, max_width=encoder.max_length,
                                           max_tokens=MODEL_SERVER_BATCH_TOKENS))
            t6 = time.perf_counter()
            scores = np.cos(np.arange(len(texts), dtype=np.float32))  # a fixed order unlike BM25's
            page = page_of(value, raw, spec, scores)
            t7 = time.perf_counter()
            if not n:
                for batch in batches:
                    for array in (batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.rows):
                        digest.update(array.astype("<i8").tobytes())
                digest.update(page)
            else:
                marks = (t0, t1, t2, t3, t4, t5, t6, t7)
                for stage, took in zip(STAGES, [b - a for a, b in zip(marks, marks[1:])] + [t7 - t0]):
                    totals[stage] += took
    figures: dict = {stage: total / (passes * len(bodies)) * 1000 for stage, total in totals.items()}
    figures["sha256"] = digest.hexdigest()
    return figures


def one_side(tree: Path | None, export_dir: Path, searches_file: Path, passes: int) -> dict:
    """`time_stages` on the searches in `searches_file` (JSON), in a fresh process whose `es_rerank`
    is `tree`'s (this checkout's when None)."""
    env = dict(os.environ)
    package_root = str(tree.resolve()) if tree else str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["PYTHONSAFEPATH"] = "1"  # the working directory must not shadow the tree under test
    # This file is loaded by its path: the other tree may hold a lab package of its own, without it.
    code = ("import importlib.util, json, sys; from pathlib import Path; "
            "spec = importlib.util.spec_from_file_location('window_host', sys.argv[4]); "
            "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
            "print(json.dumps(module.time_stages(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()), "
            "int(sys.argv[3]))))")
    done = subprocess.run([sys.executable, "-c", code, str(export_dir), str(searches_file), str(passes), __file__],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the {'other' if tree else 'current'} build failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(export_dir: Path, against: Path, replay: Path, count: int, passes: int, rounds: int) -> dict:
    """Median ms a search per stage of each build over `rounds` alternating rounds, and the ratios."""
    sides: dict[str, list[dict]] = {"current": [], "against": []}
    with tempfile.TemporaryDirectory() as scratch:
        searches_file = Path(scratch, "searches.json")
        searches_file.write_text(json.dumps(replay_searches(replay, count)))
        for r in range(rounds):
            for name in (("current", "against") if r % 2 == 0 else ("against", "current")):
                sides[name].append(one_side(None if name == "current" else against, export_dir, searches_file, passes))
    digests = {run["sha256"] for runs in sides.values() for run in runs}
    if len(digests) != 1:
        raise SystemExit("the two builds padded different batches or wrote different pages from the same "
                         "searches: the comparison would time different work; check both builds and the export")
    medians = {name: {stage: round(statistics.median(run[stage] for run in runs), 4) for stage in STAGES}
               for name, runs in sides.items()}
    return {"searches": count, "passes": passes, "rounds": rounds, "sha256": digests.pop(), "ms_per_search": medians,
            "speedup_over_against": {stage: round(medians["against"][stage] / medians["current"][stage], 3)
                                     for stage in STAGES if medians["current"][stage] > 0}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True, help="an `es-rerank export` directory")
    parser.add_argument("--against-tree", type=Path, required=True,
                        help="a folder holding another build's es_rerank package (git archive REV es_rerank)")
    parser.add_argument("--replay", type=Path, default=DEFAULT_REPLAY)
    parser.add_argument("--searches", type=int, default=150)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if not (args.against_tree / "es_rerank").is_dir():
        parser.error(f"{args.against_tree} has no es_rerank folder: git archive REV es_rerank | tar -x -C {args.against_tree}")
    figures = compare(args.export, args.against_tree, args.replay, args.searches, args.passes, args.rounds)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
