"""Search responses parsed with the raw text of each value kept, and written back splicing that text.

The proxy reorders hits and changes their scores; everything else must come out byte for byte as
OpenSearch sent it. A parse and re-serialise does not do that: `1e400` would become `Infinity`
(invalid JSON), `0.10000000000000000001` would become `0.1`. So `parse_keeping_raw` records the
text of every value below the objects the proxy rebuilds (`RESPONSE_SHAPE`), and `dump_keeping_raw`
writes that text back wherever the same value object is served again; only what the proxy made
itself (the new scores, `_rerank`) is serialised. `pretty` writes OpenSearch's layout (`"k" : v`),
which is what the spliced text already has when OpenSearch was asked for `?pretty` too.

A `_search` response's hits are `Deferred`: each is scanned whole (one call of the C scanner) and
kept as its text, and walked only when `opened` is asked for it, so the 90 of a top-100 window
that are not served cost no walk at all. The page is built from opened hits.

Example:
    >>> body = b'{"took":1,"hits":{"hits":[{"_id":"a","_score":2.0,"_source":{"n":1e400,"p":1E2}}]}}'
    >>> response, raw = parse_keeping_raw(body)
    >>> hit = dict(response["hits"]["hits"][0], _score=0.5)
    >>> dump_keeping_raw({**response, "hits": {"hits": [hit]}}, raw)
    b'{"took":1,"hits":{"hits":[{"_id":"a","_score":0.5,"_source":{"n":1e400,"p":1E2}}]}}'
    >>> print(dump_keeping_raw({"a": [], "b": {"c": [1, {}]}}, {}, pretty=True).decode(), end="")
    {
      "a" : [ ],
      "b" : {
        "c" : [
          1,
          { }
        ]
      }
    }
"""

from __future__ import annotations

import json
import math
import re
from typing import Mapping


class Deferred:
    """In a shape: an object scanned whole and kept as its text at parse time, walked with `shape`
    when `opened`."""

    __slots__ = ("shape",)

    def __init__(self, shape: dict):
        self.shape = shape


class NotSpliceable(ValueError):
    """The text cannot be spliced back as it came (a key repeats where the proxy rebuilds objects)."""


# The objects the proxy rebuilds (the response, `hits`, each hit, a hit's `fields`); below them
# every value is served as the text OpenSearch sent.
RESPONSE_SHAPE: dict = {"hits": {"hits": [{"fields": {}}]}}
# The same, each hit walked only when it is served (`opened`).
DEFERRED_HITS_SHAPE: dict = {"hits": {"hits": [Deferred({"fields": {}})]}}
# Values whose text is kept: containers, floats and strings (small ints and constants are shared
# objects, and their text is their repr anyway). The map holds each value itself too: an id alone
# could be reused by a new object once the parsed one is gone.
_KEPT_TYPES = (dict, list, float, str)
RawText = dict  # id(value) -> (value, its text as sent), and the shape to open it with when Deferred
_KEY_TEXTS: dict[str, str] = {}  # key -> its JSON text, for the keys written most (see _key_text)
_MAX_KEY_TEXTS = 512


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")  # as OpenSearch refuses NaN and Infinity


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_SCAN = _DECODER.scan_once  # type: ignore[attr-defined]  # set by JSONDecoder.__init__, not in its stub
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_WHITESPACE_CHARS = " \t\n\r"
# A key without escapes or control characters, its colon and the whitespace around it, in one match:
# one regex call per key instead of four Python steps (most keys of a search response are plain).
_PLAIN_KEY = re.compile(r'"([^"\\\x00-\x1f]*)"[ \t\n\r]*:[ \t\n\r]*')


def parse_keeping_raw(body: bytes, shape=RESPONSE_SHAPE) -> tuple[object, RawText]:
    """The parsed response, and the raw text of each value below `shape`, by the value's id.

    Raises ValueError on invalid JSON, on a key repeated in an object of `shape`, and on nesting
    too deep to parse (the caller then has a plain answer of its own).

    Example:
        >>> value, raw = parse_keeping_raw(b'{"hits": {"total": {"value": 1}, "x": 0.10000000000000000001}}')
        >>> raw[id(value["hits"]["x"])][1], value["hits"]["x"]
        ('0.10000000000000000001', 0.1)
    """
    try:
        text = body.decode("utf-8")
        raw: RawText = {}
        value, end = _walk(text, _skip(text, 0), shape, raw)
    except (UnicodeDecodeError, RecursionError, IndexError) as exc:
        raise ValueError(f"response is not JSON the proxy can splice: {type(exc).__name__}") from None
    if _skip(text, end) != len(text):
        raise ValueError("response has data after its JSON value")
    return value, raw


def _skip(text: str, index: int) -> int:
    if index < len(text) and text[index] not in _WHITESPACE_CHARS:
        return index  # compact JSON: no whitespace to skip, so no regex call
    return _WHITESPACE.match(text, index).end()


def _walk(text: str, index: int, shape, raw: RawText):
    """Parse the value at `index`; descend into `shape`, decode (and keep the text of) what lies below it."""
    if isinstance(shape, dict) and text[index] == "{":
        return _walk_object(text, index, shape, raw)
    if isinstance(shape, list) and text[index] == "[":
        return _walk_array(text, index, shape[0], raw)
    value, end = _scan(text, index, raw)
    if isinstance(shape, Deferred) and isinstance(value, dict):
        raw[id(value)] = (value, raw[id(value)][1], shape.shape)
    return value, end


