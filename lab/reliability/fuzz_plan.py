"""Property-based fuzzing of request planning (`es_rerank.proxy.plan`), with hypothesis.

`search_requests()` generates `_search`-like requests: odd paths and targets, URL parameters
of every type, headers, and bodies from well-formed searches with hostile `ext.rerank`
values to random bytes and deep JSON. `plan_problems` states what must hold for each:

- `plan_search` returns PassThrough or RerankPlan, or raises ProxyHTTPError 400 (its documented
  error), nothing else;
- a body that goes upstream is JSON without `ext.rerank` (OpenSearch would reject it);
- a rerank plan has query text, a page (`from` >= 0, `size` >= 1), a window within the
  configured maximum, and no `size`/`from` left in the URL;
- `window_request` asks for `from=0, size=max(window, from+size)` within `max_result_window`,
  or passes the request through when the page ends beyond it;
- planning is pure: the same request plans the same twice.

Example:
    >>> request = SearchRequest("POST", "/docs/_search", "", {}, b'{"query": {"match": {"text": "x"}}}')
    >>> plan_problems(request)
    []
"""

from __future__ import annotations

import json

from hypothesis import strategies as st

from es_rerank.proxy.settings import IndexRule, ProxySettings, UpstreamSettings
from es_rerank.proxy.httperror import ProxyHTTPError
from es_rerank.proxy.jsonio import loads
from es_rerank.proxy.plan import (KNOBS, MOVED_PARAMS, PassThrough, RerankPlan, SearchRequest, parse_params,
                                  plan_search, window_request)

SETTINGS = ProxySettings(UpstreamSettings("http://127.0.0.1:9200"),
                         rules=(IndexRule("docs", window=50, deadline_ms=200), IndexRule("logs-*", fields=("message",))),
                         max_window=500)
RESULT_WINDOWS = (1, 10, 60, 10000)

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
_json_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=20)
_words = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=0, max_size=20)

_queries = st.one_of(
    st.builds(lambda t: {"match": {"text": t}}, _words),
    st.builds(lambda t: {"match": {"title": {"query": t}}}, _words),
    st.builds(lambda t: {"multi_match": {"query": t, "fields": ["title", "text"]}}, _words),
    st.builds(lambda t: {"query_string": {"query": t}}, _words),
    st.builds(lambda a, b: {"bool": {"must": [{"match": {"text": a}}], "filter": [{"term": {"x": b}}]}}, _words, _words),
    st.just({"match_all": {}}),
    _json_values,
)
_knob_values = st.dictionaries(st.sampled_from(KNOBS + ("windw", "")), _json_values, max_size=4)
_rerank_knobs = st.one_of(
    st.fixed_dictionaries({}, optional={"enabled": st.booleans(), "window": st.integers(1, 500),
                                        "fields": st.lists(st.sampled_from(["title", "text", "message"]), min_size=1),
                                        "query_text": _words.filter(str.strip), "provenance": st.booleans()}),
    _knob_values, _json_values)
_size_values = st.one_of(st.integers(-5, 12000), st.integers(-(2 ** 70), 2 ** 70), _scalars)
_bodies = st.fixed_dictionaries({}, optional={
    "query": _queries, "size": _size_values, "from": _size_values,
    "sort": st.one_of(st.just("_score"), st.just([{"_score": "desc"}]), st.just([{"date": "asc"}]), _json_values),
    "_source": st.one_of(st.booleans(), st.lists(st.sampled_from(["title", "text", "x*"])), _json_values),
    "stored_fields": st.one_of(st.just("_none_"), st.lists(st.sampled_from(["title", "text"]))),
    "fields": st.one_of(st.lists(st.sampled_from(["title", "text", "date", "*"])), _json_values),
    "docvalue_fields": st.lists(st.sampled_from(["date", "text"])),
    "search_after": st.just([1]), "pit": st.just({"id": "x"}),
    "ext": st.one_of(st.builds(lambda knobs: {"rerank": knobs}, _rerank_knobs), _json_values),
    "aggs": st.just({"n": {"terms": {"field": "x"}}}),
})


def _deep(levels: int) -> bytes:
    return b'{"query":' + b'{"a":' * levels + b"{}" + b"}" * levels + b"}"


_raw_bodies = st.one_of(
    _bodies.map(lambda body: json.dumps(body).encode()),
    _bodies.map(lambda body: json.dumps(body).encode()[:-1]),  # truncated
    st.binary(max_size=64),
    st.integers(1, 3000).map(_deep),
    st.just(b""), st.just(b"[]"), st.just(b'{"size": NaN}'), st.just(b'{"size": 1, "size": 2}'),
)
_targets = st.one_of(st.sampled_from(["docs", "logs-1", "docs,logs-1", "other", "docs,other", "d*", "_all",
                                      "%64ocs", "docs%2Cother", "logs-%2A"]), st.text(min_size=1, max_size=10))
_paths = st.one_of(
    _targets.map(lambda t: f"/{t}/_search"), _targets.map(lambda t: f"/{t}/_search/"),
    st.just("/_search"), st.just("/docs/_count"), st.just("/docs/_search/template"), st.text(max_size=20))
_param = st.one_of(
    st.tuples(st.sampled_from(["size", "from"]), st.one_of(st.integers(-5, 12000).map(str), st.text(max_size=5))),
    st.tuples(st.just("q"), _words),
    st.tuples(st.sampled_from(["scroll", "filter_path", "format", "pretty", "sort", "stored_fields", "_source",
                               "_source_includes", "typed_keys", "search_type"]),
              st.sampled_from(["", "1m", "json", "yaml", "_score", "date:asc", "_none_", "true", "false", "title"])),
    st.tuples(st.text(max_size=5), st.text(max_size=5)),
)
_query_strings = st.lists(_param, max_size=4).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs))
_headers = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from(["application/json", "application/x-ndjson", "text/plain", ""]),
    "X-Rerank": st.sampled_from(["off", "on", "0", "junk"]),
    "Accept": st.sampled_from(["application/json", "text/plain", "*/*", "application/yaml"]),
})


