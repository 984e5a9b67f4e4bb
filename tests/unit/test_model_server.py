"""The model server and its clients: frames, merging across workers, failure isolation, reconnects."""

from __future__ import annotations

import functools
import socket
import threading

import numpy as np
import pytest

from es_rerank.errors import ScoringError
from es_rerank.proxy.model_server.client import RemoteScorer
from es_rerank.proxy.model_server.frames import REQUEST_HEAD, request_frame
from es_rerank.proxy.model_server.server import ModelServer
from es_rerank.scoring.token_batches import EncodedPair, batch_by_length, plan_batches
from tests.support.waiting import wait_until

POISON = 999  # a token id the test scorer refuses, as a model would refuse a broken input


def pair(*ids: int) -> EncodedPair:
    return EncodedPair(np.array(ids, dtype=np.int32), np.zeros(len(ids), dtype=np.int32))


class SumScorer:
    """Scores a pair by the sum of its ids; records each call; refuses batches with the poison id.

    With `hold`, the first call waits until `release` is set, so requests pile up behind it."""

    def __init__(self, hold: bool = False) -> None:
        self.calls: list[int] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        self._hold = hold

    def score_encoded(self, pairs):
        self.entered.set()
        if self._hold and not self.calls:
            self.calls.append(len(pairs))
            assert self.release.wait(60)
        else:
            self.calls.append(len(pairs))
        if any(POISON in np.asarray(p.ids) for p in pairs):
            raise ScoringError("the model refused this input")
        return np.array([float(np.sum(p.ids)) for p in pairs], dtype=np.float32)


def queue_holds(server: ModelServer, n: int) -> bool:
    return len(server._queue) == n


@pytest.fixture
def socket_path(tmp_path):
    return str(tmp_path / "model.sock")


def test_scores_come_back_in_order(socket_path):
    with ModelServer(SumScorer(), socket_path) as server, RemoteScorer(server.socket_path) as remote:
        assert remote.score_encoded([pair(1, 2), pair(5), pair(3, 3, 3)]).tolist() == [3.0, 5.0, 9.0]
        assert remote.score_encoded([pair(7)]).tolist() == [7.0]  # the connection is reused


def test_waiting_requests_of_several_workers_share_one_model_call(socket_path):
    scorer = SumScorer(hold=True)
    with ModelServer(scorer, socket_path) as server:
        results: dict[int, list[float]] = {}

        def worker(k: int) -> None:
            with RemoteScorer(socket_path) as remote:
                results[k] = remote.score_encoded([pair(k, 1)] * (k + 1)).tolist()

        first = threading.Thread(target=worker, args=(0,))
        first.start()
        assert scorer.entered.wait(60)  # the model is busy with worker 0's request
        others = [threading.Thread(target=worker, args=(k,)) for k in (1, 2, 3)]
        for thread in others:
            thread.start()
        wait_until(lambda: len(server._queue) == 3, "three workers' requests to queue behind the busy model")
        scorer.release.set()
        for thread in [first, *others]:
            thread.join(60)
    assert scorer.calls == [1, 2 + 3 + 4]  # the three waiting requests ran as one call
    assert results == {k: [float(k + 1)] * (k + 1) for k in range(4)}


def test_a_failing_request_does_not_fail_the_requests_it_was_merged_with(socket_path):
    scorer = SumScorer(hold=True)
    with ModelServer(scorer, socket_path) as server:
        outcomes: dict[str, object] = {}

        def send(name: str, pairs) -> None:
            with RemoteScorer(socket_path) as remote:
                try:
                    outcomes[name] = remote.score_encoded(pairs).tolist()
                except ScoringError as exc:
                    outcomes[name] = exc

        threads = [threading.Thread(target=send, args=("first", [pair(1)]))]
        threads[0].start()
        assert scorer.entered.wait(60)
        for name, pairs in (("good", [pair(2, 2)]), ("poisoned", [pair(POISON)]), ("also good", [pair(4)])):
            threads.append(threading.Thread(target=send, args=(name, pairs)))
            threads[-1].start()
            wait_until(functools.partial(queue_holds, server, len(threads) - 1), f"{name} to queue")
        scorer.release.set()
        for thread in threads:
            thread.join(60)
    assert outcomes["good"] == [4.0] and outcomes["also good"] == [4.0] and outcomes["first"] == [1.0]
    assert isinstance(outcomes["poisoned"], ScoringError)
    assert "the model refused this input" in str(outcomes["poisoned"])


def test_a_client_reconnects_after_the_server_restarts(socket_path):
    remote = RemoteScorer(socket_path)
    with pytest.raises(ScoringError, match="the model server at .* failed"):
        remote.score_encoded([pair(1)])  # nothing listens yet: a ScoringError, so the proxy falls back
    with ModelServer(SumScorer(), socket_path):
        assert remote.score_encoded([pair(1)]).tolist() == [1.0]
    with pytest.raises(ScoringError):
        remote.score_encoded([pair(1)])  # the server stopped: the old connection is dead
    with ModelServer(SumScorer(), socket_path):
        assert remote.score_encoded([pair(2)]).tolist() == [2.0]
    remote.close()


def test_a_connection_left_from_before_a_restart_is_replaced_without_failing_a_call(socket_path):
    """The worker's idle connection met the old server's EOF: the first call after the restart scores."""
    remote = RemoteScorer(socket_path)
    with ModelServer(SumScorer(), socket_path):
        assert remote.score_encoded([pair(1)]).tolist() == [1.0]
    with ModelServer(SumScorer(), socket_path):
        assert remote.score_encoded([pair(3)]).tolist() == [3.0]
        assert remote.score_encoded([pair(4)]).tolist() == [4.0]
    remote.close()


def test_a_corrupt_frame_is_answered_with_an_error_and_the_connection_closed(socket_path):
    with ModelServer(SumScorer(), socket_path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(socket_path)
        sock.sendall(REQUEST_HEAD.pack(5, 1 << 30, 1))  # an absurd pair count
        answer = sock.recv(65536)
        assert answer[8] == 0 and b"over the limits" in answer
        assert sock.recv(1) == b""  # closed: the stream cannot be trusted after a bad header
        sock.close()
        frame = bytearray(request_frame(6, [pair(1, 2)]))
        frame[REQUEST_HEAD.size:REQUEST_HEAD.size + 4] = np.array([5], dtype="<i4").tobytes()  # lengths lie
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(socket_path)
        sock.sendall(bytes(frame))
        assert b"do not add up" in sock.recv(65536)
        sock.close()


@pytest.mark.parametrize("max_tokens", [64, 200, 1000])
def test_token_budget_batches_cover_every_pair_once_within_the_budget(max_tokens):
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 250, size=300)
    groups = plan_batches(lengths, batch_size=128, max_width=256, max_tokens=max_tokens)
    assert sorted(np.concatenate(groups).tolist()) == list(range(300))
    pairs = [pair(*([1] * int(n))) for n in lengths]
    for batch in batch_by_length(pairs, 128, pad_id=0, max_width=256, max_tokens=max_tokens):
        rows, width = batch.shape
        assert rows <= 128
        assert rows * width <= max_tokens or rows == 1  # a pair longer than the budget runs alone
        assert width >= max(lengths[batch.rows])
