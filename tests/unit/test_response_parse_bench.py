"""lab.bench.response_parse: the ratio it reports, and its refusal to time two parses that disagree."""

import json

import pytest

from es_rerank.proxy.rawjson import parse_keeping_raw
from lab.bench.response_parse import compare, load_parse, same_parse

BODIES = [json.dumps({"took": 1, "hits": {"hits": [{"_id": str(k), "_score": 1.0 / (k + 1),
                                                     "_source": {"title": f"t{k}", "text": "x " * 50}}
                                                    for k in range(20)]}}).encode() for _ in range(3)]


def test_compare_times_each_side_and_reports_ratios_against_json_loads_and_the_other_version(tmp_path):
    import es_rerank.proxy.rawjson as rawjson

    copy = tmp_path / "copy.py"  # the same parse from another file: what --against loads
    copy.write_text(open(rawjson.__file__).read())
    against = load_parse(copy)
    same_parse(parse_keeping_raw, against, BODIES)
    figures = compare(BODIES, rounds=2, against=against)
    assert set(figures["ms_per_response"]) == {"keeping_raw", "json_loads", "against"}
    assert all(ms > 0 for ms in figures["ms_per_response"].values())
    assert figures["keeping_raw_over_json_loads"] > 0 and figures["speedup_over_against"] > 0
    assert figures["responses"] == 3


def test_two_versions_that_parse_differently_are_not_timed():
    def drops_the_hits(body):
        value, raw = parse_keeping_raw(body)
        return {**value, "hits": {"hits": []}}, raw

    with pytest.raises(SystemExit, match="parse a response differently"):
        same_parse(parse_keeping_raw, drops_the_hits, BODIES)
