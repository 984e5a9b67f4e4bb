"""`es-rerank serve` options added with the online A/B and the HTTPS upstream: what they build and
how wrong values are refused (before any model is loaded or port opened)."""

import logging
import ssl

import pytest

from es_rerank.proxy.settings import UpstreamSettings
from es_rerank.errors import ConfigError
from es_rerank.proxy.upstream import upstream_ssl
from tests.conftest import run_cli
from tests.support.tls import make_test_pki


def test_a_ca_file_gives_a_verifying_context_that_trusts_that_ca(tmp_path):
    pki = make_test_pki(tmp_path)
    context = upstream_ssl(UpstreamSettings("https://127.0.0.1:9280", ca_file=pki.path(pki.ca_cert)))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    subjects = [dict(part[0] for part in cert["subject"]) for cert in context.get_ca_certs()]
    assert subjects == [{"commonName": "es-rerank throwaway test CA"}]   # that CA only, not the system's


def test_insecure_turns_checks_off_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="es_rerank.proxy"):
        assert upstream_ssl(UpstreamSettings("https://127.0.0.1:9280", verify=False)) is False
    assert "certificate checks" in caplog.text and "OFF" in caplog.text


def test_plain_http_keeps_the_defaults():
    assert upstream_ssl(UpstreamSettings("http://127.0.0.1:9200")) is True


@pytest.mark.parametrize("values, message", [
    ({"url": "http://127.0.0.1:9200", "verify": False}, "only applies to an https OpenSearch URL"),
    ({"url": "https://127.0.0.1:9200", "ca_file": "missing-ca.pem"}, "does not exist"),
])
def test_bad_tls_settings_say_what_to_do(values, message):
    with pytest.raises(ConfigError, match=message):
        UpstreamSettings(**values)


def test_a_file_that_is_no_certificate_is_refused(tmp_path):
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="cannot load OpenSearch CA file"):
        upstream_ssl(UpstreamSettings("https://127.0.0.1:9200", ca_file=bogus))


@pytest.mark.parametrize("args, message", [
    (["--ab-split", "0.5"], "--ab-split needs --ab-log"),
    (["--ab-split", "0.5", "--ab-log", "ab.jsonl"], "--ab-split needs searches to rerank"),
    (["--ab-log", "ab.jsonl"], "need --ab-split"),
    (["--ab-split", "1.5"], "0.0<=x<=1.0"),
    (["--ab-split", "0.5", "--ab-mode", "shuffle"], "'shuffle' is not one of"),
    (["--opensearch-insecure"], "only applies to an https OpenSearch URL"),
])
def test_serve_refuses_bad_ab_and_tls_options(args, message):
    result = run_cli("serve", "--opensearch", "http://127.0.0.1:9", "--port", "0", *args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_serve_refuses_an_unreadable_ca_file(tmp_path):
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    result = run_cli("serve", "--opensearch", "https://127.0.0.1:9", "--port", "0", "--opensearch-ca-file", str(bogus))
    assert result.returncode != 0
    assert "cannot load OpenSearch CA file" in result.stderr and "hint:" in result.stderr
