"""Pure request planning: does a `_search` get reranked, and what is sent upstream if so.

Nothing here does I/O. `plan_search` returns either `PassThrough` (relay the request, with
`ext.rerank` removed when it was there) or `RerankPlan`; `window_request` then turns a plan
into the upstream request once the index's `max_result_window` is known.

Example:
    >>> settings = ProxySettings(UpstreamSettings("http://127.0.0.1:9200"), rules=(IndexRule("scifact"),))
    >>> request = SearchRequest("POST", "/scifact/_search", "size=5", {},
    ...                         b'{"query": {"match": {"text": "gene therapy"}}}')
    >>> plan = plan_search(request, settings)
    >>> plan.spec.query_text, plan.spec.start, plan.spec.size
    ('gene therapy', 0, 5)
    >>> upstream = window_request(plan, max_result_window=10000)
    >>> upstream.path_qs, loads(upstream.body)["size"]
    ('/scifact/_search', 100)
    >>> plan_search(SearchRequest("POST", "/scifact/_search", "", {}, b'{"sort": "date"}'), settings).reason
    'sorted by something other than _score'
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, replace
from typing import Mapping
from urllib.parse import unquote, unquote_plus

from es_rerank.proxy.settings import IndexRule, LimitSettings, ProxySettings, UpstreamSettings  # noqa: F401 (doctest)
from es_rerank.errors import ConfigError
from es_rerank.evaluation.protocol import RERANK_SWITCH_HEADER
from es_rerank.scoring.fusion import CE_ONLY, FusionWeights, parse_fusion_override
from es_rerank.proxy.httperror import ProxyHTTPError
from es_rerank.proxy.jsonio import TooDeep, has_duplicate_keys, loads  # noqa: F401 (loads: doctest)
from es_rerank.proxy.limits import refuse_deep_json
from es_rerank.proxy.rawjson import dump_keeping_raw, parse_keeping_raw

SWITCH_OFF_VALUES = frozenset({"off", "false", "0", "no", "disabled"})
KNOBS = ("enabled", "window", "fields", "query_text", "provenance", "fusion")
TEXT_QUERIES = ("match", "match_phrase", "match_phrase_prefix", "match_bool_prefix")
WRAPPERS = ("function_score", "script_score", "nested", "has_child", "has_parent")
# URL parameters the proxy moves into the body (URL values win over body values, as in OpenSearch).
MOVED_PARAMS = ("size", "from")
DEFAULT_SIZE = 10
DEFAULT_MAX_RESULT_WINDOW = 10000


@dataclass(frozen=True)
class SearchRequest:
    """The parts of a client request that planning looks at; `body` is already un-gzipped."""

    method: str
    path: str
    query_string: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class PassThrough:
    """Relay the request unreranked. `body` is a rewritten body (ext.rerank removed) or None for the client's bytes."""

    reason: str
    body: bytes | None = None


@dataclass(frozen=True)
class RerankSpec:
    """What the rerank stage needs: query text, fields, window and the page the client asked for.

    `text_source` says where hit text is read: `_source` when the client's `_source` is unfiltered,
    else `fields` (the fields API, which ignores `_source` filtering). `added_fields` are the names
    the proxy asked the fields API for and must strip from hits again. `fusion` is None for the
    cross-encoder order alone, else the weights that mix it with BM25 and the `dense_model`'s scores.
    """

    query_text: str
    fields: tuple[str, ...]
    window: int
    start: int
    size: int
    deadline_s: float
    provenance: bool = False
    text_source: str = "_source"
    added_fields: tuple[str, ...] = ()
    pretty: bool = False
    fusion: FusionWeights | None = None
    dense_model: str | None = None


@dataclass(frozen=True)
class RerankPlan:
    """A search to rerank: the spec, the upstream body (before the window is set) and the way back to BM25."""

    spec: RerankSpec
    path: str
    target: str
    query_string: str
    body: dict
    passthrough_body: bytes | None
    # The client's text of the body's values (rawjson); derived from the body, so not compared.
    raw_text: Mapping = field(default_factory=dict, compare=False, repr=False)


