"""A self-contained HTML page for the offline A/B report: no scripts, fonts or files beside it.

Figures are embedded as base64 PNG `data:` URIs, so the single file can be mailed or attached
to a ticket and still shows everything.

Example:
    >>> from es_rerank.evaluation.report import build_report
    >>> report = build_report({"bm25": {"q": ["a"]}, "rerank": {"q": ["a"]}}, {"q": {"a": 1}})
    >>> page = render_html(report, {"q": "a query"}, {"q": {"a": 1}}, {})
    >>> page.startswith("<!DOCTYPE html>"), page.count('<img src="data:image/png;base64,')
    (True, 3)
"""

from __future__ import annotations

import base64
import html
from typing import Mapping, Sequence

from es_rerank.evaluation import plots
from es_rerank.evaluation.report import never_reranked_warnings
from es_rerank.types import Hit

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px}.muted{color:#666}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px 16px;min-width:240px;flex:1}
.card.harm{border-color:#c0392b;background:#fdf2f1}.card .big{font-size:24px;font-weight:600}
.good{color:#1e7b34}.bad{color:#c0392b}.badge{display:inline-block;padding:0 6px;border-radius:4px;font-size:12px}
.badge.harm{background:#c0392b;color:#fff}.badge.sig{background:#1e7b34;color:#fff}
table{border-collapse:collapse;background:#fff;margin:8px 0;width:100%}
th,td{border:1px solid #e2e2e2;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f2f2f2}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
img{max-width:100%;height:auto;background:#fff;border:1px solid #eee}
.example{background:#fff;border:1px solid #ddd;border-radius:8px;padding:8px 12px;margin:10px 0}
.hits{display:grid;grid-template-columns:1fr 1fr;gap:12px}.hits ol{margin:4px 0;padding-left:22px}
li.rel{font-weight:600}li.rel::marker{color:#1e7b34}.grade{color:#1e7b34;font-size:12px}
"""


def render_html(report: dict, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
                hits: Mapping[str, Mapping[str, Sequence[Hit]]], title_field: str = "title",
                examples: int = 5, hits_shown: int = 5) -> str:
    """The whole page. `hits` (`{side: {query_id: [Hit]}}`) supplies titles for the examples."""
    metric = report["primary_metric"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>es-rerank A/B: {_e(report.get('index', ''))}</title><style>{STYLE}</style></head><body><main>",
        f"<h1>Reranking A/B on <code>{_e(report.get('index', '?'))}</code></h1>",
        f'<p class="muted">{_e(_query_sentence(report))} Created {_e(report.get("created", ""))}.</p>',
        "".join(f'<p class="bad"><b>{_e(w)}</b></p>' for w in never_reranked_warnings(report)),
        _summary_cards(report, metric),
        "<h2>Metrics</h2>", _metrics_table(report),
        _img(plots.metric_bars(report), "Bar chart of every metric for every side with 95% confidence intervals"),
        "<h2>Per-query differences</h2>",
        f"<p>Each query's {_e(metric)} under the variant minus under {_e(report['baseline'])}. "
        "Bars right of zero are queries the variant answers better.</p>",
        _img(plots.delta_histogram(report, metric), f"Histogram of per-query {metric} differences"),
        _img(plots.per_query_scatter(report, metric), f"Per-query {metric}: baseline against variant"),
    ]
    for comparison in report["comparisons"]:
        parts.append(_examples(report, comparison, metric, queries, qrels, hits, title_field, examples, hits_shown))
    parts.append(_sides_table(report))
    parts.append(f'<p class="muted">Metrics by ir_measures (trec_eval definitions). {_e(_tests_sentence(report))}</p>')
    parts.append("</main></body></html>")
    return "\n".join(parts)


def biggest_changes(report: dict, variant: str, metric: str, n: int) -> tuple[list[str], list[str]]:
    """Query ids with the largest gains and the largest losses of `variant` over the baseline.

    Example:
        >>> r = {"baseline": "b", "per_query": {"m": {"b": {"1": 0.5, "2": 0.5, "3": 0.5},
        ...                                           "v": {"1": 0.9, "2": 0.5, "3": 0.1}}}}
        >>> biggest_changes(r, "v", "m", 2)
        (['1'], ['3'])
    """
    base = report["per_query"][metric][report["baseline"]]
    other = report["per_query"][metric][variant]
    deltas = sorted(((other[q] - base[q], q) for q in base), key=lambda item: (item[0], item[1]))
    wins = [q for d, q in reversed(deltas) if d > 0][:n]
    losses = [q for d, q in deltas if d < 0][:n]
    return wins, losses


def _summary_cards(report: dict, metric: str) -> str:
    cards = []
    for comparison in report["comparisons"]:
        entry = comparison["metrics"][metric]
        p = entry["p_holm"] if entry["p_holm"] is not None else entry["p"]
        tone = "bad" if comparison["harm"] else "good"
        badges = ""
        if comparison["harm"]:
            badges += ' <span class="badge harm">harm</span>'
        if entry["significant"]:
            badges += f' <span class="badge {"harm" if comparison["harm"] else "sig"}">significant</span>'
        cards.append(
            f'<div class="card{" harm" if comparison["harm"] else ""}">'
            f"<div><b>{_e(comparison['variant'])}</b> vs {_e(comparison['baseline'])}{badges}</div>"
            f'<div class="big {tone}">{entry["delta"]:+.4f} {_e(metric)}</div>'
            f"<div>{entry['baseline_mean']:.4f} → {entry['mean']:.4f}; 95% CI of the difference "
            f"[{entry['delta_ci'][0]:+.4f}, {entry['delta_ci'][1]:+.4f}]; p = {_p(p)}</div>"
            f"<div>{entry['wins']} queries better, {entry['ties']} equal, {entry['losses']} worse</div></div>")
    return '<div class="cards">' + "".join(cards) + "</div>"


def _metrics_table(report: dict) -> str:
    names = [side["name"] for side in report["sides"]]
    head = "<tr><th>metric</th>" + "".join(f"<th>{_e(n)}</th>" for n in names)
    head += "".join(f"<th>Δ {_e(c['variant'])}</th><th>p</th><th>W/T/L</th>" for c in report["comparisons"]) + "</tr>"
    rows = []
    for metric in report["metrics_order"]:
        cells = [f"<td>{_e(metric)}</td>"]
        for side in report["sides"]:
            entry = side["metrics"][metric]
            cells.append(f'<td class="num">{entry["mean"]:.4f} <span class="muted">'
                         f'[{entry["ci"][0]:.3f}, {entry["ci"][1]:.3f}]</span></td>')
        for comparison in report["comparisons"]:
            entry = comparison["metrics"][metric]
            p = entry["p_holm"] if entry["p_holm"] is not None else entry["p"]
            tone = "bad" if entry["harm"] else ("good" if entry["delta"] > 0 else "")
            mark = " *" if entry["significant"] else ""
            cells.append(f'<td class="num {tone}">{entry["delta"]:+.4f}{mark}</td><td class="num">{_p(p)}</td>'
                         f'<td class="num">{entry["wins"]}/{entry["ties"]}/{entry["losses"]}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<table>{head}{''.join(rows)}</table><p class='muted'>Mean over queries with 95% bootstrap interval. "
            f"* significant at α = {report['alpha']}. W/T/L: queries better / equal / worse than "
            f"{_e(report['baseline'])}.</p>")


def _examples(report, comparison, metric, queries, qrels, hits, title_field, n, hits_shown) -> str:
    variant, baseline = comparison["variant"], report["baseline"]
    wins, losses = biggest_changes(report, variant, metric, n)
    parts = [f"<h2>{_e(variant)}: biggest wins and losses on {_e(metric)}</h2>"]
    for heading, query_ids in (("Biggest wins", wins), ("Biggest losses", losses)):
        parts.append(f"<h3>{heading}</h3>")
        if not query_ids:
            parts.append('<p class="muted">none</p>')
        for query_id in query_ids:
            base_value = report["per_query"][metric][baseline][query_id]
            value = report["per_query"][metric][variant][query_id]
            parts.append(
                f'<div class="example"><b>query {_e(query_id)}</b>: {_e(queries.get(query_id, ""))}'
                f' <span class="muted">({_e(metric)} {base_value:.3f} → {value:.3f}, '
                f"{len([d for d, g in qrels.get(query_id, {}).items() if g > 0])} relevant)</span>"
                f'<div class="hits">'
                f"{_hit_list(baseline, hits.get(baseline, {}).get(query_id, []), qrels.get(query_id, {}), title_field, hits_shown)}"
                f"{_hit_list(variant, hits.get(variant, {}).get(query_id, []), qrels.get(query_id, {}), title_field, hits_shown)}"
                "</div></div>")
    return "".join(parts)


def _hit_list(side: str, side_hits: Sequence[Hit], judged: Mapping[str, int], title_field: str, limit: int) -> str:
    items = []
    for hit in side_hits[:limit]:
        grade = judged.get(hit.doc_id, 0)
        title = str(hit.source.get(title_field) or "") if title_field else ""
        label = f"{_e(title[:140])} <span class='muted'>({_e(hit.doc_id)})</span>" if title else _e(hit.doc_id)
        mark = f" <span class='grade'>relevant ({grade})</span>" if grade > 0 else ""
        items.append(f'<li class="{"rel" if grade > 0 else ""}">{label}{mark}</li>')
    body = "".join(items) or "<li class='muted'>no hits</li>"
    return f"<div><b>{_e(side)}</b> top {limit}<ol>{body}</ol></div>"


def _sides_table(report: dict) -> str:
    rows = []
    for side in report["sides"]:
        latency = side.get("latency_ms") or {}
        knobs = side.get("rerank") or {}
        rows.append(f"<tr><td>{_e(side['name'])}</td><td>{_e(side.get('url', ''))}</td>"
                    f"<td>{_e(', '.join(f'{k}={v}' for k, v in knobs.items()) or '—')}</td>"
                    f'<td class="num">{latency.get("p50", 0):.1f}</td><td class="num">{latency.get("p95", 0):.1f}</td>'
                    f'<td class="num">{side.get("fallbacks", 0)}</td>'
                    f"<td>{_e(', '.join(f'{n} {k}' for k, n in sorted((side.get('outcomes') or {}).items())))}</td></tr>")
    return ("<h2>Sides</h2><table><tr><th>side</th><th>URL</th><th>rerank knobs</th><th>p50 ms</th><th>p95 ms</th>"
            f"<th>BM25 fallbacks</th><th>proxy answers (X-Rerank)</th></tr>{''.join(rows)}</table>")


def _query_sentence(report: dict) -> str:
    counts = report.get("queries", {})
    sentence = f"{counts.get('evaluated', 0)} judged queries evaluated"
    skipped = [f"{v} {k.replace('_', ' ')}" for k, v in counts.items() if k != "evaluated" and v]
    if skipped:
        sentence += f"; left out: {', '.join(skipped)}"
    if report.get("depth"):
        sentence += f"; depth {report['depth']}"
    return sentence + "."


def _tests_sentence(report: dict) -> str:
    tests = report.get("tests", {})
    return (f"p: {tests.get('p', '')}; also {', '.join(tests.get('also', []))} in the JSON. "
            f"Intervals: {tests.get('ci', '')}, seed {tests.get('seed', 0)}.")


def _img(png: bytes, alt: str) -> str:
    return f'<p><img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" alt="{_e(alt)}"></p>'


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "&lt;0.0001" if p < 1e-4 else f"{p:.4f}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
