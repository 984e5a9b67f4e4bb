"""The proxy's own HTTP errors: one status table, one named constructor per row."""

import pytest

from es_rerank.proxy.httperror import STATUS_TABLE, ProxyHTTPError, error_body
from es_rerank.proxy.jsonio import loads

# What clients see today; a change here changes the proxy's answers.
EXPECTED = {
    "bad_request": (400, "illegal_argument_exception"),
    "parse_error": (400, "parse_exception"),
    "parsing_error": (400, "parsing_exception"),
    "not_found": (404, "resource_not_found_exception"),
    "method_not_allowed": (405, "method_not_allowed_exception"),
    "request_timeout": (408, "timeout_exception"),
    "payload_too_large": (413, "content_too_long_exception"),
    "unsupported_media_type": (415, "illegal_argument_exception"),
    "rejected": (429, "rejected_execution_exception"),
    "internal": (500, "proxy_internal_exception"),
    "upstream_unavailable": (502, "upstream_unavailable_exception"),
    "upstream_timeout": (504, "upstream_timeout_exception"),
}


def test_the_table_holds_the_statuses_and_types_the_proxy_answers():
    assert STATUS_TABLE == EXPECTED


@pytest.mark.parametrize("kind", [kind for kind in EXPECTED if kind != "rejected"])
def test_each_kind_has_a_constructor_that_builds_its_row(kind):
    err = getattr(ProxyHTTPError, kind)("what went wrong")
    assert (err.status, err.error_type, err.reason) == (*STATUS_TABLE[kind], "what went wrong")
    body = loads(error_body(err.status, err.error_type, err.reason))
    assert body == {"error": {"root_cause": [{"type": err.error_type, "reason": "what went wrong"}],
                              "type": err.error_type, "reason": "what went wrong"}, "status": err.status}


def test_errors_for_unread_bodies_close_the_connection_and_the_others_keep_it():
    closing = {kind for kind in EXPECTED if kind != "rejected" and getattr(ProxyHTTPError, kind)("x").close}
    assert closing == {"request_timeout", "payload_too_large"}
    assert ProxyHTTPError.parsing_error("deep", close=True).close
    assert ProxyHTTPError.parse_error("truncated", close=True).close


@pytest.mark.parametrize("status", [429, 503])
def test_rejected_takes_the_configured_shed_status_and_says_when_to_retry(status):
    err = ProxyHTTPError.rejected("at the limit", status=status, retry_after_s=3)
    assert (err.status, err.error_type, err.headers) == (status, "rejected_execution_exception", {"Retry-After": "3"})


def test_an_unknown_kind_names_the_kinds_there_are():
    with pytest.raises(KeyError, match="STATUS_TABLE has bad_request"):
        ProxyHTTPError.of_kind("teapot", "short and stout")


def test_elasticsearch_names_each_fault_as_it_does_itself():
    rejected = ProxyHTTPError.rejected("at the limit", status=429, retry_after_s=1)
    assert rejected.type_for("elasticsearch") == "es_rejected_execution_exception"
    assert loads(rejected.body("elasticsearch"))["error"]["root_cause"][0]["type"] == "es_rejected_execution_exception"
    for kind in EXPECTED:  # every other fault has the same type in both engines
        if kind != "rejected":
            err = getattr(ProxyHTTPError, kind)("x")
            assert err.type_for("elasticsearch") == err.type_for("opensearch") == EXPECTED[kind][1]
