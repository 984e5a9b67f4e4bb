"""`es-rerank serve --workers N`: N HTTP worker processes on one port, fed by one model-server process.

Each worker is the ordinary proxy (`server.run_until_signal`) listening with SO_REUSEPORT, so
the kernel spreads client connections over the workers, and JSON parsing, tokenizing and
response rewriting use N cores. A worker's cross-encoder is a `RemoteScorer`. The one
`ModelServer` process owns the model (the GPU) and batches the workers' pairs by token budget.

Readiness, the deadline, the BM25 fallback, shedding and drain are each worker's own, per
request, as in one process. The limits given (`--max-in-flight`, `--max-connections`) are for
the whole server and are split evenly over the workers. A scrape of `/_rerank/metrics` sums
every worker's metrics (`metrics_merge`).

The supervisor (the `serve` process) restarts a worker or the model server that dies; while
the model server restarts, searches fall back to BM25 order. On SIGTERM it drains the workers
(each as on its own SIGTERM) and stops the model server last, so in-flight searches still get
their scores.

Example:
    >>> default_workers(2), default_workers(16), default_workers(64)
    (1, 8, 16)
    >>> share(64, 3)
    22
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import queue
import shutil
import signal
import socket
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from es_rerank.errors import ModelError
from es_rerank.proxy.settings import ProxySettings

log = logging.getLogger("es_rerank.proxy")
_spawn = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited threads, locks or CUDA state
START_TIMEOUT_S = 600.0  # loading a model onto a GPU, building its kernels and warming up
# Rows per model run in the model server, which merges every worker's pairs: the token budget is
# the bound that matters, this only keeps a batch of very short pairs from growing without end.
MODEL_SERVER_MAX_ROWS = 1024


def default_workers(cpu_count: int | None = None) -> int:
    """Half the cores, at most 16: the other half runs the tokenizer's and the model server's threads."""
    return max(1, min(16, (cpu_count or os.cpu_count() or 2) // 2))


def share(total: int, workers: int) -> int:
    """Each worker's part of a server-wide limit (rounded up, so the sum is never below it)."""
    return max(1, math.ceil(total / workers))


@dataclass(frozen=True)
class ModelServerSpec:
    """What the model-server process loads and how it batches.

    `batch_size` caps rows per model run, `batch_tokens` padded tokens per run, and
    `gather_tokens` the real tokens of waiting requests merged into one scheduling round.
    """

    model_dir: Path
    device: str = "auto"
    batch_size: int = MODEL_SERVER_MAX_ROWS
    batch_tokens: int = 65_536
    gather_tokens: int = 262_144


@dataclass(frozen=True)
class DenseSpec:
    """The bi-encoders each worker loads for fusion, by the rules' dense_model paths."""

    paths: tuple[str, ...] = ()
    device: str = "auto"
    threads: int = 0


def _configure_logging(log_level: str) -> None:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")


def _model_server_main(spec: ModelServerSpec, socket_path: str, events, log_level: str) -> None:
    _configure_logging(log_level)
    try:
        from es_rerank.proxy.model_server.server import ModelServer
        from es_rerank.scoring.serving_models import load_cross_encoder_for_serving

        scorer = load_cross_encoder_for_serving(spec.model_dir, spec.device, spec.batch_size, spec.batch_tokens)
        # Full-length pairs, so the kernels for long inputs are built before the first search.
        scorer.score_pairs(["warm up"] * 8, [" ".join(["the first model call builds kernels"] * 80)] * 8)
        server = ModelServer(scorer, socket_path, spec.gather_tokens).start()
    except Exception as exc:  # reported to the supervisor, which refuses to start
        events.put(("failed", f"{type(exc).__name__}: {exc}"))
        return
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.stop).start())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the supervisor decides
    events.put(("model", f"{scorer.variant.file} on {scorer.device}"))
    server.wait()


