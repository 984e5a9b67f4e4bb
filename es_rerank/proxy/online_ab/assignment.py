"""Which arm a search goes to: a deterministic function of a user or session key.

The key comes from a configurable request header (a user id, a session cookie value) and falls
back to the client address. The same key always lands in the same arm, on every replica and
after restarts, because the arm depends only on a hash of the experiment name and the key.
The decision log never sees the key itself, only a keyed hash of it (`pseudonym`).

Example:
    >>> config = OnlineAbConfig(split=0.5, key_header="X-Session")
    >>> decide(config, {"x-session": "user-42"}, "10.0.0.7").variant in ("bm25", "rerank")
    True
    >>> decide(config, {"X-Session": "user-42"}, "10.0.0.9") == decide(config, {"x-session": "user-42"}, "10.0.0.7")
    True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from es_rerank.evaluation.protocol import BM25, INTERLEAVE, RERANK
from es_rerank.errors import ConfigError

MODES = ("split", "interleave")
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class OnlineAbConfig:
    """Online A/B settings of one proxy (`--ab-split`, `--ab-mode`, ...), plain data.

    `split` is the share of keys in the treatment arm: `rerank` in split mode, an interleaved
    list in interleave mode; the rest get plain BM25. `secret` keys the pseudonyms in the logs;
    keep it private so that hashed client addresses cannot be reversed by trying them all.
    """

    split: float
    mode: str = "split"
    key_header: str | None = None
    experiment: str = "es-rerank-ab"
    log_path: Path | None = None            # decision log
    events_path: Path | None = None         # click events; None: into the decision log
    log_query_text: bool = False
    secret: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.split, bool) or not isinstance(self.split, (int, float)) or not 0.0 <= self.split <= 1.0:
            raise ConfigError(f"--ab-split must be a fraction between 0 and 1, got {self.split!r}",
                              hint="e.g. --ab-split 0.5 sends half of the users to the reranked arm")
        if self.mode not in MODES:
            raise ConfigError(f"--ab-mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.experiment:
            raise ConfigError("the experiment name must not be empty", hint="it salts the assignment hash")

    @property
    def treatment(self) -> str:
        return INTERLEAVE if self.mode == "interleave" else RERANK


@dataclass(frozen=True)
class Decision:
    """The arm of one search and the pseudonymous key it was decided on."""

    variant: str
    key_hash: str


def bucket(key: str, experiment: str) -> float:
    """A uniform number in [0, 1) fixed by (experiment, key); a new experiment name reshuffles.

    Example:
        >>> bucket("user-42", "exp") == bucket("user-42", "exp")
        True
        >>> 0.0 <= bucket("user-42", "exp") < 1.0
        True
    """
    digest = hashlib.sha256(f"{experiment}\x00{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def assign(key: str, split: float, experiment: str, treatment: str = RERANK) -> str:
    """`treatment` for the first `split` share of keys, `bm25` for the others.

    Example:
        >>> assign("any", 1.0, "exp"), assign("any", 0.0, "exp")
        ('rerank', 'bm25')
    """
    return treatment if bucket(key, experiment) < split else BM25


def request_key(headers: Mapping[str, str], peer: str | None, key_header: str | None) -> str:
    """The assignment key: the configured header's value, else the client address.

    Header names match case-insensitively; for `X-Forwarded-For` the first address (the
    original client) is used.

    Example:
        >>> request_key({"X-Forwarded-For": "203.0.113.9, 10.0.0.1"}, "10.0.0.1", "x-forwarded-for")
        '203.0.113.9'
        >>> request_key({}, "10.0.0.7", "X-User")
        '10.0.0.7'
    """
    if key_header:
        value = _header(headers, key_header)
        if value is not None and value.strip():
            value = value.strip()
            if key_header.lower() == "x-forwarded-for":
                value = value.split(",")[0].strip()
            return value
    return peer or ANONYMOUS


def pseudonym(key: str, secret: str) -> str:
    """A keyed hash of `key` for the logs (keyed BLAKE2b, 128 bits, hex).

    Example:
        >>> len(pseudonym("10.0.0.7", "s3cret")), pseudonym("a", "s") == pseudonym("a", "s")
        (32, True)
        >>> pseudonym("a", "s") != pseudonym("a", "t")
        True
    """
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16, key=secret.encode("utf-8")[:64]).hexdigest()


def decide(config: OnlineAbConfig, headers: Mapping[str, str], peer: str | None) -> Decision:
    """The arm for one request and the pseudonym to log with it."""
    key = request_key(headers, peer, config.key_header)
    return Decision(assign(key, config.split, config.experiment, config.treatment), pseudonym(key, config.secret))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for header, header_value in headers.items():
        if header.lower() == lowered:
            return header_value
    return None
