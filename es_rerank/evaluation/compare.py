"""The offline A/B from judged queries to files: run every side, build the report, write the outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from es_rerank.evaluation.offline import JudgedQueries, OfflineSettings, Progress, Side, SideRun, run_side
from es_rerank.evaluation.report import add_context, build_report
from es_rerank.evaluation.report_html import render_html
from es_rerank.data.trec import save_run
from es_rerank.errors import ConfigError
from es_rerank.engine.client import redact


@dataclass
class Comparison:
    """A finished comparison: the report (JSON-ready) and what each side returned."""

    report: dict
    runs: list[SideRun]
    judged: JudgedQueries
    settings: OfflineSettings


def compare_sides(sides: list[Side], judged: JudgedQueries, settings: OfflineSettings, alpha: float = 0.05,
                  seed: int = 0, progress: Progress | None = None) -> Comparison:
    """Search every judged query on every side (the first side is the baseline) and compare them."""
    names = [side.name for side in sides]
    if len(sides) < 2:
        raise ConfigError(f"a comparison needs a baseline and at least one variant, got {names}",
                          hint="pass --proxy URL, --model EXPORT_DIR or --variants FILE")
    if len(set(names)) != len(names):
        raise ConfigError(f"side names must be unique, got {names}", hint="rename the duplicate variant")
    if not judged.queries:
        raise ConfigError("no judged query to evaluate: "
                          + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in judged.counts().items()),
                          hint="check that --queries and --qrels belong to the same collection and split")
    runs = [run_side(side, judged, settings, progress) for side in sides]
    report = build_report({run.side.name: run.ranked_ids() for run in runs}, judged.qrels, alpha=alpha, seed=seed)
    details = {run.side.name: {"url": redact(run.side.base_url), "rerank": run.side.rerank.as_ext().get("rerank"),
                               "headers": sorted(name for name, _ in run.side.headers),
                               "latency_ms": run.latency_summary(), "fallbacks": run.fallbacks,
                               "outcomes": dict(run.outcomes), "duplicate_hits": run.duplicate_hits} for run in runs}
    add_context(report, index=settings.index, depth=settings.depth, query_counts=judged.counts(),
                side_details=details)
    return Comparison(report, runs, judged, settings)


def write_outputs(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """Write `report.json`, `report.html` and `runs/<side>.trec`; return their paths by kind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(comparison.report, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    hits = {run.side.name: run.hits for run in comparison.runs}
    page = render_html(comparison.report, comparison.judged.queries, comparison.judged.qrels, hits,
                       title_field=comparison.settings.title_field)
    paths["html"].write_text(page, encoding="utf-8")
    for run in comparison.runs:
        paths[f"run:{run.side.name}"] = save_run(out_dir / "runs" / f"{run.side.name}.trec", run.ranked_scores(),
                                                 tag=run.side.name)
    return paths