def opened(value, raw: RawText):
    """A `Deferred` object walked with its shape, its values' texts added to `raw`; any other value as it is.

    Raises NotSpliceable where the walk finds a key repeated (the parse scanned it whole, keeping the last).

    Example:
        >>> response, raw = parse_keeping_raw(b'{"hits":{"hits":[{"_id":"a","_source":{"n":1e400}}]}}', DEFERRED_HITS_SHAPE)
        >>> hit = opened(response["hits"]["hits"][0], raw)
        >>> dump_keeping_raw(dict(hit, _score=0.5), raw)
        b'{"_id":"a","_source":{"n":1e400},"_score":0.5}'
        >>> opened(hit, raw) is hit
        True
    """
    kept = raw.get(id(value))
    if kept is None or kept[0] is not value or len(kept) < 3:
        return value
    walked, _ = _walk(kept[1], 0, kept[2], raw)  # the kept text starts at the object's own brace
    return walked


def _scan(text: str, index: int, raw: RawText):
    """Decode the value at `index` whole, keeping its text."""
    try:
        value, end = _SCAN(text, index)  # the C scanner under raw_decode, without its Python frame
    except StopIteration:
        raise ValueError(f"expected a value at character {index}") from None
    if isinstance(value, _KEPT_TYPES):
        raw[id(value)] = (value, text[index:end])
    return value, end


def _walk_object(text: str, index: int, shape: dict, raw: RawText):
    out: dict = {}
    index = _skip(text, index + 1)
    if text[index] == "}":
        return out, index + 1
    while True:
        plain = _PLAIN_KEY.match(text, index)
        if plain is not None:
            key, index = plain.group(1), plain.end()
        else:
            if text[index] != '"':
                raise ValueError(f"expected a key at character {index}")
            key, index = _DECODER.raw_decode(text, index)
            index = _skip(text, index)
            if text[index] != ":":
                raise ValueError(f"expected ':' at character {index}")
            index = _skip(text, index + 1)
        below = shape.get(key)
        # most keys (a hit's _source, _id) lie below the shape: scanned whole, without _walk's checks
        value, index = _scan(text, index, raw) if below is None else _walk(text, index, below, raw)
        if key in out:
            raise NotSpliceable(f"key {key!r} repeats in one object")
        out[key] = value
        if text[index] == ",":  # compact JSON: the next key follows at once
            index += 1
            if text[index] in _WHITESPACE_CHARS:
                index = _WHITESPACE.match(text, index).end()
            continue
        index = _skip(text, index)
        if text[index] == "}":
            return out, index + 1
        if text[index] != ",":
            raise ValueError(f"expected ',' or '}}' at character {index}")
        index = _skip(text, index + 1)


def _walk_array(text: str, index: int, shape, raw: RawText):
    out: list = []
    index = _skip(text, index + 1)
    if text[index] == "]":
        return out, index + 1
    while True:
        value, index = _walk(text, index, shape, raw)
        out.append(value)
        index = _skip(text, index)
        if text[index] == "]":
            return out, index + 1
        if text[index] != ",":
            raise ValueError(f"expected ',' or ']' at character {index}")
        index = _skip(text, index + 1)


def dump_keeping_raw(value, raw: Mapping, pretty: bool = False) -> bytes:
    """UTF-8 JSON of `value`, writing the kept text for every value object found in `raw`.

    Compact, or with `pretty` in OpenSearch's layout (two-space indent, `"k" : v`, `[ ]`, `{ }`,
    a final newline). A float the proxy made that is not finite is written as null.

    Example:
        >>> dump_keeping_raw({"s": 0.25, "t": float("nan"), "u": "é"}, {})
        b'{"s":0.25,"t":null,"u":"\\xc3\\xa9"}'
    """
    out: list[str] = []
    _emit(value, raw, out, 0 if pretty else None)
    if pretty:
        out.append("\n")
    return "".join(out).encode("utf-8", "surrogatepass")


def _emit(value, raw: Mapping, out: list[str], depth: int | None) -> None:
    kept = raw.get(id(value))
    if kept is not None and kept[0] is value:
        out.append(kept[1])
    elif isinstance(value, dict):
        _emit_items(value.items(), "{", "}", raw, out, depth)
    elif isinstance(value, (list, tuple)):
        _emit_items(((None, item) for item in value), "[", "]", raw, out, depth)
    elif isinstance(value, float) and not math.isfinite(value):
        out.append("null")
    else:
        out.append(json.dumps(value, ensure_ascii=False))


def _key_text(key: str) -> str:
    """A key as JSON text; the few keys of the rebuilt objects (`_id`, `_score`, ...) are encoded
    once each, the first hundreds of distinct keys kept (a response's own keys are unbounded).

    Example:
        >>> _key_text("_id"), _key_text("é")
        ('"_id"', '"é"')
    """
    text = _KEY_TEXTS.get(key)
    if text is None:
        text = json.dumps(key, ensure_ascii=False)
        if len(_KEY_TEXTS) < _MAX_KEY_TEXTS:
            _KEY_TEXTS[key] = text
    return text


def _emit_items(items, opening: str, closing: str, raw: Mapping, out: list[str], depth: int | None) -> None:
    out.append(opening)
    inner = None if depth is None else depth + 1
    count = 0
    for key, item in items:
        if count:
            out.append(",")
        if inner is not None:
            out.append("\n" + "  " * inner)
        if key is not None:
            out.append(_key_text(key))
            out.append(":" if depth is None else " : ")
        _emit(item, raw, out, inner)
        count += 1
    if depth is not None:
        out.append(("\n" + "  " * depth) if count else " ")
    out.append(closing)
