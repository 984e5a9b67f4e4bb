"""JSON in and out of bytes: orjson when installed (the serve extra), the standard library otherwise.

Example:
    >>> loads(b'{"a": [1, 2]}')
    {'a': [1, 2]}
    >>> dumps({"a": 1})
    b'{"a":1}'
"""

from __future__ import annotations

import json

try:
    import orjson
except ImportError:  # the GPU image may lack orjson; correctness does not depend on it
    orjson = None


class TooDeep(ValueError):
    """JSON nested deeper than the parser can follow: refuse it, never relay it (deep queries crash OpenSearch)."""


def loads(data: bytes | str):
    """Parse JSON as OpenSearch would accept it; raise ValueError on bad input, TooDeep on too deep nesting.

    `NaN` and `Infinity` are refused, as OpenSearch refuses them.

    Example:
        >>> loads(b"[" * 100000)
        Traceback (most recent call last):
        ...
        es_rerank.proxy.jsonio.TooDeep: JSON nested too deeply to parse
        >>> loads(b'{"min_score": NaN}')
        Traceback (most recent call last):
        ...
        ValueError: NaN is not valid JSON
    """
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # orjson refuses some valid JSON (integers above 64 bits); let json decide
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise TooDeep("JSON nested too deeply to parse") from exc


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def has_duplicate_keys(data: bytes | str) -> bool:
    """True when some JSON object repeats a key (OpenSearch refuses such bodies; a parser keeps the last).

    Example:
        >>> has_duplicate_keys(b'{"a": {"b": 1, "b": 2}}'), has_duplicate_keys(b'{"a": 1, "b": {"a": 2}}')
        (True, False)
    """
    found = []

    def check(pairs):
        if len({key for key, _ in pairs}) != len(pairs):
            found.append(True)
        return None  # the values are not needed

    try:
        json.loads(data, object_pairs_hook=check)
    except (ValueError, RecursionError):
        return False  # not parsable at all: the caller has its own answer for that
    return bool(found)


def dumps(value, pretty: bool = False) -> bytes:
    """Serialise to compact UTF-8 JSON bytes (indented when `pretty`).

    Example:
        >>> dumps({"a": 1}, pretty=True)
        b'{\\n  "a": 1\\n}'
        >>> dumps({"q": "gene \\ud800"})
        b'{"q":"gene \\\\ud800"}'
    """
    if orjson is not None:
        try:
            return orjson.dumps(value, option=orjson.OPT_INDENT_2 if pretty else 0)
        except TypeError:
            pass  # integers above 64 bits: fall through to json
    separators = None if pretty else (",", ":")
    text = json.dumps(value, ensure_ascii=False, indent=2 if pretty else None, separators=separators)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (sent as "\\ud800"): keep it escaped, as the client sent it
        return json.dumps(value, ensure_ascii=True, indent=2 if pretty else None, separators=separators).encode()
