"""Offline A/B against the real node and the real SciFact data.

Until a proxy runs in these tests, the "reranked" side is pointed at OpenSearch itself: both
sides must then agree exactly, which checks the whole pipeline end to end.
"""

import base64
import json
import shutil
import struct
import subprocess
from html.parser import HTMLParser

import pytest

from es_rerank.evaluation.compare import compare_sides, write_outputs
from es_rerank.evaluation.offline import OfflineSettings, Side, select_judged
from es_rerank.data.trec import validate_run
from es_rerank.evaluation.variants import RerankKnobs
from es_rerank.data.beir import read_qrels, read_queries
from es_rerank.errors import OpenSearchUnavailable
from es_rerank.engine.bm25_query import bm25_body
from tests.conftest import run_cli

SUBSET = 25


@pytest.fixture(scope="module")
def judged(data_dir):
    return select_judged(read_queries(data_dir / "scifact"), read_qrels(data_dir / "scifact", "test"), limit=SUBSET)


@pytest.fixture(scope="module")
def comparison(scifact_index, opensearch_url, judged):
    sides = [Side("bm25", opensearch_url), Side("rerank", opensearch_url)]
    return compare_sides(sides, judged, OfflineSettings(index=scifact_index, concurrency=2))


@pytest.fixture(scope="module")
def outputs(comparison, tmp_path_factory):
    return write_outputs(comparison, tmp_path_factory.mktemp("ab-report"))


def test_subset_counts_what_was_left_out(judged, data_dir):
    queries, qrels = read_queries(data_dir / "scifact"), read_qrels(data_dir / "scifact", "test")
    assert len(judged.queries) == SUBSET
    assert judged.skipped_no_judgments == len(set(queries) - set(qrels)) > 0
    assert judged.left_out_by_limit == len(qrels) - SUBSET


def test_bm25_side_equals_metrics_from_a_direct_opensearch_py_search(comparison, os_client, scifact_index, judged):
    import pytrec_eval

    direct = {}
    for query_id, text in judged.queries.items():
        response = os_client.search(index=scifact_index, body=bm25_body(text, 100, source=False))
        direct[query_id] = [hit["_id"] for hit in response["hits"]["hits"]]
    assert comparison.runs[0].ranked_ids() == direct

    # pytrec_eval called directly, on the served order, as an independent computation
    def as_run(depth):
        return {q: {d: float(1000 - r) for r, d in enumerate(ids[:depth])} for q, ids in direct.items()}

    full = pytrec_eval.RelevanceEvaluator(judged.qrels, {"ndcg_cut.10", "recall.100", "map"}).evaluate(as_run(100))
    top10 = pytrec_eval.RelevanceEvaluator(judged.qrels, {"recip_rank"}).evaluate(as_run(10))
    per_query = comparison.report["per_query"]
    for query_id in judged.queries:
        assert per_query["nDCG@10"]["bm25"][query_id] == pytest.approx(full[query_id]["ndcg_cut_10"])
        assert per_query["Recall@100"]["bm25"][query_id] == pytest.approx(full[query_id]["recall_100"])
        assert per_query["MAP"]["bm25"][query_id] == pytest.approx(full[query_id]["map"])
        assert per_query["MRR@10"]["bm25"][query_id] == pytest.approx(top10[query_id]["recip_rank"])
    bm25 = comparison.report["sides"][0]["metrics"]
    expected_ndcg = sum(full[q]["ndcg_cut_10"] for q in judged.queries) / SUBSET
    assert bm25["nDCG@10"]["mean"] == pytest.approx(expected_ndcg)
    assert 0.3 < expected_ndcg < 1.0  # BM25 on SciFact is far from random and from perfect


def test_a_proxy_url_pointing_at_opensearch_gives_identical_sides(comparison):
    report = comparison.report
    assert report["per_query"]["nDCG@10"]["bm25"] == report["per_query"]["nDCG@10"]["rerank"]
    for metric, entry in report["comparisons"][0]["metrics"].items():
        assert entry["delta"] == 0 and entry["p"] == 1.0, metric
        assert (entry["wins"], entry["ties"], entry["losses"]) == (0, SUBSET, 0)
        assert entry["harm"] is False
    assert report["comparisons"][0]["harm"] is False
    assert report["queries"]["evaluated"] == SUBSET and report["index"] == "test-scifact"
    assert all(side["latency_ms"]["p50"] > 0 and side["fallbacks"] == 0 for side in report["sides"])


def test_run_files_are_valid_trec_and_match_the_hits(comparison, outputs):
    for run in comparison.runs:
        lines = outputs[f"run:{run.side.name}"].read_text().splitlines()
        assert validate_run(lines) == []
        assert len(lines) == sum(len(hits) for hits in run.hits.values())
        by_query = {}
        for line in lines:
            query_id, _, doc_id, rank, score, tag = line.split()
            assert tag == run.side.name
            by_query.setdefault(query_id, []).append(doc_id)
        assert by_query == {q: ids for q, ids in run.ranked_ids().items() if ids}


