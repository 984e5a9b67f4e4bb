"""Which compression a reranked response gets: the one the client's Accept-Encoding weighs highest.

Relayed responses are compressed by OpenSearch itself; the proxy makes the same choice for the
responses it writes: q-values decide, `q=0` refuses, a tie goes to gzip (as OpenSearch's Netty
prefers it), and `*` stands for any coding the client did not name. (OpenSearch answers a bare
`*` with snappy, which few clients decode; the proxy answers it with gzip.)

Example:
    >>> [response_encoding(h) for h in ("gzip, deflate", "gzip;q=0", "deflate", "*", "identity", "")]
    ['gzip', None, 'deflate', 'gzip', None, None]
"""

from __future__ import annotations

CODINGS = ("gzip", "deflate")  # in order of preference on equal q
ALIASES = {"x-gzip": "gzip"}


def response_encoding(accept_encoding: str) -> str | None:
    """'gzip', 'deflate' or None (send it plain) for an Accept-Encoding header value.

    Example:
        >>> response_encoding("gzip;q=0.5, deflate;q=1"), response_encoding("gzip;q=0, *"), response_encoding("br")
        ('deflate', 'deflate', None)
    """
    weights: dict[str, float] = {}
    for entry in accept_encoding.split(","):
        name, _, params = entry.partition(";")
        name = ALIASES.get(name.strip().lower(), name.strip().lower())
        if name:
            weights[name] = max(weights.get(name, 0.0), _quality(params))
    star = weights.get("*", 0.0)
    best, best_q = None, 0.0
    for coding in CODINGS:
        q = weights.get(coding, star)
        if q > best_q:
            best, best_q = coding, q
    return best


def _quality(params: str) -> float:
    """The q of one Accept-Encoding entry: 1 when absent, 0 when it does not parse (refuse, never guess)."""
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0