# The request-body objects the proxy rebuilds; every other value is relayed as the client wrote it
# (a re-serialised `1e400` would become null, which a range query reads as "no bound").
REQUEST_SHAPE: dict = {"ext": {}}


@dataclass(frozen=True)
class WindowRequest:
    """The upstream request for the window: `path_qs` and JSON `body`, plus the spec with its final window."""

    spec: RerankSpec
    path_qs: str
    body: bytes


def search_target(method: str, path: str, endpoint: str = "_search") -> str | None:
    """The raw (still encoded) index expression of a `_search` path (`_all` for `/_search`), or None.

    Read as OpenSearch routes: the path splits on literal slashes, the endpoint name must match
    as sent (OpenSearch has no handler for `%5Fsearch`), and the index expression is decoded for
    rule matching (`target_indices`) but comes back as sent, for the requests the proxy makes about it.

    Example:
        >>> search_target("GET", "/a,b/_search"), search_target("POST", "/_search"), search_target("PUT", "/a/_search")
        ('a,b', '_all', None)
        >>> search_target("GET", "/%3Clogs-%7Bnow%2Fd%7D%3E/_search/"), search_target("GET", "/a%2F_search")
        ('%3Clogs-%7Bnow%2Fd%7D%3E', None)
        >>> search_target("GET", "/a/%5Fsearch")
    """
    if method not in ("GET", "POST"):
        return None
    raw = path.split("/")
    if len(raw) > 2 and raw[-1] == "":
        raw = raw[:-1]  # one trailing slash
    if raw[-1] != endpoint or raw[0] != "":
        return None
    if len(raw) == 2:
        return "_all"
    return raw[1] if len(raw) == 3 and raw[1] else None


def target_indices(target: str) -> list[str]:
    """The decoded index names of an index expression (OpenSearch splits on commas after decoding).

    Example:
        >>> target_indices("a%2Cb,%3Cc-%7Bnow%2Fd%7D%3E")
        ['a', 'b', '<c-{now/d}>']
    """
    return unquote(target).split(",")


def parse_params(query_string: str) -> dict[str, str]:
    """URL parameters decoded as OpenSearch decodes them (`+` is a space; the last repeat wins).

    Example:
        >>> parse_params("q=gene+therapy&size=5&pretty")
        {'q': 'gene therapy', 'size': '5', 'pretty': ''}
    """
    params = {}
    for segment in query_string.split("&"):
        if segment:
            key, _, value = segment.partition("=")
            params[unquote_plus(key)] = unquote_plus(value)
    return params


def drop_params(query_string: str, names: tuple[str, ...]) -> str:
    """The query string without the named parameters; the other segments keep their exact bytes.

    Example:
        >>> drop_params("size=5&typed_keys&from=10", ("size", "from"))
        'typed_keys'
    """
    kept = [s for s in query_string.split("&") if s and unquote_plus(s.partition("=")[0]) not in names]
    return "&".join(kept)


def check_search_depth(body: bytes, content_type: str, path: str, limits: LimitSettings) -> None:
    """The one depth check of a search body, made before it is planned or relayed: 400 past the cap.

    OpenSearch can die of a stack overflow on a deep query, so no body over `limits.max_json_depth`
    goes on, parsable or not: JSON by its brackets (whole or cut short), `_msearch` NDJSON line by
    line, YAML, CBOR and Smile by their bound (`limits.BodyDepthCheck`).

    Example:
        >>> check_search_depth(b'{"query": {"bool": {"must": [', "application/json", "/docs/_search",
        ...                    LimitSettings(max_json_depth=3))
        Traceback (most recent call last):
        ...
        es_rerank.proxy.httperror.ProxyHTTPError: request JSON nests at least 4 levels deep; the proxy accepts at most 3
    """
    refuse_deep_json(body, content_type, "", path, limits.max_json_depth, limits.max_body_bytes)


