"""rawjson: what the proxy does not change comes out as the text it came in (issue 14 item 4)."""

import gc
import json

from hypothesis import given, settings, strategies as st

from es_rerank.proxy.rawjson import (DEFERRED_HITS_SHAPE, NotSpliceable, dump_keeping_raw, opened,
                                     parse_keeping_raw)

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                      max_leaves=20)
LITERALS = st.sampled_from(["1e400", "-1E-400", "0.10000000000000000001", "1E2", "-0", "-0.0", "1.50",
                            "123456789012345678901234567890", '"\\u00e9\\/"', '"\\ud800"'])


@settings(max_examples=300, deadline=None)
@given(hits=st.lists(st.tuples(VALUES, LITERALS), max_size=5), extra=VALUES)
def test_a_response_round_trips_byte_for_byte(hits, extra):
    hit_texts = [f'{{"_id":"{k}","_score":1.5,"_source":{{"v":{json.dumps(v, separators=(",", ":"))},"n":{lit}}},'
                 f'"sort":[{lit}]}}' for k, (v, lit) in enumerate(hits)]
    text = f'{{"took":3,"x":{json.dumps(extra, separators=(",", ":"))},"hits":{{"hits":[{",".join(hit_texts)}]}}}}'
    response, raw = parse_keeping_raw(text.encode("utf-8", "surrogatepass"))
    page = {**response, "hits": {**response["hits"], "hits": [dict(h) for h in response["hits"]["hits"][::-1]]}}
    expected = f'{{"took":3,"x":{json.dumps(extra, separators=(",", ":"))},"hits":{{"hits":[{",".join(hit_texts[::-1])}]}}}}'
    assert dump_keeping_raw(page, raw) == expected.encode("utf-8", "surrogatepass")


@settings(max_examples=300, deadline=None)
@given(hits=st.lists(st.tuples(VALUES, LITERALS), max_size=5), extra=VALUES, served=st.data())
def test_deferred_hits_opened_for_the_page_round_trip_byte_for_byte(hits, extra, served):
    hit_texts = [f'{{"_id":"{k}","_score":1.5,"_source":{{"v":{json.dumps(v, separators=(",", ":"))},"n":{lit}}},'
                 f'"fields":{{"f":[{lit}]}},"sort":[{lit}]}}' for k, (v, lit) in enumerate(hits)]
    text = f'{{"took":3,"x":{json.dumps(extra, separators=(",", ":"))},"hits":{{"hits":[{",".join(hit_texts)}]}}}}'
    body = text.encode("utf-8", "surrogatepass")
    response, raw = parse_keeping_raw(body, DEFERRED_HITS_SHAPE)
    assert response == parse_keeping_raw(body)[0]  # the same values as a parse that walks every hit
    order = served.draw(st.permutations(range(len(hits))))
    page_hits = []
    for k in order:  # as the page is built: a copy of the opened hit, fields rebuilt without one name
        hit = dict(opened(response["hits"]["hits"][k], raw))
        hit["fields"] = {**hit["fields"]}
        page_hits.append(hit)
    page = {**response, "hits": {**response["hits"], "hits": page_hits}}
    expected = f'{{"took":3,"x":{json.dumps(extra, separators=(",", ":"))},"hits":{{"hits":[{",".join(hit_texts[k] for k in order)}]}}}}'
    assert dump_keeping_raw(page, raw) == expected.encode("utf-8", "surrogatepass")


def test_a_key_repeated_in_a_deferred_hit_is_refused_when_the_hit_is_opened():
    response, raw = parse_keeping_raw(b'{"hits":{"hits":[{"_id":"a"},{"_id":"b","_id":"c"}]}}', DEFERRED_HITS_SHAPE)
    first, second = response["hits"]["hits"]
    assert opened(first, raw) == {"_id": "a"}
    try:
        opened(second, raw)
    except NotSpliceable as exc:
        assert "'_id' repeats" in str(exc)
    else:
        raise AssertionError("a hit whose key repeats must not be spliced")


def test_a_new_object_never_takes_the_text_of_a_dead_one():
    response, raw = parse_keeping_raw(b'{"hits":{"hits":[]},"ext":{"rerank":{"window":9}}}')
    del response
    gc.collect()
    fresh = [{"from": 0} for _ in range(1000)]  # new objects reuse freed ids; none may be written as old text
    assert all(dump_keeping_raw(value, raw) == b'{"from":0}' for value in fresh)


def test_a_repeated_key_is_refused():
    try:
        parse_keeping_raw(b'{"hits":{"hits":[],"hits":[]}}')
    except ValueError as exc:
        assert "repeats" in str(exc)
    else:
        raise AssertionError("a repeated key must not be spliced")


@settings(max_examples=300, deadline=None)
@given(hits=st.lists(st.dictionaries(st.text(), VALUES, max_size=4), max_size=4), extra=VALUES,
       indent=st.sampled_from([None, 0, 2]), separators=st.sampled_from([(",", ":"), (" , ", " : "), (",\n", ":\t")]))
def test_any_layout_parses_as_json_does_and_keeps_each_value_s_own_text(hits, extra, indent, separators):
    # Keys of any text (escapes, control characters written escaped) and whitespace around every token.
    response = {"took": 1, "x": extra, "hits": {"hits": [{"_id": str(k), "_source": s, "fields": {"f": s}}
                                                          for k, s in enumerate(hits)]}}
    text = json.dumps(response, indent=indent, separators=separators)
    parsed, raw = parse_keeping_raw(text.encode("utf-8", "surrogatepass"))
    assert parsed == json.loads(text)
    deferred, deferred_raw = parse_keeping_raw(text.encode("utf-8", "surrogatepass"), DEFERRED_HITS_SHAPE)
    assert deferred == parsed and [opened(hit, deferred_raw) for hit in deferred["hits"]["hits"]] == parsed["hits"]["hits"]
    for value, kept, *_ in (*raw.values(), *deferred_raw.values()):
        assert json.loads(kept) == value
