"""The wire format between HTTP workers and the model server: token ids in, scores out, over a Unix socket.

Frames are little-endian. A request is `u64 id, u32 pairs, u32 tokens`, then `int32 lengths[pairs]`,
`int32 ids[tokens]` and `int32 type_ids[tokens]`. An answer is `u64 id, u8 ok, u32 n`, then
`float32 scores[n]` when ok, else `n` bytes of UTF-8 error text. A top-100 window at 256 tokens is
about 200 KB: copying it over a local socket costs far less than the JSON the worker parsed.

Example:
    >>> frame = request_frame(7, [EncodedPair([101, 5, 102], [0, 0, 0]), EncodedPair([101, 102], [0, 1])])
    >>> request_id, count, tokens = REQUEST_HEAD.unpack(frame[:REQUEST_HEAD.size])
    >>> pairs = parse_request(frame[REQUEST_HEAD.size:], count, tokens)
    >>> request_id, [p.ids.tolist() for p in pairs], pairs[1].type_ids.tolist()
    (7, [[101, 5, 102], [101, 102]], [0, 1])
"""

from __future__ import annotations

import socket
import struct
from typing import Sequence

import numpy as np

from es_rerank.errors import ScoringError
from es_rerank.scoring.token_batches import EncodedPair, PackedPairs

REQUEST_HEAD = struct.Struct("<QII")
ANSWER_HEAD = struct.Struct("<QBI")
# Bounds on one frame, far above any window (1,000 pairs x 512 tokens), so a corrupt header
# cannot make the reader allocate gigabytes.
MAX_PAIRS = 1 << 16
MAX_TOKENS = 1 << 25
MAX_ERROR_BYTES = 1 << 16


def request_frame(request_id: int, pairs: Sequence[EncodedPair]) -> bytes:
    """One request: the pairs' lengths, then all ids and all type ids end to end."""
    packed = PackedPairs.of(pairs)
    head = REQUEST_HEAD.pack(request_id, len(packed), len(packed.ids))
    return b"".join((head, packed.lengths.astype("<i4").tobytes(), packed.ids.astype("<i4", copy=False).tobytes(),
                     packed.type_ids.astype("<i4", copy=False).tobytes()))


def parse_request(body: bytes, pairs: int, tokens: int) -> PackedPairs:
    """The pairs of a request body whose header said `pairs` and `tokens` (views, no copies).

    Raises ScoringError when the lengths do not add up: the sender and this reader disagree.
    """
    lengths = np.frombuffer(body, dtype="<i4", count=pairs)
    ids = np.frombuffer(body, dtype="<i4", count=tokens, offset=4 * pairs)
    types = np.frombuffer(body, dtype="<i4", count=tokens, offset=4 * (pairs + tokens))
    if (lengths < 1).any() or int(lengths.sum()) != tokens:
        raise ScoringError("malformed request frame: its pair lengths do not add up to its token count",
                           hint="workers and the model server must be the same es-rerank version")
    return PackedPairs(ids, types, lengths)


def request_body_size(pairs: int, tokens: int) -> int:
    """Bytes after the header of a request with `pairs` pairs and `tokens` tokens; refuses absurd sizes.

    Example:
        >>> request_body_size(2, 5)
        48
    """
    if pairs > MAX_PAIRS or tokens > MAX_TOKENS:
        raise ScoringError(f"request frame of {pairs} pairs and {tokens} tokens is over the limits "
                           f"({MAX_PAIRS} pairs, {MAX_TOKENS} tokens)",
                           hint="workers and the model server must be the same es-rerank version")
    return 4 * pairs + 8 * tokens


def scores_frame(request_id: int, scores: np.ndarray) -> bytes:
    """An ok answer.

    Example:
        >>> frame = scores_frame(3, np.array([0.5, 1.0], dtype=np.float32))
        >>> ANSWER_HEAD.unpack(frame[:ANSWER_HEAD.size]), parse_scores(frame[ANSWER_HEAD.size:], 2).tolist()
        ((3, 1, 2), [0.5, 1.0])
    """
    scores = np.asarray(scores, dtype="<f4")
    return ANSWER_HEAD.pack(request_id, 1, len(scores)) + scores.tobytes()


def error_frame(request_id: int, message: str) -> bytes:
    """A failed answer carrying `message` (cut to `MAX_ERROR_BYTES`).

    Example:
        >>> ANSWER_HEAD.unpack(error_frame(3, "no")[:ANSWER_HEAD.size])
        (3, 0, 2)
    """
    text = message.encode("utf-8", errors="replace")[:MAX_ERROR_BYTES]
    return ANSWER_HEAD.pack(request_id, 0, len(text)) + text


def answer_body_size(ok: int, n: int) -> int:
    """Bytes after the header of an answer; refuses absurd sizes."""
    if (ok and n > MAX_PAIRS) or (not ok and n > MAX_ERROR_BYTES):
        raise ScoringError(f"answer frame of {n} {'scores' if ok else 'error bytes'} is over the limits",
                           hint="workers and the model server must be the same es-rerank version")
    return 4 * n if ok else n


def parse_scores(body: bytes, n: int) -> np.ndarray:
    """The float32 scores of an ok answer's body (a copy the caller owns)."""
    return np.frombuffer(body, dtype="<f4", count=n).astype(np.float32)


def read_exact(sock: socket.socket, size: int) -> bytes | None:
    """`size` bytes from `sock`, or None when the peer closed before sending the first of them.

    Raises ConnectionError when it closes in the middle.
    """
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            if got == 0:
                return None
            raise ConnectionError(f"the peer closed the socket after {got} of {size} bytes")
        got += n
    return bytes(buffer)