def _worker_main(settings: ProxySettings, model_dir: Path | None, socket_path: str, dense: DenseSpec, events,
                 log_level: str) -> None:
    _configure_logging(log_level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor sends SIGTERM to drain
    try:
        from es_rerank.proxy.model_server.client import RemoteScorer
        from es_rerank.proxy.server import run_until_signal
        from es_rerank.scoring.serving_models import load_dense_for_serving

        scorer = RemoteScorer.load(model_dir, socket_path) if model_dir is not None else None
        dense_scorers = {path: load_dense_for_serving(Path(path), dense.device, dense.threads) for path in dense.paths}
        run_until_signal(settings, scorer, on_listening=lambda url: events.put(("listening", url)),
                         dense_scorers=dense_scorers, handle_sigint=False)
    except Exception as exc:
        events.put(("failed", f"{type(exc).__name__}: {exc}"))


def _hold_port(host: str, port: int) -> socket.socket:
    """A bound, never listening SO_REUSEPORT socket: it picks the port (port 0) and keeps it ours while
    workers restart; it receives no connections because it does not listen."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class Supervisor:
    """Starts, watches, restarts and drains the model server and the HTTP workers.

    With no `spec` there is no model server: the workers relay, or rerank with bi-encoders only.
    """

    def __init__(self, spec: ModelServerSpec | None, workers: int, dense: DenseSpec = DenseSpec(),
                 log_level: str = "info") -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        self.spec = spec
        self.workers = workers
        self.dense = dense
        self.log_level = log_level
        self._dir = tempfile.mkdtemp(prefix="es-rerank-")  # 0700: only this user reaches the sockets
        self.model_socket = os.path.join(self._dir, "model.sock")
        self._events = _spawn.Queue()
        self._model: multiprocessing.process.BaseProcess | None = None
        self._workers: list = []
        self._settings: list[ProxySettings] = []
        self._port_holder: socket.socket | None = None
        self.url = ""
        self.model_detail = ""
        self._stop_reader, self._stop_writer = _spawn.Pipe(duplex=False)

    def start_model_server(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start the model server; returns what it loaded ("model.onnx on cpu") once it listens."""
        process = _spawn.Process(target=_model_server_main, name="es-rerank-model", daemon=True,
                                 args=(self.spec, self.model_socket, self._events, self.log_level))
        process.start()
        self._model = process
        self.model_detail = self._expect("model", "the model server", timeout_s)
        log.info("model server up (pid %d): %s", process.pid, self.model_detail)
        return self.model_detail

    def remote_scorer(self):
        """A client of the model server, for what the supervisor itself scores (the start-up window timing)."""
        from es_rerank.proxy.model_server.client import RemoteScorer

        return RemoteScorer.load(self.spec.model_dir, self.model_socket)

    def start_workers(self, settings: ProxySettings, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start the workers on settings' host and port; returns the URL once every worker listens."""
        server = settings.server
        self._port_holder = _hold_port(server.host, server.port)
        port = self._port_holder.getsockname()[1]
        sockets = [os.path.join(self._dir, f"worker-{k}.sock") for k in range(self.workers)]
        load = replace(settings.load, max_in_flight=share(settings.load.max_in_flight, self.workers))
        self._settings = [
            replace(settings, load=load, server=replace(
                server, port=port, reuse_port=True, max_connections=share(server.max_connections, self.workers),
                own_socket=own, peer_sockets=tuple(s for s in sockets if s != own)))
            for own in sockets]
        self._workers = [self._start_worker(k) for k in range(self.workers)]
        for _ in self._workers:
            self._expect("listening", "a worker", timeout_s)
        for k, worker in enumerate(self._workers):
            log.info("worker %d up (pid %d)", k, worker.pid)
        self.url = f"http://[{server.host}]:{port}" if ":" in server.host else f"http://{server.host}:{port}"
        return self.url

    def _start_worker(self, k: int):
        process = _spawn.Process(target=_worker_main, name=f"es-rerank-worker-{k}", daemon=True,
                                 args=(self._settings[k], self.spec.model_dir if self.spec else None,
                                       self.model_socket, self.dense,
                                       self._events, self.log_level))
        process.start()
        return process

    def _expect(self, kind: str, who: str, timeout_s: float) -> str:
        try:
            got, detail = self._events.get(timeout=timeout_s)
        except queue.Empty:
            raise ModelError(f"{who} did not start within {timeout_s:g}s",
                             hint="run `es-rerank serve --workers 1` with the same options to see why") from None
        if got == "failed":
            raise ModelError(f"{who} failed to start: {detail}",
                             hint="check --model and --device; `--workers 1` runs the same in one process")
        if got != kind:
            raise ModelError(f"{who} sent {got!r} while starting; expected {kind!r}",
                             hint="report this as a bug, with the log")
        return detail

    def request_stop(self) -> None:
        """Ask `watch` to return (safe from a signal handler)."""
        self._stop_writer.send(True)

    def watch(self) -> None:
        """Until `request_stop()`: restart whatever process dies (workers fall back to BM25 meanwhile)."""
        while True:
            processes = [p for p in (self._model, *self._workers) if p is not None]
            ready = multiprocessing.connection.wait([self._stop_reader, *(p.sentinel for p in processes)])
            if self._stop_reader in ready:
                return
            if self._model is not None and not self._model.is_alive():
                log.error("the model server exited (code %s); restarting it", self._model.exitcode)
                self._restart_model_server()
            for k, worker in enumerate(self._workers):
                if not worker.is_alive():
                    log.error("worker %d (pid %d) exited (code %s); restarting it", k, worker.pid, worker.exitcode)
                    self._workers[k] = self._start_worker(k)
                    try:
                        self._expect("listening", f"worker {k}", START_TIMEOUT_S)
                        log.info("worker %d up (pid %d)", k, self._workers[k].pid)
                    except ModelError as exc:
                        log.error("%s", exc)

    def _restart_model_server(self) -> None:
        try:
            self.start_model_server()
        except ModelError as exc:  # keep serving BM25 order; the next exit triggers another try
            log.error("%s", exc)

    def stop(self) -> None:
        """Drain every worker (each gets the drain delay and timeout), then stop the model server."""
        for worker in self._workers:
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)
        for k, worker in enumerate(self._workers):
            server = self._settings[k].server
            worker.join(server.drain_delay_s + server.drain_timeout_s + 30)
            if worker.is_alive():
                worker.kill()
                worker.join()
        if self._model is not None and self._model.is_alive():
            os.kill(self._model.pid, signal.SIGTERM)
            self._model.join(30)
            if self._model.is_alive():
                self._model.kill()
                self._model.join()
        if self._port_holder is not None:
            self._port_holder.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def run_until_signal(self) -> None:
        """Watch until SIGTERM or SIGINT, then drain and stop everything."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.request_stop())
        try:
            self.watch()
            log.info("signal received: draining the workers")
        finally:
            self.stop()
        log.info("drained; exiting")
