"""The offline A/B report as plain data (the JSON output) and as a terminal table.

The first side is the baseline (BM25 straight from OpenSearch); every other side is compared
with it on every metric. A comparison carries `harm: true` when the variant is below the
baseline: per metric, and for the variant as a whole on nDCG@10.

Example:
    >>> qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    >>> report = build_report({"bm25": {"q1": ["x", "a"], "q2": ["b"]},
    ...                        "rerank": {"q1": ["a", "x"], "q2": ["b"]}}, qrels, seed=0)
    >>> report["comparisons"][0]["metrics"]["MRR@10"]["delta"], report["comparisons"][0]["harm"]
    (0.25, False)
"""

from __future__ import annotations

import datetime as dt
from typing import Mapping, Sequence

from es_rerank.evaluation.metrics import MEASURES, PRIMARY, per_query_metrics
from es_rerank.evaluation.protocol import RERANK_SWITCH_HEADER
from es_rerank.evaluation.significance import TIE_EPSILON, holm, mean_ci, paired_test

SCHEMA = "es-rerank/ab-offline/1"


def build_report(runs: Mapping[str, Mapping[str, Sequence[str]]], qrels: Mapping[str, Mapping[str, int]],
                 alpha: float = 0.05, seed: int = 0, metrics: Sequence[str] = tuple(MEASURES)) -> dict:
    """Metrics, confidence intervals and paired tests for `runs` (`{side: {query_id: [doc ids]}}`).

    The first side in `runs` is the baseline. Extra context (index, URLs, skipped counts,
    latency) is added by the caller with `describe_sides`/`add_context`.
    """
    if len(runs) < 2:
        raise ValueError(f"a comparison needs at least two sides, got {list(runs)}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    names = list(runs)
    baseline = names[0]
    query_ids = list(qrels)
    per_query = {side: per_query_metrics(qrels, runs[side], metrics) for side in names}
    sides = []
    for side in names:
        summaries = {}
        for metric in metrics:
            values = [per_query[side][metric][q] for q in query_ids]
            ci = mean_ci(values, seed=seed)
            summaries[metric] = {"mean": _mean(values), "ci": ci.as_list()}
        sides.append({"name": side, "metrics": summaries})
    comparisons = [_compare(baseline, side, per_query, query_ids, metrics, alpha, seed) for side in names[1:]]
    _adjust_for_several_variants(comparisons, metrics, alpha)
    return {
        "schema": SCHEMA,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "baseline": baseline,
        "metrics_order": list(metrics),
        "primary_metric": PRIMARY if PRIMARY in metrics else metrics[0],
        "alpha": alpha,
        "tests": {"p": "paired randomization (sign-flip), 10000 resamples, two-sided",
                  "also": ["paired t-test", "Wilcoxon signed-rank"],
                  "ci": "95% percentile bootstrap, 10000 resamples", "seed": seed,
                  "multiple_variants": "Holm-adjusted p (p_holm) when more than one variant"},
        "queries": {"evaluated": len(query_ids)},
        "sides": sides,
        "comparisons": comparisons,
        "per_query": {metric: {side: per_query[side][metric] for side in names} for metric in metrics},
    }


def _compare(baseline: str, side: str, per_query: dict, query_ids: list[str], metrics: Sequence[str],
             alpha: float, seed: int) -> dict:
    results = {}
    for metric in metrics:
        test = paired_test([per_query[baseline][metric][q] for q in query_ids],
                           [per_query[side][metric][q] for q in query_ids], seed=seed)
        results[metric] = {
            "baseline_mean": test.baseline_mean, "mean": test.treatment_mean,
            "delta": test.delta, "delta_ci": test.delta_ci.as_list(),
            "p": test.p_randomization, "p_ttest": test.p_ttest, "p_wilcoxon": test.p_wilcoxon,
            "p_holm": None,
            "significant": test.p_randomization is not None and test.p_randomization < alpha,
            "wins": test.wins, "ties": test.ties, "losses": test.losses,
            "harm": test.delta < -TIE_EPSILON,
        }
    primary = PRIMARY if PRIMARY in metrics else metrics[0]
    return {"variant": side, "baseline": baseline, "metrics": results,
            "harm": results[primary]["harm"],
            "significant_harm": results[primary]["harm"] and results[primary]["significant"]}


def _adjust_for_several_variants(comparisons: list[dict], metrics: Sequence[str], alpha: float) -> None:
    if len(comparisons) < 2:
        return
    for metric in metrics:
        adjusted = holm([c["metrics"][metric]["p"] for c in comparisons])
        for comparison, p in zip(comparisons, adjusted):
            entry = comparison["metrics"][metric]
            entry["p_holm"] = p
            entry["significant"] = p is not None and p < alpha
        for comparison in comparisons:
            primary = comparison["metrics"].get(PRIMARY)
            if primary is not None:
                comparison["significant_harm"] = primary["harm"] and primary["significant"]


def add_context(report: dict, *, index: str, depth: int, query_counts: Mapping[str, int],
                side_details: Mapping[str, dict]) -> dict:
    """Attach where and how the runs were made: index, depth, skipped queries, per-side URL etc.

    Example:
        >>> r = add_context({"sides": [{"name": "bm25"}], "queries": {}}, index="i", depth=100,
        ...                 query_counts={"evaluated": 3}, side_details={"bm25": {"url": "http://os"}})
        >>> r["sides"][0]["url"], r["queries"]["evaluated"]
        ('http://os', 3)
    """
    report["index"] = index
    report["depth"] = depth
    report["queries"] = {**report.get("queries", {}), **query_counts}
    for side in report["sides"]:
        side.update(side_details.get(side["name"], {}))
    return report


def render_table(report: dict) -> str:
    """The report as aligned plain text for the terminal.

    Example:
        >>> report = build_report({"bm25": {"q": ["a"]}, "rerank": {"q": ["a"]}}, {"q": {"a": 1}})
        >>> print(render_table(report).splitlines()[3])
        nDCG@10         1.0000 [1.000,1.000]   1.0000 [1.000,1.000]
    """
    metrics = report["metrics_order"]
    names = [side["name"] for side in report["sides"]]
    counts = report["queries"]
    skipped = ", ".join(f"{value} {key.replace('_', ' ')}" for key, value in counts.items()
                        if key != "evaluated" and value)
    lines = [f"A/B on index {report.get('index', '?')}: {counts.get('evaluated', 0)} judged queries evaluated"
             + (f" ({skipped})" if skipped else ""), ""]
    width = max(22, *(len(n) + 2 for n in names))
    lines.append(f"{'metric':<14}  " + "".join(f"{n:<{width}} " for n in names).rstrip())
    for metric in metrics:
        cells = []
        for side in report["sides"]:
            entry = side["metrics"][metric]
            cells.append(f"{entry['mean']:.4f} [{entry['ci'][0]:.3f},{entry['ci'][1]:.3f}]"[:width].ljust(width))
        lines.append(f"{metric:<14}  " + " ".join(cells).rstrip())
    for comparison in report["comparisons"]:
        lines += ["", f"{comparison['variant']} vs {comparison['baseline']}"
                  + ("   ** HARM: below the baseline on nDCG@10 **" if comparison["harm"] else ""),
                  f"{'metric':<14}  {'delta':>8}  {'95% CI':<17}  {'p':>7}  {'W/T/L':<13} flags"]
        for metric in metrics:
            entry = comparison["metrics"][metric]
            p = entry["p_holm"] if entry["p_holm"] is not None else entry["p"]
            flags = " ".join(flag for flag, on in (("significant", entry["significant"]), ("harm", entry["harm"])) if on)
            ci = f"[{entry['delta_ci'][0]:+.3f},{entry['delta_ci'][1]:+.3f}]"
            wtl = f"{entry['wins']}/{entry['ties']}/{entry['losses']}"
            lines.append(f"{metric:<14}  {entry['delta']:>+8.4f}  {ci:<17}  {_p(p):>7}  {wtl:<13} {flags}".rstrip())
    lines.append("")
    lines.append("p: paired randomization test" + (", Holm-adjusted over variants" if len(report["comparisons"]) > 1
                                                   else "") + "; CI: 95% bootstrap; W/T/L: queries better/equal/worse")
    for side in report["sides"]:
        if side.get("latency_ms"):
            lat = side["latency_ms"]
            extra = f", {side['fallbacks']} BM25 fallbacks" if side.get("fallbacks") else ""
            lines.append(f"latency {side['name']}: p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms{extra}")
    lines += never_reranked_warnings(report)
    return "\n".join(lines)


def never_reranked_warnings(report: dict) -> list[str]:
    """A warning per variant that the proxy never reranked (misconfigured index rule, wrong URL),
    unless the variant switches reranking off on purpose.

    Example:
        >>> never_reranked_warnings({"index": "i", "baseline": "bm25", "sides": [
        ...     {"name": "bm25", "outcomes": {"none": 3}}, {"name": "rerank", "outcomes": {"none": 3}}]})[0][:42]
        'warning: rerank was never reranked: 3 none'
    """
    warnings = []
    for side in report["sides"]:
        outcomes = side.get("outcomes")
        switched_off = RERANK_SWITCH_HEADER.lower() in (name.lower() for name in side.get("headers", ()))
        if side["name"] == report["baseline"] or outcomes is None or outcomes.get("reranked") or switched_off:
            continue
        seen = ", ".join(f"{count} {name}" for name, count in sorted(outcomes.items()))
        warnings.append(f"warning: {side['name']} was never reranked: {seen} (X-Rerank answers; 'none' means the "
                        f"response did not come from a reranking proxy or the proxy passed it through). Is the proxy "
                        f"configured to rerank index {report.get('index', '?')}?")
    return warnings


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0
