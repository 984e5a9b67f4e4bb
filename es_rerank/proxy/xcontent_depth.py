"""Nesting depth of the other body formats OpenSearch parses: YAML, CBOR and Smile (read whole).

OpenSearch parses these as it parses JSON, so a deep one can kill it the same way. CBOR's depth
is exact; YAML's and Smile's are upper bounds (never below the real depth), so the check errs on
the side of refusing, with a hint to send JSON.

Example:
    >>> body_format("application/x-ndjson"), body_format("application/yaml"), body_format("text/plain")
    ('json', 'yaml', None)
    >>> cbor_depth(bytes([0x81, 0x81, 0xA1, 0x61, 0x61, 0x80]))   # [[{"a": []}]]
    4
"""

from __future__ import annotations

import re

from es_rerank.proxy import limits

# A line's block-nesting prefix: indentation, then any `- `, `? ` or `: ` indicators of nested nodes.
_YAML_PREFIX = re.compile(rb"^[ \t]*(?:[-?:][ \t]+)*", re.MULTILINE)
_SMILE_OPENS = (0xF8, 0xFA)  # start-array, start-object


def body_format(content_type: str) -> str | None:
    """Which parser OpenSearch runs on a body of this type: 'json' (also NDJSON and a missing type),
    'yaml', 'cbor', 'smile', or None for a type it refuses without parsing."""
    kind = content_type.lower()
    for name in ("yaml", "cbor", "smile"):
        if name in kind:
            return name
    return "json" if not kind.strip() or "json" in kind else None


def depth_bound(body: bytes, fmt: str) -> int:
    """The nesting depth (or an upper bound of it) of a whole YAML, CBOR or Smile body.

    Example:
        >>> depth_bound(b"a:\\n  b:\\n    - [1, {c: 2}]\\n", "yaml") >= 5
        True
    """
    if fmt == "yaml":
        return yaml_depth_bound(body)
    if fmt == "cbor":
        return cbor_depth(body)
    return sum(body.count(bytes([marker])) for marker in _SMILE_OPENS)  # every container opened, closed or not


def yaml_depth_bound(body: bytes) -> int:
    """An upper bound of a YAML body's depth: the larger of the parser's own count and a character count.

    The parser's events (no document is built) count nesting exactly wherever the body is valid
    YAML, quoted scalars included (a `"` inside `'...'` is text, not a string's start). The
    character count covers what the parser stops at: block nesting costs a character of
    indentation or an indicator per level, flow nesting a bracket.

    Example:
        >>> yaml_depth_bound(b"query:\\n  match:\\n    text: wing\\n")
        5
        >>> yaml_depth_bound(b"'\\"': [[[]]]\\n") >= 4
        True
    """
    block = max((len(match.group()) for match in _YAML_PREFIX.finditer(body)), default=0)
    scanner = limits.JsonDepthScanner()
    scanner.feed(body)
    return max(block + 1 + scanner.deepest, yaml_event_depth(body))


def yaml_event_depth(body: bytes) -> int:
    """The deepest nesting of mappings and sequences the YAML parser reports before the body ends or
    stops parsing; iterative (a deep body cannot exhaust the stack) and builds nothing.

    Example:
        >>> yaml_event_depth(b"a: [1, {b: [2]}]\\n"), yaml_event_depth(b"[[[ broken")
        (4, 3)
    """
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when the wheel has it
    depth = deepest = 0
    try:
        for event in yaml.parse(body, Loader=loader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                deepest = max(deepest, depth)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        pass  # invalid from here on: what was parsed so far still counts
    return deepest


def cbor_depth(body: bytes) -> int:
    """Nesting depth of CBOR data items (arrays, maps, indefinite strings); stops at the first malformed byte.

    Example:
        >>> cbor_depth(bytes([0x9F, 0x9F, 0xFF, 0xFF])), cbor_depth(bytes([0x83, 1, 2, 3]))
        (2, 1)
    """
    remaining: list[int | None] = []  # items left in each open container; None: until a break
    deepest = 0
    index, size = 0, len(body)
    while index < size:
        initial = body[index]
        index += 1
        if initial == 0xFF:  # break: closes the innermost indefinite container
            if not remaining or remaining[-1] is not None:
                break
            remaining.pop()
            _item_done(remaining)
            continue
        major, info = initial >> 5, initial & 31
        if info < 24:
            argument = info
        elif info <= 27:
            width = 1 << (info - 24)
            argument = int.from_bytes(body[index:index + width], "big")
            index += width
        elif info == 31 and major in (2, 3, 4, 5):
            argument = None
        else:
            break  # reserved or malformed: OpenSearch fails on it before going deeper
        if major in (2, 3) and argument is not None:
            index += argument
            _item_done(remaining)
        elif major in (2, 3, 4, 5):
            count = None if argument is None else argument * (2 if major == 5 else 1)
            deepest = max(deepest, len(remaining) + 1)  # an empty container is a level too, as in JSON
            if count == 0:
                _item_done(remaining)
                continue
            remaining.append(count)
        elif major != 6:  # a tag's item is the next one
            _item_done(remaining)
    return deepest


def _item_done(remaining: list[int | None]) -> None:
    """One item ended: count it in its container, closing every container it completes."""
    while remaining and remaining[-1] is not None:
        remaining[-1] -= 1
        if remaining[-1] > 0:
            return
        remaining.pop()
