"""Proxy settings: per-index rules from YAML/TOML files and options, validated with helpful errors."""

import pytest

from es_rerank.proxy.settings import (IndexRule, LoadSettings, ProxySettings, UpstreamSettings, read_config_file,
                              rules_from_mapping)
from es_rerank.errors import ConfigError

DEFAULTS = IndexRule("*", fields=("title", "text"), window=100, deadline_ms=1000)


def test_yaml_and_toml_give_the_same_rules(tmp_path):
    (tmp_path / "p.yaml").write_text("indices:\n  scifact:\n    fields: [title, text]\n    window: 50\n"
                                     "  'logs-*':\n    fields: message\n    deadline_ms: 200\n")
    (tmp_path / "p.toml").write_text('[indices.scifact]\nfields = ["title", "text"]\nwindow = 50\n'
                                     '[indices."logs-*"]\nfields = "message"\ndeadline_ms = 200\n')
    from_yaml = rules_from_mapping(read_config_file(tmp_path / "p.yaml"), DEFAULTS)
    from_toml = rules_from_mapping(read_config_file(tmp_path / "p.toml"), DEFAULTS)
    assert from_yaml == from_toml
    assert from_yaml[0] == IndexRule("scifact", ("title", "text"), 50, 1000)
    assert from_yaml[1] == IndexRule("logs-*", ("message",), 100, 200)


@pytest.mark.parametrize("text, message", [
    ("indices: [a, b]", "`indices` must map index patterns to settings"),
    ("indices:\n  a: {window: -1}", "rerank window for 'a' must be a positive integer, got -1"),
    ("indices:\n  a: {fields: []}", "text fields for 'a' must be non-empty names"),
    ("listen: 1", "config has unknown top-level key(s) ['listen']"),
    ("indices: {a: [", "is not valid YAML"),
])
def test_bad_files_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        rules_from_mapping(read_config_file(path), DEFAULTS)
    assert message in str(caught.value)


def test_missing_or_unknown_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "none.yaml")
    (tmp_path / "p.ini").write_text("x")
    with pytest.raises(ConfigError, match="use .yaml, .yml or .toml"):
        read_config_file(tmp_path / "p.ini")


def test_upstream_url_is_validated_and_never_carries_credentials():
    with pytest.raises(ConfigError, match="must not carry credentials"):
        UpstreamSettings("https://admin:secret@host:9200")
    with pytest.raises(ConfigError, match="is not an http"):
        UpstreamSettings("ftp://host")
    assert UpstreamSettings("http://h:9200/prefix/").base == "http://h:9200/prefix"


def test_load_and_window_settings_are_validated():
    with pytest.raises(ConfigError, match="overload action must be one of"):
        LoadSettings(overload="drop")
    with pytest.raises(ConfigError, match="shed status must be 429 or 503"):
        LoadSettings(shed_status=500)
    with pytest.raises(ConfigError, match="exceeds the max window"):
        ProxySettings(UpstreamSettings("http://h:9200"), rules=(IndexRule("a", window=2000),))


def test_first_matching_rule_wins_and_all_targets_must_agree():
    settings = ProxySettings(UpstreamSettings("http://h:9200"),
                             rules=(IndexRule("docs-2024"), IndexRule("docs-*", fields=("body",))))
    assert settings.rule_for(["docs-2024"]).fields == ("title", "text")
    assert settings.rule_for(["docs-1", "docs-2"]).fields == ("body",)
    assert settings.rule_for(["docs-2024", "docs-1"]) is None
