import base64
import json
from html.parser import HTMLParser

import pytest

from es_rerank.evaluation.report import build_report, render_table
from es_rerank.evaluation.report_html import biggest_changes, render_html
from es_rerank.types import Hit

QRELS = {f"q{i}": {f"rel{i}": 1} for i in range(12)}


def ranked(position_of_relevant):
    """A run where query i's relevant doc sits at the given 1-based position (0: missing)."""
    run = {}
    for i, position in enumerate(position_of_relevant):
        ids = [f"n{i}-{k}" for k in range(5)]
        if position:
            ids.insert(position - 1, f"rel{i}")
        run[f"q{i}"] = ids
    return run


BM25 = ranked([2] * 12)
BETTER = ranked([1] * 10 + [2, 2])
WORSE = ranked([3] * 12)


def test_better_variant_has_positive_significant_deltas_and_no_harm():
    report = build_report({"bm25": BM25, "rerank": BETTER}, QRELS)
    entry = report["comparisons"][0]["metrics"]["MRR@10"]
    assert entry["delta"] == pytest.approx(10 * 0.5 / 12)
    assert (entry["wins"], entry["ties"], entry["losses"]) == (10, 2, 0)
    assert entry["significant"] and entry["p"] < 0.01 and not entry["harm"]
    assert report["comparisons"][0]["harm"] is False
    assert report["sides"][0]["metrics"]["MRR@10"]["mean"] == pytest.approx(0.5)
    json.dumps(report)  # the report is plain JSON data


def test_worse_variant_is_flagged_as_harm_per_metric_and_overall():
    report = build_report({"bm25": BM25, "rerank": BETTER, "slow": WORSE}, QRELS)
    worse = report["comparisons"][1]
    assert worse["variant"] == "slow" and worse["harm"] and worse["significant_harm"]
    assert worse["metrics"]["nDCG@10"]["harm"] and worse["metrics"]["MRR@10"]["harm"]
    assert not worse["metrics"]["Recall@100"]["harm"]  # same documents, just lower: recall is equal
    # two variants: p-values are Holm-adjusted and never below the raw ones
    for comparison in report["comparisons"]:
        entry = comparison["metrics"]["nDCG@10"]
        assert entry["p_holm"] >= entry["p"]
    table = render_table(report)
    assert "slow vs bm25   ** HARM" in table and "Holm-adjusted" in table


def test_table_shows_counts_of_left_out_queries():
    report = build_report({"bm25": BM25, "rerank": BETTER}, QRELS)
    report["queries"].update(skipped_no_judgments=809, skipped_no_relevant=0)
    first = render_table(report).splitlines()[0]
    assert "12 judged queries evaluated (809 skipped no judgments)" in first


def test_biggest_changes_orders_by_delta():
    report = build_report({"bm25": BM25, "rerank": ranked([1, 3, 2, 2, 4, 1, 2, 2, 2, 2, 2, 2])}, QRELS)
    wins, losses = biggest_changes(report, "rerank", "MRR@10", 5)
    assert wins == ["q5", "q0"] and losses == ["q4", "q1"]


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs).get("src", ""))


def test_html_is_self_contained_with_png_images_and_escaped_text():
    report = build_report({"bm25": BM25, "rerank": BETTER}, QRELS)
    queries = {q: f"<script>alert('{q}')</script>" for q in QRELS}
    hits = {"bm25": {q: [Hit(d, 1.0, {"title": f"Title & {d}"}) for d in ids] for q, ids in BM25.items()},
            "rerank": {q: [Hit(d, 1.0, {"title": f"Title & {d}"}) for d in ids] for q, ids in BETTER.items()}}
    page = render_html(report, queries, QRELS, hits)
    parser = _Images()
    parser.feed(page)
    assert len(parser.sources) == 3
    for src in parser.sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(b"\x89PNG\r\n\x1a\n")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Title &amp; rel" in page and "http://" not in page and "https://" not in page