def search_requests():
    """A hypothesis strategy of SearchRequests, most of them `_search` on a configured index.
    """
    return st.builds(SearchRequest, st.sampled_from(["GET", "POST", "PUT", "HEAD"]), _paths, _query_strings,
                     _headers, _raw_bodies)


def plan_problems(request: SearchRequest, settings: ProxySettings = SETTINGS) -> list[str]:
    """What is wrong with planning `request` (empty when every property holds).

    Example:
        >>> plan_problems(SearchRequest("GET", "/docs/_search", "size=-1", {}, b""))
        []
    """
    try:
        result = plan_search(request, settings)
    except ProxyHTTPError as err:
        return [] if err.status == 400 else [f"ProxyHTTPError {err.status} (documented: 400 only): {err.reason}"]
    except Exception as exc:  # the property: nothing but the documented error escapes
        return [f"plan_search raised {type(exc).__name__}: {exc}"]
    again = plan_search(request, settings)
    problems = [] if again == result else ["planning the same request twice gave different results"]
    if isinstance(result, PassThrough):
        return problems + _upstream_body_problems(result.body, "pass-through body")
    if not isinstance(result, RerankPlan):
        return problems + [f"plan_search returned {type(result).__name__}"]
    return problems + _rerank_plan_problems(result, settings)


def _upstream_body_problems(body: bytes | None, what: str) -> list[str]:
    if body is None:
        return []
    try:
        value = loads(body)
    except ValueError as exc:
        return [f"{what} is not JSON: {exc}"]
    if not isinstance(value, dict):
        return [f"{what} is not a JSON object"]
    ext = value.get("ext")
    if isinstance(ext, dict) and "rerank" in ext:
        return [f"{what} still carries ext.rerank, which OpenSearch rejects"]
    return []


def _rerank_plan_problems(plan: RerankPlan, settings: ProxySettings) -> list[str]:
    spec = plan.spec
    problems = []
    if not isinstance(spec.query_text, str) or not spec.query_text.strip():
        problems.append(f"reranked without query text: {spec.query_text!r}")
    if spec.start < 0 or spec.size < 1:
        problems.append(f"page from={spec.start} size={spec.size} is not a page")
    if not 1 <= spec.window <= settings.max_window:
        problems.append(f"window {spec.window} outside 1..{settings.max_window}")
    if not spec.fields or not all(isinstance(f, str) and f for f in spec.fields):
        problems.append(f"fields {spec.fields!r} are not field names")
    if set(parse_params(plan.query_string)) & set(MOVED_PARAMS):
        problems.append(f"size/from left in the upstream URL: {plan.query_string!r}")
    ext = plan.body.get("ext")
    if isinstance(ext, dict) and "rerank" in ext:
        problems.append("the upstream body still carries ext.rerank")
    problems += _upstream_body_problems(plan.passthrough_body, "BM25 fallback body")
    for max_result_window in RESULT_WINDOWS:
        problems += _window_problems(plan, max_result_window)
    return problems


def _window_problems(plan: RerankPlan, max_result_window: int) -> list[str]:
    spec = plan.spec
    window = window_request(plan, max_result_window)
    end = spec.start + spec.size
    if isinstance(window, PassThrough):
        return [] if end > max_result_window else [f"passed through although page end {end} <= {max_result_window}"]
    if end > max_result_window:
        return [f"asked upstream for a page ending at {end} beyond max_result_window {max_result_window}"]
    body = loads(window.body)
    wanted = max(min(spec.window, max_result_window), end)
    problems = []
    if body.get("from") != 0 or body.get("size") != wanted:
        problems.append(f"window from={body.get('from')} size={body.get('size')}, expected from=0 size={wanted}")
    if window.spec.window > max_result_window:
        problems.append(f"window {window.spec.window} beyond max_result_window {max_result_window}")
    if {k: v for k, v in body.items() if k not in ("from", "size")} != \
            {k: v for k, v in plan.body.items() if k not in ("from", "size")}:
        problems.append("the window request changed the body beyond from/size")
    if not window.path_qs.startswith(plan.path):
        problems.append(f"window path {window.path_qs!r} does not start with {plan.path!r}")
    return problems


def deep_bodies():
    """(levels, cut) pairs: a body nested `levels` deep, truncated by `cut` bytes (0 keeps it whole).
    """
    return st.tuples(st.integers(1, 3000), st.integers(0, 40))


def deep_body_problems(case: tuple[int, int], settings: ProxySettings = SETTINGS) -> list[str]:
    """A search body nested deeper than the cap is refused with 400, whole or truncated; never relayed.

    Example:
        >>> deep_body_problems((500, 3)), deep_body_problems((5, 0))
        ([], [])
    """
    levels, cut = case
    body = _deep(levels)
    depth = levels + 2  # the body object, the `levels` objects, the innermost {}
    body = body[: len(body) - cut] if cut else body
    request = SearchRequest("POST", "/docs/_search", "", {"Content-Type": "application/json"}, body)
    try:
        result = plan_search(request, settings)
    except ProxyHTTPError as err:
        deep = depth > settings.limits.max_json_depth
        return [] if err.status == 400 and deep else [f"a body {depth} levels deep got {err.status}: {err.reason}"]
    if depth > settings.limits.max_json_depth:
        return [f"a body {depth} levels deep (cut by {cut}) was not refused: {result}"]
    return []
