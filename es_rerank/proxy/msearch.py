"""`_msearch` bodies: the (header, body) line pairs, each search's target, and the body sent upstream.

The proxy reranks each search of an `_msearch` that `_search` would rerank: it plans each one as
the `_search` it stands for (`as_search`), asks OpenSearch for all the windows in one `_msearch`
(`upstream_body`), and scores the windows together. Header lines go upstream exactly as sent; a
body line is replaced only where the proxy rewrote that search (its window, `ext.rerank` taken
out). A body it cannot read line by line (no final newline, a blank or non-object line) is relayed
whole, for OpenSearch to answer.

Example:
    >>> pairs = msearch_pairs(b'{"index": "docs"}\\n{"query": {"match_all": {}}}\\n{}\\n{"size": 1}\\n')
    >>> [search_index(header, "_all") for header, _ in pairs]
    ['docs', '_all']
    >>> upstream_body(pairs, [None, b'{"size":5}'])
    b'{"index": "docs"}\\n{"query": {"match_all": {}}}\\n{}\\n{"size":5}\\n'
"""

from __future__ import annotations

from urllib.parse import quote

from es_rerank.proxy.jsonio import loads

Pair = tuple[bytes, bytes]  # (header line, body line), without their newlines


def msearch_pairs(body: bytes) -> list[Pair] | None:
    """The (header, body) lines of an `_msearch` body, or None when it is not plain pairs of JSON objects.

    Example:
        >>> msearch_pairs(b'{}\\n{"size": 2}\\n'), msearch_pairs(b'{}\\n{"size": 2}'), msearch_pairs(b'{}\\n\\n')
        ([(b'{}', b'{"size": 2}')], None, None)
    """
    if not body.endswith(b"\n"):
        return None
    lines = body[:-1].split(b"\n")
    if len(lines) % 2 or any(not line.strip().startswith(b"{") for line in lines):
        return None
    return [(lines[k], lines[k + 1]) for k in range(0, len(lines), 2)]


def search_index(header_line: bytes, default: str) -> str | None:
    """The index expression (URL-encoded, as in a path) one search of an `_msearch` targets, or None if unreadable.

    The header's `index` (a name or a list of names) wins over the path's.

    Example:
        >>> search_index(b'{"index": ["a", "<logs-{now/d}>"]}', "_all"), search_index(b'{}', "docs")
        ('a,%3Clogs-%7Bnow%2Fd%7D%3E', 'docs')
    """
    try:
        header = loads(header_line)
    except ValueError:
        return None
    if not isinstance(header, dict):
        return None
    index = header.get("index")
    if index is None:
        return default
    names = [index] if isinstance(index, str) else index
    if not isinstance(names, list) or not names or not all(isinstance(name, str) and name for name in names):
        return None
    return ",".join(quote(name, safe="*-_.") for name in names)


def as_search(index: str) -> str:
    """The `_search` path one search of an `_msearch` stands for.

    Example:
        >>> as_search("docs")
        '/docs/_search'
    """
    return f"/{index}/_search"


def upstream_body(pairs: list[Pair], bodies: list[bytes | None]) -> bytes:
    """The NDJSON sent upstream: each header as sent, each body as sent or as the proxy rewrote it."""
    lines = []
    for (header, body), rewritten in zip(pairs, bodies):
        lines += [header, body if rewritten is None else rewritten]
    return b"\n".join(lines) + b"\n"