def plan_search(request: SearchRequest, settings: ProxySettings) -> PassThrough | RerankPlan:
    """`check_search_depth`, then `plan_checked_search`: for a body no one has depth-checked yet.

    Example:
        >>> settings = ProxySettings(UpstreamSettings("http://h:9200"), rules=(IndexRule("docs"),))
        >>> plan_search(SearchRequest("GET", "/docs/_search", "q=heart+attack", {}, b""), settings).spec.query_text
        'heart attack'
    """
    check_search_depth(request.body, request.headers.get("Content-Type", ""), request.path, settings.limits)
    return plan_checked_search(request, settings)


def plan_checked_search(request: SearchRequest, settings: ProxySettings) -> PassThrough | RerankPlan:
    """Decide whether a `_search` whose body passed `check_search_depth` is reranked.

    Raises ProxyHTTPError (400) for a bad `ext.rerank`, or JSON deeper than the parser itself takes.

    Example:
        >>> settings = ProxySettings(UpstreamSettings("http://h:9200"), rules=(IndexRule("docs"),))
        >>> plan_checked_search(SearchRequest("GET", "/docs/_search", "scroll=1m", {}, b""), settings).reason
        'scroll search'
    """
    target = search_target(request.method, request.path)
    if target is None:
        return PassThrough("not a search")
    params = parse_params(request.query_string)
    rule = settings.rule_for(target_indices(target))
    early = _url_skip_reason(request, params, rule)
    if early is not None:
        return PassThrough(early, strip_rerank_ext(request.body))
    if request.body.strip() and not _is_json(request.headers.get("Content-Type", "")):
        return PassThrough("body is not JSON")
    try:
        body, raw_text = parse_keeping_raw(request.body, REQUEST_SHAPE) if request.body.strip() else ({}, {})
    except TooDeep:  # under the cap, but past the parser's own limit: refused, never relayed unchecked
        raise ProxyHTTPError.parsing_error("request JSON nests too deeply; "
                                            f"the proxy accepts at most {settings.limits.max_json_depth} levels") from None
    except ValueError:
        return PassThrough("malformed JSON: OpenSearch answers it")
    if not isinstance(body, dict):
        return PassThrough("body is not a JSON object")
    if has_duplicate_keys(request.body):  # re-serialising would silently keep the last value
        return PassThrough("duplicate keys in JSON: OpenSearch answers it")
    knobs, body, passthrough_body = _take_knobs(body, raw_text)
    _check_knobs(knobs, settings.max_window)
    fusion = fusion_weights(knobs, rule)
    if knobs.get("enabled") is False:
        return PassThrough("switched off by ext.rerank.enabled", passthrough_body)
    reason = _body_skip_reason(body, params)
    if reason is not None:
        return PassThrough(reason, passthrough_body)
    start, size = _page(body, params)
    if start is None:
        return PassThrough("from/size are not non-negative integers: OpenSearch answers it", passthrough_body)
    if size == 0:
        return PassThrough("size=0 asks for no hits", passthrough_body)
    text = knobs.get("query_text") or (lucene_text(params["q"]) if "q" in params else query_text(search_query(body)))
    if not text:
        return PassThrough("no query text found", passthrough_body)
    fields = _knob_fields(knobs) or rule.fields
    text_source, added, upstream_body = _fields_for_text(body, params, fields)
    spec = RerankSpec(query_text=text, fields=fields, window=knobs.get("window", rule.window), start=start,
                      size=size, deadline_s=rule.deadline_ms / 1000.0, provenance=bool(knobs.get("provenance")),
                      text_source=text_source, added_fields=added,
                      pretty=params.get("pretty", "false") != "false", fusion=fusion, dense_model=rule.dense_model)
    return RerankPlan(spec=spec, path=request.path, target=target,
                      query_string=drop_params(request.query_string, MOVED_PARAMS), body=upstream_body,
                      passthrough_body=passthrough_body, raw_text=raw_text)