def test_report_json_on_disk_is_the_report(comparison, outputs):
    on_disk = json.loads(outputs["json"].read_text())
    assert on_disk["comparisons"] == json.loads(json.dumps(comparison.report["comparisons"]))
    assert on_disk["schema"] == "es-rerank/ab-offline/1"


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))


def _png_size(src: str) -> tuple[int, int]:
    assert src.startswith("data:image/png;base64,"), src[:40]
    data = base64.b64decode(src.split(",", 1)[1], validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))),
                None)


def _parsed_images(page: str) -> list[dict]:
    parser = _Images()
    parser.feed(page)
    return parser.images


def test_html_report_embeds_its_images_as_png(outputs):
    """The fallback check without a browser: every <img> carries a decodable base64 PNG."""
    page = outputs["html"].read_text()
    assert "http://" not in page.split("<h2>Sides</h2>")[0]  # no external assets before the sides table
    images = _parsed_images(page)
    assert len(images) == 3
    for image in images:
        width, height = _png_size(image["src"])
        assert width > 100 and height > 100 and image.get("alt")


def test_html_report_renders_in_headless_chromium(outputs, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); the parsed-HTML test still ran")
    page = outputs["html"].read_text()
    images = _parsed_images(page)
    # Let the browser report what it decoded: a load handler writes each image's natural size into the DOM.
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", "<script>addEventListener('load', () => document.body.setAttribute("
                                             "'data-decoded', [...document.images].map(i => i.naturalWidth + 'x' + "
                                             "i.naturalHeight).join(',')));</script></body>"))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(flags + ["--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    decoded = dom.stdout.split('data-decoded="', 1)[1].split('"', 1)[0].split(",")
    expected = [f"{w}x{h}" for w, h in (_png_size(image["src"]) for image in images)]
    assert decoded == expected
    shot = tmp_path / "shot.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1200,2000", outputs["html"].as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000


def test_variants_compare_more_than_two_configurations(scifact_index, opensearch_url, judged):
    small = select_judged(judged.queries, judged.qrels, limit=8)
    sides = [Side("bm25", opensearch_url), Side("a", opensearch_url, headers=(("X-Rerank", "off"),)),
             Side("b", opensearch_url)]
    report = compare_sides(sides, small, OfflineSettings(index=scifact_index)).report
    assert [c["variant"] for c in report["comparisons"]] == ["a", "b"]
    assert all(c["metrics"]["nDCG@10"]["p_holm"] == 1.0 for c in report["comparisons"])


def test_rerank_knobs_sent_to_plain_opensearch_fail_with_a_clear_error(scifact_index, opensearch_url, judged):
    small = select_judged(judged.queries, judged.qrels, limit=2)
    sides = [Side("bm25", opensearch_url), Side("w50", opensearch_url, rerank=RerankKnobs(window=50))]
    with pytest.raises(OpenSearchUnavailable, match="answered HTTP 400") as caught:
        compare_sides(sides, small, OfflineSettings(index=scifact_index))
    assert "proxy" in caught.value.hint


def test_command_line_json_table_progress_and_files(scifact_index, opensearch_url, data_dir, tmp_path):
    scifact = str(data_dir / "scifact")
    common = ["ab", "--queries", scifact, "--qrels", scifact, "--index", scifact_index, "--proxy", opensearch_url,
              "--opensearch", opensearch_url, "--max-queries", "12"]
    as_json = run_cli(*common, "--json", "--out", str(tmp_path / "j"))
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["queries"]["evaluated"] == 12 and report["queries"]["skipped_no_judgments"] > 0
    assert {"report.json", "report.html", "runs"} <= {p.name for p in (tmp_path / "j").iterdir()}
    assert sorted(p.name for p in (tmp_path / "j" / "runs").iterdir()) == ["bm25.trec", "rerank.trec"]

    table = run_cli(*common, "--out", str(tmp_path / "t"), env={"ES_RERANK_NO_PROGRESS": ""})
    assert table.returncode == 0, table.stderr
    assert "A/B on index test-scifact: 12 judged queries evaluated" in table.stdout
    assert "rerank vs bm25" in table.stdout and "report: " in table.stdout
    assert "searching bm25" in table.stderr and "12/12" in table.stderr  # the progress bar


def test_command_line_explains_missing_arguments(tmp_path):
    result = run_cli("ab", "--index", "x", "--proxy", "http://127.0.0.1:1")
    assert result.returncode == 2
    assert "error: missing --queries, --qrels" in result.stderr and "hint:" in result.stderr


def test_command_line_model_dir_without_an_export_says_what_to_do(scifact_index, opensearch_url, data_dir, tmp_path):
    scifact = str(data_dir / "scifact")
    result = run_cli("ab", "--queries", scifact, "--qrels", scifact, "--index", scifact_index,
                     "--opensearch", opensearch_url, "--model", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 1, result.stderr
    assert "error:" in result.stderr and "hint:" in result.stderr and "Traceback" not in result.stderr
