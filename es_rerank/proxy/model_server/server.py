"""The model server: one process owns the model and scores, for every HTTP worker, the token ids they send.

Why a process of its own on a Unix socket, and not Triton or shared memory: the GPU wants one
large run at a time fed from every worker, while JSON and tokenizing want every core. A frame
of token ids is small next to the upstream response the worker has already parsed, copying it
takes microseconds, a crashed worker takes nothing else down, and the proxy needs nothing it
does not already ship. Triton's ORT backend would batch too, but it would add a server binary
to install, and it takes padded tensors, so it would put back the padding cost removed here.

The scheduler takes every request waiting (up to `gather_tokens` real tokens), sorts all their
pairs by length together and runs them in batches of at most `batch_tokens` padded tokens
(the scorer's own `batch_by_length`), so one worker's short pairs share runs with the others'
short pairs instead of being padded to long ones.

Example:
    >>> class Length:   # any scorer with score_encoded works; serve uses OnnxScorer
    ...     def score_encoded(self, pairs):
    ...         return np.array([len(p) for p in pairs], dtype=np.float32)
    >>> import tempfile, os
    >>> with ModelServer(Length(), os.path.join(tempfile.mkdtemp(), "m.sock")) as server:
    ...     with RemoteScorer(server.socket_path) as remote:
    ...         remote.score_encoded([EncodedPair([1, 2, 3], [0, 0, 0]), EncodedPair([4], [0])]).tolist()
    [3.0, 1.0]
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from es_rerank.errors import ScoringError, ScoringOutOfMemory
from es_rerank.proxy.model_server.client import RemoteScorer  # noqa: F401 (doctest)
from es_rerank.proxy.model_server.frames import (REQUEST_HEAD, error_frame, parse_request, read_exact,
                                                 request_body_size, scores_frame)
from es_rerank.scoring.token_batches import EncodedPair, PackedPairs
from es_rerank.scoring.validity import check_scores

log = logging.getLogger("es_rerank.model_server")


class EncodedScorer(Protocol):
    """What the model server needs of a scorer: scores for already tokenized pairs, in order."""

    def score_encoded(self, pairs: Sequence[EncodedPair]) -> np.ndarray: ...


@dataclass(eq=False)
class _Request:
    connection: "_Connection"
    request_id: int
    pairs: PackedPairs
    tokens: int


class _Connection:
    """One worker's socket: a reader thread queues its requests; answers are written under a lock."""

    def __init__(self, sock: socket.socket, server: "ModelServer") -> None:
        self.sock = sock
        self.server = server
        self._write_lock = threading.Lock()

    def read_loop(self) -> None:
        try:
            while (head := read_exact(self.sock, REQUEST_HEAD.size)) is not None:
                request_id, pairs, tokens = REQUEST_HEAD.unpack(head)
                try:
                    body = read_exact(self.sock, request_body_size(pairs, tokens)) or b""
                    parsed = parse_request(body, pairs, tokens)
                except ScoringError as exc:  # the stream is out of step: answer, then drop the connection
                    self.answer(error_frame(request_id, str(exc)))
                    return
                self.server.submit(_Request(self, request_id, parsed, tokens))
        except OSError:
            return  # the worker went away (or the server is stopping)
        finally:
            self.server.forget(self)
            self.sock.close()

    def close(self) -> None:
        """Cut the connection, so the worker's waiting call fails now rather than at its timeout."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def answer(self, frame: bytes) -> None:
        try:
            with self._write_lock:
                self.sock.sendall(frame)
        except OSError:
            pass  # the worker went away; its search has already fallen back to BM25 or ended


class ModelServer:
    """Serves an `EncodedScorer` (an `OnnxScorer`) to worker processes on a Unix socket.

    `gather_tokens`: most real tokens of waiting requests merged into one scheduling round.
    """

    def __init__(self, scorer: EncodedScorer, socket_path: str, gather_tokens: int = 262_144) -> None:
        if not isinstance(gather_tokens, int) or isinstance(gather_tokens, bool) or gather_tokens < 1:
            raise ValueError(f"gather_tokens must be a positive int, got {gather_tokens!r}")
        self.scorer = scorer
        self.socket_path = socket_path
        self.gather_tokens = gather_tokens
        self.rounds = 0  # scheduling rounds run: how many model calls the workers' requests shared
        self._queue: deque[_Request] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._connections: set[_Connection] = set()

    def start(self) -> "ModelServer":
        """Listen on the socket path (replacing a stale socket file) and start accepting and scoring."""
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        listener.listen(256)
        self._listener = listener
        for target, name in ((self._accept_loop, "es-rerank-accept"), (self._score_loop, "es-rerank-model")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def wait(self) -> None:
        """Block until `stop()` has been called and the scoring thread finished its round."""
        for thread in self._threads:
            thread.join()

    def stop(self) -> None:
        """Stop accepting, finish the round in progress, cut the workers' connections (their waiting
        searches fall back to BM25 at once), and remove the socket file."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
            connections = list(self._connections)
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        for thread in self._threads:
            if thread is not threading.current_thread() and thread.name == "es-rerank-model":
                thread.join()  # the round in progress answers its workers first
        for connection in connections:
            connection.close()

    def forget(self, connection: _Connection) -> None:
        with self._wake:
            self._connections.discard(connection)

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.wait()

    def submit(self, request: _Request) -> None:
        with self._wake:
            self._queue.append(request)
            self._wake.notify()

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return  # stop() closed the listener
            connection = _Connection(sock, self)
            with self._wake:
                if self._stopping:
                    sock.close()
                    return
                self._connections.add(connection)
            threading.Thread(target=connection.read_loop, name="es-rerank-worker-conn", daemon=True).start()

    def _gather(self) -> list[_Request] | None:
        with self._wake:
            while not self._queue and not self._stopping:
                self._wake.wait()
            if self._stopping:
                return None
            taken: list[_Request] = []
            tokens = 0
            while self._queue and (not taken or tokens + self._queue[0].tokens <= self.gather_tokens):
                request = self._queue.popleft()
                taken.append(request)
                tokens += request.tokens
            return taken

    def _score_loop(self) -> None:
        while (requests := self._gather()) is not None:
            self.rounds += 1
            self._score(requests)

    def _score(self, requests: list[_Request]) -> None:
        pairs = PackedPairs.concat([request.pairs for request in requests])
        started = time.perf_counter()
        try:
            scores = np.asarray(self.scorer.score_encoded(pairs), dtype=np.float32)
            check_scores(scores, len(pairs))
        except Exception as exc:  # every failure is answered; the workers serve BM25 order for it
            if len(requests) > 1 and isinstance(exc, (ScoringOutOfMemory, ScoringError)):
                for request in requests:  # one bad or too large request must not fail its neighbours
                    self._score([request])
                return
            log.error("scoring %d pairs failed: %s: %s", len(pairs), type(exc).__name__, exc)
            for request in requests:
                request.connection.answer(error_frame(request.request_id, f"{type(exc).__name__}: {exc}"))
            return
        log.debug("scored %d pairs of %d requests in %.1f ms", len(pairs), len(requests),
                  (time.perf_counter() - started) * 1000)
        offset = 0
        for request in requests:
            n = len(request.pairs)
            request.connection.answer(scores_frame(request.request_id, scores[offset:offset + n]))
            offset += n