def window_request(plan: RerankPlan, max_result_window: int) -> WindowRequest | PassThrough:
    """Ask upstream for `from=0, size=max(window, from+size)`, the window clamped to `max_result_window`.

    A page beyond `max_result_window` passes through, so OpenSearch gives its own error.

    Example:
        >>> spec = RerankSpec("q", ("text",), window=100, start=40, size=80, deadline_s=1.0)
        >>> plan = RerankPlan(spec, "/i/_search", "i", "", {}, None)
        >>> loads(window_request(plan, 10000).body)
        {'from': 0, 'size': 120}
        >>> window_request(plan, 50).reason
        'page ends beyond index.max_result_window: OpenSearch answers it'
    """
    spec = plan.spec
    end = spec.start + spec.size
    if end > max_result_window:
        return PassThrough("page ends beyond index.max_result_window: OpenSearch answers it", plan.passthrough_body)
    spec = replace(spec, window=min(spec.window, max_result_window))
    body = {**plan.body, "from": 0, "size": max(spec.window, end)}
    path_qs = plan.path + ("?" + plan.query_string if plan.query_string else "")
    return WindowRequest(spec=spec, path_qs=path_qs, body=dump_keeping_raw(body, plan.raw_text))


def settings_path(target: str) -> str:
    """Path that reads `index.max_result_window` (defaults included) for an index expression.

    Example:
        >>> settings_path("scifact")
        '/scifact/_settings/index.max_result_window?include_defaults=true&flat_settings=true'
    """
    return f"/{target}/_settings/index.max_result_window?include_defaults=true&flat_settings=true"


def max_result_window(settings_response: dict) -> int:
    """The smallest `index.max_result_window` over the indices in a `_settings` response.

    Example:
        >>> max_result_window({"a": {"settings": {"index.max_result_window": "50"}},
        ...                    "b": {"settings": {}, "defaults": {"index.max_result_window": "10000"}}})
        50
    """
    found = []
    for entry in settings_response.values():
        if isinstance(entry, dict):
            value = (entry.get("settings") or {}).get("index.max_result_window") or \
                (entry.get("defaults") or {}).get("index.max_result_window")
            if value is not None:
                found.append(int(value))
    return min(found) if found else DEFAULT_MAX_RESULT_WINDOW


def query_text(query) -> str:
    """The text a user typed, gathered from the scoring clauses of a query (filters are ignored).

    Example:
        >>> query_text({"bool": {"must": [{"match": {"title": {"query": "gene"}}}],
        ...                      "should": {"multi_match": {"query": "therapy"}},
        ...                      "filter": {"match": {"year": "2020"}}}})
        'gene therapy'
        >>> query_text({"term": {"id": 5}})
        ''
    """
    found: list[str] = []
    _collect_text(query, found)
    unique = list(dict.fromkeys(t.strip() for t in found if t and t.strip()))
    return " ".join(unique)


