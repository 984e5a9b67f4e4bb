"""The worker side of the model server: tokenize in this process, score in the model server.

`RemoteScorer` is a `TwoStageScorer` when given an encoder: `encode_pairs` runs this process's
own tokenizer (with its own document cache) and `score_encoded` sends the token ids to the
model server and waits for its scores. Any failure to reach the server is a `ScoringError`, so
the search falls back to BM25 order as on a local model failure; the next call reconnects. A
connection the server closed while idle (it restarted) is replaced before a request is sent on
it, so no search is lost to a restart that is already over.
"""

from __future__ import annotations

import itertools
import select
import socket
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from es_rerank.errors import ModelError, ScoringError
from es_rerank.proxy.model_server.frames import (ANSWER_HEAD, answer_body_size, parse_scores, read_exact,
                                                 request_frame)
from es_rerank.scoring.token_batches import EncodedPair, PackedPairs
from es_rerank.scoring.pair_encoding import PairEncoder

SERVER_HINT = "the proxy serves BM25 order meanwhile; see the model server's log (`serve` restarts it)"


class RemoteScorer:
    """Scores through a `ModelServer` listening on `socket_path`; safe to share between threads.

    One request is in flight per connection at a time: the proxy's scoring worker is one
    thread per process already, and the model server merges the workers' requests.
    """

    def __init__(self, socket_path: str, encoder: PairEncoder | None = None, timeout_s: float = 60.0) -> None:
        self.socket_path = socket_path
        self.encoder = encoder
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    @classmethod
    def load(cls, export_dir: str | Path, socket_path: str, timeout_s: float = 60.0) -> "RemoteScorer":
        """The export's tokenizer here, talking to the model server on `socket_path`.

        Example:
            >>> RemoteScorer.load("no/such/export", "model.sock")
            Traceback (most recent call last):
            ...
            es_rerank.errors.ModelError: export directory no/such/export does not exist (run `es-rerank export CHECKPOINT no/such/export` first)
        """
        from es_rerank.scoring.cross_encoder import load_encoder

        return cls(socket_path, load_encoder(Path(export_dir)), timeout_s)

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        return self.score_encoded(self.encode_pairs(queries, documents))

    def encode_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> PackedPairs:
        from es_rerank.scoring.cross_encoder import encode_for_scoring

        if self.encoder is None:
            raise ModelError("this RemoteScorer has no tokenizer", hint="make it with RemoteScorer.load(EXPORT, SOCKET)")
        return encode_for_scoring(self.encoder, queries, documents)

    def score_encoded(self, pairs: Sequence[EncodedPair]) -> np.ndarray:
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        request_id = next(self._ids)
        frame = request_frame(request_id, pairs)
        with self._lock:
            try:
                sock = self._connected()
                sock.sendall(frame)
                head = read_exact(sock, ANSWER_HEAD.size)
                if head is None:
                    raise ConnectionError("the model server closed the connection")
                answer_id, ok, n = ANSWER_HEAD.unpack(head)
                body = read_exact(sock, answer_body_size(ok, n)) or b""
            except (OSError, ScoringError) as exc:  # timeouts and a refused connection included
                self._drop()
                raise ScoringError(f"the model server at {self.socket_path} failed: {exc}", hint=SERVER_HINT) from exc
        if answer_id != request_id:
            self.close()
            raise ScoringError(f"the model server answered request {answer_id}, expected {request_id}",
                               hint=SERVER_HINT)
        if not ok:
            raise ScoringError(f"the model server could not score {len(pairs)} pairs: {body.decode(errors='replace')}",
                               hint=SERVER_HINT)
        if n != len(pairs):
            raise ScoringError(f"the model server sent {n} scores for {len(pairs)} pairs", hint=SERVER_HINT)
        return parse_scores(body, n)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> "RemoteScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _connected(self) -> socket.socket:
        if self._sock is not None and peer_closed(self._sock):
            self._drop()  # the model server restarted since: a request sent here would only meet EOF
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout_s)
            try:
                sock.connect(self.socket_path)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def peer_closed(sock: socket.socket) -> bool:
    """True when the other end has closed `sock` (EOF waiting); never blocks, never consumes data.

    Not a retry: a request is never sent twice, so an input that crashes the model server
    crashes it once.
    """
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset by the peer
        return True
