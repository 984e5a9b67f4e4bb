"""Start, stop and inspect a local single-node OpenSearch bound to 127.0.0.1.

OpenSearch refuses to run as root, so when es-rerank runs as root the node runs as a
dedicated system user (`esrerank-os` by default), created on first use. Each node keeps its
config, data, logs and pid file in `<cache>/nodes/<port>/`, so `--fresh` can wipe it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from es_rerank.errors import LocalNodeError
from es_rerank.engine.local_node.fetch import Distribution, ensure_distribution, require_tool

DEFAULT_PORT = 9200
# 1 GiB of heap is ample for the BEIR collections used here and leaves most of a 2-core,
# 24 GiB machine to the model, the proxy and the tests.
DEFAULT_HEAP = "1g"
DEFAULT_USER = "esrerank-os"
CLUSTER_NAME = "es-rerank-local"
LOG_TAIL_LINES = 40


def default_cache_dir() -> Path:
    """`$ES_RERANK_CACHE_DIR`, else a system cache for root (the node's user must read it), else `~/.cache`."""
    if os.environ.get("ES_RERANK_CACHE_DIR"):
        return Path(os.environ["ES_RERANK_CACHE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/cache/es-rerank")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "es-rerank"


@dataclass(frozen=True)
class NodeSettings:
    """Where and how the local node runs. Every field has a working default."""

    port: int = DEFAULT_PORT
    heap: str = DEFAULT_HEAP
    version: str | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    user: str = DEFAULT_USER
    startup_timeout_s: float = 180.0

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535 - 100:
            raise LocalNodeError(f"port {self.port} is out of range", hint="use a port between 1 and 65435")
        if not re.fullmatch(r"\d+[mMgG]", self.heap):
            raise LocalNodeError(f"heap size {self.heap!r} is not valid", hint="use a JVM size such as 512m or 1g")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def node_dir(self) -> Path:
        return self.cache_dir / "nodes" / str(self.port)


@dataclass(frozen=True)
class NodeStatus:
    """What `es-rerank opensearch status` reports."""

    running: bool
    url: str
    pid: int | None = None
    version: str | None = None
    health: str | None = None

    def describe(self) -> str:
        if not self.running:
            return f"stopped (no local node on {self.url})"
        return f"running at {self.url}: OpenSearch {self.version}, health {self.health}, pid {self.pid}"


class LocalNode:
    """One local OpenSearch node, identified by its port."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.node_dir = settings.node_dir
        self.pid_file = self.node_dir / "opensearch.pid"
        self.log_dir = self.node_dir / "logs"

    # ---- queries ---------------------------------------------------------------------------

    def status(self) -> NodeStatus:
        """Report whether this node runs and how healthy it is; never raises."""
        pid = self._live_pid()
        info = self._fetch_json("/", timeout=2.0)
        if pid is None or info is None:
            return NodeStatus(False, self.url)
        health = self._fetch_json("/_cluster/health", timeout=2.0) or {}
        return NodeStatus(True, self.url, pid, info.get("version", {}).get("number"), health.get("status"))

    @property
    def url(self) -> str:
        """Where clients reach this node; a node with TLS on HTTP overrides it.

        Example:
            >>> LocalNode(NodeSettings(port=9201)).url
            'http://127.0.0.1:9201'
        """
        return self.settings.url

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self, fresh: bool = False) -> NodeStatus:
        """Start the node (fetching OpenSearch on first use) and wait for health yellow.

        Returns at once when this node already runs. `fresh` wipes its data first.
        """
        current = self.status()
        if current.running and not fresh:
            return current
        if current.running:
            self.stop()
        java_home = find_java_home()
        _require_free_port(self.settings.port)
        _require_free_port(self.settings.port + 100)  # transport port
        dist = ensure_distribution(self.settings.cache_dir, self.settings.version)
        self._prepare_node_dir(dist, fresh)
        run_as = self._service_user()
        self._launch(dist, java_home, run_as)
        return self._wait_until_healthy()

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the node with SIGTERM (SIGKILL after `timeout_s`); False when it was not running."""
        pid = self._live_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.2)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the node's main log, or of its console output before logging started."""
        for candidate in (self.log_dir / f"{CLUSTER_NAME}.log", self.node_dir / "console.log"):
            if candidate.exists() and candidate.stat().st_size:
                text = candidate.read_text(errors="replace").splitlines()
                return "\n".join(text[-lines:])
        return "(the node wrote no log)"

    # ---- internals -------------------------------------------------------------------------

    def _fetch_json(self, path: str, timeout: float) -> dict | None:
        """GET `path` from this node as JSON, None when it does not answer; a node that
        needs TLS or credentials overrides this."""
        return _get_json(f"{self.url}{path}", timeout)

    def _live_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def _prepare_node_dir(self, dist: Distribution, fresh: bool) -> None:
        if fresh:
            shutil.rmtree(self.node_dir / "data", ignore_errors=True)
        config_dir = self.node_dir / "config"
        shutil.rmtree(config_dir, ignore_errors=True)
        shutil.copytree(dist.home / "config", config_dir)
        _point_jvm_files_at(config_dir / "jvm.options", self.node_dir)
        for sub in ("data", "logs"):
            (self.node_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.node_dir / "console.log").unlink(missing_ok=True)
        self.pid_file.unlink(missing_ok=True)

    def _service_user(self) -> str | None:
        """The user to run as when we are root; None means run as ourselves."""
        if os.geteuid() != 0:
            return None
        user = self.settings.user
        if subprocess.run(["id", "-u", user], capture_output=True).returncode != 0:
            useradd = require_tool("useradd", "to create the node's user", "install passwd, or run as a non-root user")
            result = subprocess.run(
                [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise LocalNodeError(f"could not create user {user}: {result.stderr.strip()}")
        subprocess.run(["chown", "-R", user, str(self.node_dir)], check=True)
        _make_readable_by(user, self.settings.cache_dir)
        return user

    def _launch(self, dist: Distribution, java_home: Path, run_as: str | None) -> None:
        s = self.settings
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "OPENSEARCH_JAVA_HOME": str(java_home),
            "JAVA_HOME": str(java_home),
            "OPENSEARCH_PATH_CONF": str(self.node_dir / "config"),
            "OPENSEARCH_JAVA_OPTS": f"-Xms{s.heap} -Xmx{s.heap}",
        }
        args = [
            str(dist.home / "bin" / "opensearch"),
            "-d",
            "-p", str(self.pid_file),
            "-Ediscovery.type=single-node",
            "-Enetwork.host=127.0.0.1",
            f"-Ehttp.port={s.port}",
            f"-Etransport.port={s.port + 100}",
            f"-Ecluster.name={CLUSTER_NAME}",
            "-Enode.name=es-rerank-local",
            f"-Epath.data={self.node_dir / 'data'}",
            f"-Epath.logs={self.log_dir}",
            # A nearly full disk must not turn test indices read-only.
            "-Ecluster.routing.allocation.disk.threshold_enabled=false",
        ]
        if run_as:
            runuser = require_tool("runuser", "to run OpenSearch as a non-root user", "install util-linux")
            args = [runuser, "-u", run_as, "--", "env", *(f"{k}={v}" for k, v in env.items()), *args]
        with open(self.node_dir / "console.log", "wb") as console:
            result = subprocess.run(args, env=env, stdout=console, stderr=subprocess.STDOUT, cwd=self.node_dir)
        if result.returncode != 0:
            raise LocalNodeError(
                f"OpenSearch exited with status {result.returncode} while starting; log tail:\n{self.log_tail()}",
                hint="fix the cause above, or start with --fresh to wipe the node's data",
            )

    def _wait_until_healthy(self) -> NodeStatus:
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while time.monotonic() < deadline:
            health = self._fetch_json("/_cluster/health?wait_for_status=yellow&timeout=2s", timeout=5.0)
            if health and health.get("status") in ("yellow", "green"):
                return self.status()
            if self.pid_file.exists() and self._live_pid() is None:
                raise LocalNodeError(
                    f"OpenSearch on port {self.settings.port} died while starting; log tail:\n{self.log_tail()}",
                    hint="fix the cause above, or start with --fresh to wipe the node's data",
                )
            time.sleep(1.0)
        self.stop(timeout_s=10)
        raise LocalNodeError(
            f"OpenSearch on port {self.settings.port} was not healthy after {self.settings.startup_timeout_s:.0f}s; "
            f"log tail:\n{self.log_tail()}",
            hint="a slow machine may need a longer --timeout",
        )


def find_java_home() -> Path:
    """Locate a Java 11+ runtime through `OPENSEARCH_JAVA_HOME`, `JAVA_HOME` or `PATH`."""
    for var in ("OPENSEARCH_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(var) and (Path(os.environ[var]) / "bin" / "java").exists():
            home = Path(os.environ[var])
            break
    else:
        java = require_tool("java", "to run OpenSearch", "install a Java 11+ runtime, e.g. apt-get install openjdk-17-jre-headless")
        home = Path(java).resolve().parent.parent
    result = subprocess.run([str(home / "bin" / "java"), "-version"], capture_output=True, text=True)
    match = re.search(r'version "(\d+)', result.stderr + result.stdout)
    if not match or int(match.group(1)) < 11:
        raise LocalNodeError(f"OpenSearch needs Java 11 or newer; {home} has {match.group(1) if match else 'an unknown version'}",
                             hint="install Java 17 or point JAVA_HOME at it")
    return home


def _point_jvm_files_at(jvm_options: Path, node_dir: Path) -> None:
    """The stock jvm.options writes GC logs and heap dumps relative to the distribution, which
    the node's user cannot write to; send them to the node's own directory instead."""
    text = jvm_options.read_text()
    text = text.replace("logs/", f"{node_dir}/logs/").replace("HeapDumpPath=data", f"HeapDumpPath={node_dir}/data")
    jvm_options.write_text(text)


def _require_free_port(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise LocalNodeError(
                f"port {port} on 127.0.0.1 is already in use by another process",
                hint="stop that process, or choose another port with --port (the transport port is port+100)",
            ) from exc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers signals; treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _make_readable_by(user: str, cache_dir: Path) -> None:
    """Open the cache to the node's user, and fail clearly if a parent directory blocks it."""
    subprocess.run(["chmod", "-R", "o+rX", str(cache_dir)], check=False)
    probe = subprocess.run(["runuser", "-u", user, "--", "test", "-r", str(cache_dir)], capture_output=True)
    if probe.returncode != 0:
        raise LocalNodeError(
            f"user {user} cannot reach the cache directory {cache_dir}",
            hint="set ES_RERANK_CACHE_DIR to a directory outside root's home, such as /var/cache/es-rerank",
        )


def _get_json(url: str, timeout: float) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