def _collect_text(node, found: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _collect_text(item, found)
        return
    if not isinstance(node, dict):
        return
    for kind, clause in node.items():
        if not isinstance(clause, dict):
            continue
        if kind in TEXT_QUERIES:
            for value in clause.values():
                value = value.get("query") if isinstance(value, dict) else value
                if isinstance(value, str):
                    found.append(value)
        elif kind == "multi_match" and isinstance(clause.get("query"), str):
            found.append(clause["query"])
        elif kind in ("query_string", "simple_query_string") and isinstance(clause.get("query"), str):
            found.append(lucene_text(clause["query"]))
        elif kind == "neural":
            found.extend(v["query_text"] for v in clause.values() if isinstance(v, dict) and isinstance(v.get("query_text"), str))
        elif kind == "bool":
            _collect_text(clause.get("must"), found)
            _collect_text(clause.get("should"), found)
        elif kind in ("dis_max", "hybrid"):
            _collect_text(clause.get("queries"), found)
        elif kind == "boosting":
            _collect_text(clause.get("positive"), found)
        elif kind in WRAPPERS:
            _collect_text(clause.get("query"), found)


_BOOST_OR_FUZZ = re.compile(r"[\^~]\d*(?:\.\d+)?")
_FIELD_PREFIX = re.compile(r"(?<![\w\\])[\w.*]+:(?!//)")
_OPERATORS = re.compile(r"(?<!\S)(?:AND|OR|NOT|&&|\|\|)(?!\S)")
_PREFIX_OPS = re.compile(r"(?<!\S)[+\-!]+")
_SPECIALS = re.compile(r'[(){}\[\]"*?\\|/<>]')


def lucene_text(query: str) -> str:
    """Plain words from a `query_string`/`simple_query_string`/`q=` query: syntax and field names removed.

    Example:
        >>> lucene_text('title:"gene therapy" AND +cancer^2 -mouse~1')
        'gene therapy cancer mouse'
        >>> lucene_text("covid-19 vaccine")
        'covid-19 vaccine'
    """
    text = _BOOST_OR_FUZZ.sub(" ", query)
    text = _FIELD_PREFIX.sub(" ", text)
    text = _OPERATORS.sub(" ", text)
    text = _SPECIALS.sub(" ", text)
    text = _PREFIX_OPS.sub(" ", text)
    return " ".join(text.split())


def sorts_by_relevance(sort) -> bool:
    """True for no sort or a sort by `_score` descending only.

    Example:
        >>> sorts_by_relevance(None), sorts_by_relevance(["_score"]), sorts_by_relevance({"_score": {"order": "asc"}})
        (True, True, False)
        >>> sorts_by_relevance([{"_score": "desc"}, {"date": "desc"}])
        False
    """
    if sort is None:
        return True
    for item in sort if isinstance(sort, list) else [sort]:
        if item == "_score":
            continue
        if isinstance(item, dict) and list(item) == ["_score"]:
            order = item["_score"]
            order = order.get("order", "desc") if isinstance(order, dict) else order
            if str(order).lower() == "desc":
                continue
        return False
    return True


def _url_skip_reason(request: SearchRequest, params: dict[str, str], rule: IndexRule | None) -> str | None:
    """Skip conditions readable from the URL and headers alone, so the body need not be parsed."""
    if rule is None:
        return "index not configured for reranking"
    if not rule.rerank:
        return "reranking switched off for this index"
    if request.headers.get(RERANK_SWITCH_HEADER, "").strip().lower() in SWITCH_OFF_VALUES:
        return f"switched off by the {RERANK_SWITCH_HEADER} header"
    if "scroll" in params:
        return "scroll search"
    if "filter_path" in params:
        return "filter_path given"
    if params.get("format", "json").lower() != "json":
        return "non-JSON response format"
    accept = request.headers.get("Accept", "")
    if accept and "json" not in accept and "*/*" not in accept:
        return "non-JSON response format"
    if "sort" in params and not all(s.strip() in ("_score", "_score:desc") for s in params["sort"].split(",")):
        return "sorted by something other than _score"
    if params.get("stored_fields") == "_none_":
        return "stored_fields=_none_ fetches no text"
    return None


def _body_skip_reason(body: dict, params: dict[str, str]) -> str | None:
    if "sort" not in params and not sorts_by_relevance(body.get("sort")):
        return "sorted by something other than _score"
    if "search_after" in body:
        return "search_after pagination"
    if "pit" in body:
        return "point-in-time search"
    # Elasticsearch's own ranking: its order is the product the client asked for, so it passes through.
    for key in ("knn", "rank", "sub_searches"):
        if key in body:
            return f"Elasticsearch's {key} given"
    if "retriever" in body:
        standard = standard_retriever(body["retriever"])
        if standard is None:
            return "a retriever other than standard (rrf, knn, text_similarity_reranker, ...)"
        if not sorts_by_relevance(standard.get("sort")):
            return "sorted by something other than _score"
        if "search_after" in standard:
            return "search_after pagination"
    if body.get("stored_fields") == "_none_":
        return "stored_fields=_none_ fetches no text"
    return None


def standard_retriever(retriever) -> dict | None:
    """The body of an Elasticsearch `{"standard": {...}}` retriever (a query, like a plain search), else None.

    Example:
        >>> standard_retriever({"standard": {"query": {"match": {"text": "gene"}}}})
        {'query': {'match': {'text': 'gene'}}}
        >>> standard_retriever({"rrf": {"retrievers": []}}) is None
        True
    """
    if isinstance(retriever, dict) and list(retriever) == ["standard"] and isinstance(retriever["standard"], dict):
        return retriever["standard"]
    return None


def search_query(body: dict):
    """The query a search ranks by: the body's `query`, or its standard retriever's.

    Example:
        >>> search_query({"retriever": {"standard": {"query": {"match": {"text": "gene"}}}}})
        {'match': {'text': 'gene'}}
    """
    standard = standard_retriever(body.get("retriever"))
    return standard.get("query") if standard is not None else body.get("query")


def _page(body: dict, params: dict[str, str]) -> tuple[int | None, int]:
    """(from, size) with URL values winning; (None, 0) when either is not a non-negative integer."""
    start = _non_negative_int(params.get("from", body.get("from", 0)))
    size = _non_negative_int(params.get("size", body.get("size", DEFAULT_SIZE)))
    if start is None or size is None:
        return None, 0
    return start, size


def _non_negative_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _is_json(content_type: str) -> bool:
    return not content_type or "json" in content_type.lower()


def strip_rerank_ext(raw: bytes) -> bytes | None:
    """For a search that passes through: the body without `ext.rerank`, or None when it has none.

    Bodies without the bytes `rerank` are not parsed at all (the pass-through fast path).

    Example:
        >>> strip_rerank_ext(b'{"size": 5}') is None
        True
        >>> strip_rerank_ext(b'{"size": 5, "min_score": 1e400, "ext": {"rerank": {"window": 9}}}')
        b'{"size":5,"min_score":1e400}'
    """
    if b"rerank" not in raw:
        return None
    try:
        body, raw_text = parse_keeping_raw(raw, REQUEST_SHAPE)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    return _take_knobs(body, raw_text)[2]


def _take_knobs(body: dict, raw_text: Mapping) -> tuple[dict, dict, bytes | None]:
    """Split `ext.rerank` off the body: (knobs, body without them, that body as bytes or None if unchanged)."""
    ext = body.get("ext")
    if not isinstance(ext, dict) or "rerank" not in ext:
        return {}, body, None
    knobs = ext["rerank"]
    if not isinstance(knobs, dict):
        raise ProxyHTTPError.bad_request(f"ext.rerank must be an object, got {knobs!r}")
    rest = {k: v for k, v in ext.items() if k != "rerank"}
    body = {k: v for k, v in body.items() if k != "ext"}
    if rest:
        body["ext"] = rest
    return knobs, body, dump_keeping_raw(body, raw_text)


def _check_knobs(knobs: dict, max_window: int) -> None:
    """Validate `ext.rerank` with messages saying what was expected and what came."""
    def bad(name: str, expected: str) -> ProxyHTTPError:
        return ProxyHTTPError.bad_request(f"ext.rerank.{name} must be {expected}, got {knobs[name]!r}")

    unknown = sorted(set(knobs) - set(KNOBS))
    if unknown:
        raise ProxyHTTPError.bad_request(f"unknown ext.rerank key(s) {unknown}; expected some of {list(KNOBS)}")
    for name in ("enabled", "provenance"):
        if name in knobs and not isinstance(knobs[name], bool):
            raise bad(name, "true or false")
    if "window" in knobs:
        window = knobs["window"]
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= max_window:
            raise bad("window", f"an integer from 1 to {max_window}")
    if "query_text" in knobs and (not isinstance(knobs["query_text"], str) or not knobs["query_text"].strip()):
        raise bad("query_text", "a non-empty string")
    if "fields" in knobs and not _knob_fields(knobs):
        raise bad("fields", "a non-empty list of field names")


def fusion_weights(knobs: dict, rule: IndexRule) -> FusionWeights | None:
    """The search's fusion weights: the index's, changed by `ext.rerank.fusion` when given.

    Weights the request leaves out come from the index's (cross-encoder only when it has none).
    A bad override, or one that needs dense scores on an index without a dense model, is a 400.

    Example:
        >>> fusion_weights({"fusion": {"bm25": 0.5}}, IndexRule("docs")).as_dict()
        {'ce': 1.0, 'bm25': 0.5, 'dense': 0.0, 'norm': 'zscore'}
        >>> fusion_weights({"fusion": {"dense": 1}}, IndexRule("docs"))
        Traceback (most recent call last):
        ...
        es_rerank.proxy.httperror.ProxyHTTPError: ext.rerank.fusion gives dense weight 1 but index 'docs' has no dense model; set dense to 0, or configure dense_model for the index
    """
    if "fusion" not in knobs:
        return rule.fusion
    try:
        weights = parse_fusion_override(knobs["fusion"], base=rule.fusion or CE_ONLY)
    except ConfigError as exc:
        raise ProxyHTTPError.bad_request(str(exc)) from None
    if weights.needs_dense and rule.dense_model is None:
        raise ProxyHTTPError.bad_request(
            f"ext.rerank.fusion gives dense weight {weights.dense:g} but index {rule.pattern!r} has "
                             "no dense model; set dense to 0, or configure dense_model for the index")
    return weights


def _knob_fields(knobs: dict) -> tuple[str, ...]:
    fields = knobs.get("fields")
    if isinstance(fields, str):
        fields = [fields]
    if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
        return ()
    return tuple(fields)


def _source_unfiltered(body: dict, params: dict[str, str]) -> bool:
    """True when the client gets whole `_source`s, so hit text can be read from them directly."""
    if any(p in params for p in ("_source_includes", "_source_excludes", "stored_fields")):
        return False
    if "_source" in params:
        return params["_source"] in ("", "true")
    return body.get("_source", True) is True and "stored_fields" not in body


def _fields_for_text(body: dict, params: dict[str, str], fields: tuple[str, ...]) -> tuple[str, tuple[str, ...], dict]:
    """Where hit text comes from, which names the proxy adds to the fields API, and the upstream body."""
    if _source_unfiltered(body, params):
        return "_source", (), body
    requested = _requested_field_names(body, params)
    added = tuple(f for f in fields if not any(fnmatch.fnmatchcase(f, p) for p in requested))
    if not added:
        return "fields", (), body
    client_fields = body.get("fields")
    client_fields = client_fields if isinstance(client_fields, list) else ([client_fields] if client_fields else [])
    return "fields", added, {**body, "fields": client_fields + list(added)}


def _requested_field_names(body: dict, params: dict[str, str]) -> list[str]:
    """Names/patterns the client itself asked to see in `hits[].fields` (so the proxy must not strip them)."""
    names: list[str] = []
    for key in ("fields", "docvalue_fields", "stored_fields"):
        value = body.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                names.append(item)
            elif isinstance(item, dict) and isinstance(item.get("field"), str):
                names.append(item["field"])
    if isinstance(body.get("script_fields"), dict):
        names.extend(body["script_fields"])
    for key in ("docvalue_fields", "stored_fields"):
        if key in params:
            names.extend(n.strip() for n in params[key].split(",") if n.strip())
    return names
