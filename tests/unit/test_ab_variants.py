import json

import pytest

from es_rerank.evaluation.variants import RerankKnobs, load_variants, parse_variants
from es_rerank.errors import ConfigError


def test_yaml_file_with_knobs_headers_and_relative_model(tmp_path):
    (tmp_path / "models" / "small").mkdir(parents=True)
    path = tmp_path / "variants.yaml"
    path.write_text(
        "- name: w50\n  proxy: http://127.0.0.1:8080\n  rerank: {window: 50, fields: 'title, text'}\n"
        "- name: plain\n  proxy: http://127.0.0.1:8080\n  headers: {X-Rerank: 'off'}\n"
        "- name: small\n  model: models/small\n")
    w50, plain, small = load_variants(path)
    assert w50.rerank.as_ext() == {"rerank": {"window": 50, "fields": ["title", "text"]}}
    assert plain.headers == (("X-Rerank", "off"),) and plain.rerank.as_ext() == {}
    assert small.model == tmp_path / "models" / "small"


def test_json_file(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps([{"name": "a", "proxy": "http://p", "rerank": {"enabled": False}}]))
    assert load_variants(path)[0].rerank.enabled is False


@pytest.mark.parametrize("entries, message", [
    ({"name": "a"}, "non-empty list"),
    ([{"name": "a"}], "exactly one of proxy"),
    ([{"name": "a", "proxy": "http://p", "model": "m"}], "exactly one of proxy"),
    ([{"name": "bm25", "proxy": "http://p"}], "reserved"),
    ([{"name": "a b", "proxy": "http://p"}], "not usable in file names"),
    ([{"name": "a", "proxy": "http://p", "rerank": {"window": 0}}], "positive integer"),
    ([{"name": "a", "proxy": "http://p", "rerank": {"depth": 5}}], "unknown rerank knob"),
    ([{"name": "a", "proxy": "http://p", "extra": 1}], "unknown key"),
    ([{"name": "a", "proxy": "http://p"}, {"name": "a", "proxy": "http://q"}], "appears twice"),
])
def test_bad_entries_say_what_is_wrong(entries, message):
    with pytest.raises(ConfigError, match=message):
        parse_variants(entries)


def test_bad_yaml_is_reported_with_the_file_name(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text("- name: [unclosed\n")
    with pytest.raises(ConfigError, match="v.yaml is not valid YAML"):
        load_variants(path)


def test_knobs_reject_wrong_types():
    with pytest.raises(ConfigError, match="enabled"):
        RerankKnobs(enabled="yes")
    with pytest.raises(ConfigError, match="window"):
        RerankKnobs(window=True)
    assert RerankKnobs().as_ext() == {}
