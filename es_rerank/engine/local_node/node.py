"""Start, stop and inspect a local single-node OpenSearch or Elasticsearch bound to 127.0.0.1.

Neither engine runs as root, so when es-rerank runs as root the node runs as a dedicated
system user (`esrerank-os` by default), created on first use. Each node keeps its config,
data, logs and pid file in `<cache>/nodes/<port>/`, so `--fresh` can wipe it. Which engine
and release line runs is `NodeSettings.engine` and `.version` (see `distributions`).
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
from es_rerank.engine.local_node.distributions import OPENSEARCH, ReleaseLine, release_line
from es_rerank.engine.local_node.fetch import Distribution, ensure_distribution, require_tool

DEFAULT_PORT = 9200
# Where Debian/Ubuntu packages put JDKs; searched beside the folders of JAVA_HOME and `java` on
# PATH when those are too old for the release line (OpenSearch 3 and Elasticsearch 9 need 21).
SYSTEM_JVM_DIRS = (Path("/usr/lib/jvm"),)
# 1 GiB of heap is ample for the BEIR collections used here and leaves most of a 2-core,
# 24 GiB machine to the model, the proxy and the tests.
DEFAULT_HEAP = "1g"
DEFAULT_USER = "esrerank-os"
CLUSTER_NAME = "es-rerank-local"
LOG_TAIL_LINES = 40
# What OpenSearch (and Elasticsearch 7) print on the console when startup fails; OpenSearch's
# `-d` launcher returns before that, so its exit status cannot tell.
FATAL_MARKER = "uncaught exception in thread [main]"


def default_cache_dir() -> Path:
    """`$ES_RERANK_CACHE_DIR`, else a system cache for root (the node's user must read it), else `~/.cache`."""
    if os.environ.get("ES_RERANK_CACHE_DIR"):
        return Path(os.environ["ES_RERANK_CACHE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/cache/es-rerank")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "es-rerank"


@dataclass(frozen=True)
class NodeSettings:
    """Where and how the local node runs. Every field has a working default.

    `version` is an exact version or a release line of `engine` (`3.x`, `8.19.x`, `9.x`).

    Example:
        >>> NodeSettings(engine="elasticsearch", version="9.x", port=9231).line.label
        'Elasticsearch 9'
    """

    port: int = DEFAULT_PORT
    heap: str = DEFAULT_HEAP
    version: str | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    user: str = DEFAULT_USER
    startup_timeout_s: float = 180.0
    engine: str = OPENSEARCH

    def __post_init__(self) -> None:
        release_line(self.engine, self.version)  # refuses an unknown engine or line
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

    @property
    def line(self) -> ReleaseLine:
        return release_line(self.engine, self.version)


@dataclass(frozen=True)
class NodeStatus:
    """What `es-rerank opensearch status` reports."""

    running: bool
    url: str
    pid: int | None = None
    version: str | None = None
    health: str | None = None
    label: str = "OpenSearch"

    def describe(self) -> str:
        if not self.running:
            return f"stopped (no local node on {self.url})"
        return f"running at {self.url}: {self.label} {self.version}, health {self.health}, pid {self.pid}"


class LocalNode:
    """One local node, identified by its port."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.node_dir = settings.node_dir
        self.pid_file = self.node_dir / f"{settings.engine}.pid"
        self.log_dir = self.node_dir / "logs"

    # ---- queries ---------------------------------------------------------------------------

    def status(self) -> NodeStatus:
        """Report whether this node runs and how healthy it is; never raises."""
        pid = self._live_pid()
        label = self.settings.line.recipe.label
        # Not `GET /`: Elasticsearch's integ-test zip has no root action (it answers 405).
        info = self._fetch_json("/_nodes/_local?filter_path=nodes.*.version", timeout=2.0)
        if pid is None or info is None:
            return NodeStatus(False, self.url, label=label)
        health = self._fetch_json("/_cluster/health", timeout=2.0) or {}
        versions = [node.get("version") for node in (info.get("nodes") or {}).values()]
        return NodeStatus(True, self.url, pid, versions[0] if versions else None, health.get("status"), label)

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
        """Start the node (fetching the engine on first use) and wait for health yellow.

        Returns at once when this node already runs. `fresh` wipes its data first.
        """
        current = self.status()
        if current.running and not fresh:
            return current
        if current.running:
            self.stop()
        s = self.settings
        java_home = find_java_home(s.line.min_java, s.line.recipe.java_home_var, s.line.label)
        _require_free_port(s.port)
        _require_free_port(s.port + 100)  # transport port
        dist = ensure_distribution(s.cache_dir, s.version, s.engine)
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

    def _console_shows_fatal_error(self) -> bool:
        """True once the engine printed that its main thread died (both engines word it so)."""
        console = self.node_dir / "console.log"
        try:
            return FATAL_MARKER in console.read_text(errors="replace")
        except OSError:
            return False

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
        recipe = dist.line.recipe
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            recipe.java_home_var: str(java_home),
            "JAVA_HOME": str(java_home),
            recipe.path_conf_var: str(self.node_dir / "config"),
            recipe.java_opts_var: f"-Xms{s.heap} -Xmx{s.heap}",
        }
        args = [
            str(dist.launcher),
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
            *(f"-E{setting}" for setting in recipe.node_settings),
        ]
        if run_as:
            runuser = require_tool("runuser", f"to run {recipe.label} as a non-root user", "install util-linux")
            args = [runuser, "-u", run_as, "--", "env", *(f"{k}={v}" for k, v in env.items()), *args]
        with open(self.node_dir / "console.log", "wb") as console:
            result = subprocess.run(args, env=env, stdout=console, stderr=subprocess.STDOUT, cwd=self.node_dir)
        if result.returncode != 0:
            raise LocalNodeError(
                f"{recipe.label} exited with status {result.returncode} while starting; log tail:\n{self.log_tail()}",
                hint="fix the cause above, or start with --fresh to wipe the node's data",
            )

    def _wait_until_healthy(self) -> NodeStatus:
        label = self.settings.line.recipe.label
        deadline = time.monotonic() + self.settings.startup_timeout_s
        seen_pid = False
        while time.monotonic() < deadline:
            health = self._fetch_json("/_cluster/health?wait_for_status=yellow&timeout=2s", timeout=5.0)
            if health and health.get("status") in ("yellow", "green"):
                return self.status()
            live = self._live_pid()
            seen_pid = seen_pid or live is not None
            # The JVM deletes its pid file when it exits, and may do so before the first look.
            if ((self.pid_file.exists() or seen_pid) and live is None) or self._console_shows_fatal_error():
                raise LocalNodeError(
                    f"{label} on port {self.settings.port} died while starting; log tail:\n{self.log_tail()}",
                    hint="fix the cause above, or start with --fresh to wipe the node's data",
                )
            time.sleep(1.0)
        self.stop(timeout_s=10)
        raise LocalNodeError(
            f"{label} on port {self.settings.port} was not healthy after {self.settings.startup_timeout_s:.0f}s; "
            f"log tail:\n{self.log_tail()}",
            hint="a slow machine may need a longer --timeout",
        )


def find_java_home(minimum: int = 11, engine_var: str = "OPENSEARCH_JAVA_HOME", needed_by: str = "OpenSearch",
                   search_dirs: tuple[Path, ...] = SYSTEM_JVM_DIRS) -> Path:
    """A Java runtime of version `minimum` or newer.

    Looked for in `engine_var` (`OPENSEARCH_JAVA_HOME`, `ES_JAVA_HOME`), `JAVA_HOME`, `java` on
    `PATH`, then every JDK beside those and under `search_dirs`. A JDK named in `engine_var` is the
    user's choice: too old is an error, not a reason to look elsewhere. Among the other JDKs found
    the oldest new enough wins: the closest to what the engine is built and tested with.
    """
    explicit = os.environ.get(engine_var)
    if explicit:
        version = java_version(Path(explicit))
        if version is None or version < minimum:
            raise LocalNodeError(f"{needed_by} needs Java {minimum} or newer; {engine_var}={explicit} has "
                                 f"{f'Java {version}' if version else 'no working bin/java'}",
                                 hint=f"point {engine_var} at a JDK {minimum}+, or unset it to let es-rerank look for one")
        return Path(explicit)
    preferred = [Path(os.environ["JAVA_HOME"])] if os.environ.get("JAVA_HOME") else []
    on_path = shutil.which("java")
    if on_path:
        preferred.append(Path(on_path).resolve().parent.parent)
    found = {home: java_version(home) for home in dict.fromkeys(preferred)}
    for home, version in found.items():
        if version is not None and version >= minimum:
            return home
    folders = dict.fromkeys([*(home.resolve().parent for home in found), *search_dirs])
    others = sorted({home for folder in folders if folder.is_dir() for home in folder.iterdir()
                     if (home / "bin" / "java").exists() and not home.is_symlink()} - set(found))
    scanned = {home: java_version(home) for home in others}
    suitable = sorted((version, str(home)) for home, version in scanned.items() if version and version >= minimum)
    if suitable:
        return Path(suitable[0][1])
    seen = ", ".join(f"{home} (Java {v})" for home, v in {**found, **scanned}.items() if v) or "no Java at all"
    raise LocalNodeError(f"{needed_by} needs Java {minimum} or newer; found {seen}",
                         hint=f"install a JDK {minimum}+ (e.g. apt-get install openjdk-{max(minimum, 17)}-jdk-headless, "
                              f"or Temurin {max(minimum, 21)}), or point {engine_var} at one")


def java_version(home: Path) -> int | None:
    """The major version of the Java in `home`; None when it has none that runs.

    Example:
        >>> java_version(Path("/nonexistent")) is None
        True
    """
    java = home / "bin" / "java"
    if not java.exists():
        return None
    try:
        result = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


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
