"""The proxy under test as its own process: `es-rerank serve`'s serving loop with a fault-injecting scorer.

`python -m lab.reliability.proxy_process SPEC.json` builds ProxySettings from the spec,
loads the scorer (an `es-rerank export` directory, or the term-overlap scorer), wraps it in a
FaultScorer reading the spec's control file, and serves with `run_until_signal`: the same
SIGTERM drain as `es-rerank serve`. `ProxyProcess` starts, stops and restarts it on one port.

Example:
    >>> spec = ProxySpec(upstream="http://127.0.0.1:40001", index="rel-corpus", port=free_port(),
    ...                  fault_file="fault", log_file="proxy.log")
    >>> settings_from(spec).rules[0].pattern
    'rel-corpus'
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from es_rerank.proxy.settings import (IndexRule, LimitSettings, LoadSettings, ProxySettings, ServerSettings,
                              UpstreamSettings)
from es_rerank.errors import EsRerankError
from es_rerank.scoring.cross_encoder import Scorer

LISTENING = "es-rerank proxy listening on "


@dataclass(frozen=True)
class ProxySpec:
    """Everything the proxy process needs; written to JSON and read back by the child."""

    upstream: str
    index: str
    port: int
    fault_file: str
    log_file: str
    model: str = ""
    fields: tuple[str, ...] = ("title", "text")
    window: int = 30
    deadline_ms: int = 300
    max_in_flight: int = 32
    overload: str = "shed"
    connect_timeout_s: float = 1.0
    read_timeout_s: float = 2.0
    max_body_bytes: int = 8 << 20
    body_timeout_s: float = 5.0
    drain_delay_s: float = 1.0
    drain_timeout_s: float = 10.0
    ca_file: str = ""
    log_level: str = "INFO"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Example:
        >>> 0 < free_port() < 65536
        True
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_from(spec: ProxySpec) -> ProxySettings:
    """The proxy's settings for a spec.

    Example:
        >>> settings_from(ProxySpec("http://h:1", "i", 9, "f", "l")).upstream.read_timeout_s
        2.0
    """
    return ProxySettings(
        upstream=UpstreamSettings(spec.upstream, spec.connect_timeout_s, spec.read_timeout_s,
                                  ca_file=Path(spec.ca_file) if spec.ca_file else None),
        rules=(IndexRule(spec.index, tuple(spec.fields), spec.window, spec.deadline_ms),),
        limits=LimitSettings(max_body_bytes=spec.max_body_bytes, body_timeout_s=spec.body_timeout_s),
        load=LoadSettings(max_in_flight=spec.max_in_flight, overload=spec.overload),
        server=ServerSettings(port=spec.port, drain_delay_s=spec.drain_delay_s, drain_timeout_s=spec.drain_timeout_s))


def _serve(spec_path: str) -> None:
    """The child: load the scorer, wrap it, serve until SIGTERM."""
    import logging

    from es_rerank.proxy.server import run_until_signal
    from lab.reliability.scorers import FaultScorer, TermOverlapScorer

    spec = ProxySpec(**json.loads(Path(spec_path).read_text()))
    logging.basicConfig(level=spec.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if spec.model:
        from es_rerank.scoring.cross_encoder import OnnxScorer

        inner: Scorer = OnnxScorer.load(spec.model, device="cpu")
    else:
        inner = TermOverlapScorer()
    scorer = FaultScorer(inner, Path(spec.fault_file))
    run_until_signal(settings_from(spec), scorer,
                     on_listening=lambda url: print(LISTENING + url, file=sys.stderr, flush=True))


class ProxyProcess:
    """Start, SIGTERM and restart the proxy process; its stderr goes to `spec.log_file` (appended)."""

    def __init__(self, spec: ProxySpec, spec_path: Path) -> None:
        self.spec = spec
        self.spec_path = spec_path
        self.process: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{spec.port}"
        spec_path.write_text(json.dumps(asdict(spec)))

    @property
    def pid(self) -> int:
        """The running proxy's pid.
        """
        if self.process is None:
            raise EsRerankError("the proxy process is not running")
        return self.process.pid

    def start(self, ready_timeout_s: float = 120.0) -> None:
        """Launch the proxy and wait until `/_rerank/ready` answers 200.
        """
        with open(self.spec.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lab.reliability.proxy_process", str(self.spec_path)],
                stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "ES_RERANK_NO_PROGRESS": "1"})
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EsRerankError(f"the proxy process exited with {self.process.returncode} while starting",
                                    hint=f"see its log {self.spec.log_file}")
            if _ready(self.url):
                return
            time.sleep(0.1)
        raise EsRerankError(f"the proxy at {self.url} was not ready within {ready_timeout_s:g}s",
                            hint=f"see its log {self.spec.log_file}")

    def terminate(self, timeout_s: float = 30.0) -> tuple[int, float]:
        """SIGTERM and wait for the drain to finish; returns (exit status, seconds it took).
        """
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code, time.monotonic() - started

    def metrics(self) -> str:
        """The proxy's `/_rerank/metrics` text ("" when it does not answer).
        """
        try:
            with urllib.request.urlopen(self.url + "/_rerank/metrics", timeout=5) as response:
                return response.read().decode()
        except OSError:
            return ""


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_rerank/ready", timeout=2) as response:
            return response.status == 200
    except (urllib.error.HTTPError, OSError):
        return False


if __name__ == "__main__":
    _serve(sys.argv[1])
