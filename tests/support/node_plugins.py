"""Install an OpenSearch plugin from Maven Central into a distribution, once.

OpenSearch loads a plugin only when it was built for exactly the node's version, so a plugin is
installed into a distribution copy of its own (never the shared one every other test runs), and
the copy keeps it: later starts find its descriptor and neither download nor install again.
`opensearch-plugin install --batch` grants the extra permissions a plugin asks for without a
prompt.

Example:
    >>> plugin_artifact("opensearch-knn", "3.5.0")
    'org.opensearch.plugin:opensearch-knn:3.5.0.0:zip'
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from es_rerank.engine.local_node.fetch import Distribution, mvn_copy
from es_rerank.errors import LocalNodeError

PLUGIN_INSTALL_TIMEOUT_S = 300


def plugin_artifact(name: str, version: str) -> str:
    """Maven coordinates of plugin `name` for OpenSearch `version` (plugins add a fourth `.0`)."""
    return f"org.opensearch.plugin:{name}:{version}.0:zip"


def installed_for(plugin_dir: Path) -> str | None:
    """The OpenSearch version an installed plugin was built for; None when none is installed there.

    Example:
        >>> installed_for(Path("/nonexistent/opensearch-knn")) is None
        True
    """
    try:
        descriptor = (plugin_dir / "plugin-descriptor.properties").read_text()
    except OSError:
        return None
    found = re.search(r"^opensearch\.version=(\S+)$", descriptor, flags=re.MULTILINE)
    return found.group(1) if found else ""


def ensure_plugin(dist: Distribution, java_home: Path, name: str) -> Path:
    """Install plugin `name` matching `dist` into it, downloading it the first time; its folder.

    Example:
        >>> ensure_plugin(dist, find_java_home(21), "opensearch-knn").name   # doctest: +SKIP
        'opensearch-knn'
    """
    plugin_dir = dist.home / "plugins" / name
    built_for = installed_for(plugin_dir)
    if built_for == dist.version:
        return plugin_dir
    if built_for is not None:
        raise LocalNodeError(f"{plugin_dir} holds {name} for OpenSearch {built_for or '(unknown)'}, "
                             f"but the distribution is {dist.version}",
                             hint=f"delete {dist.home} to start from a fresh distribution")
    artifact = plugin_artifact(name, dist.version)
    with tempfile.TemporaryDirectory(dir=dist.home.parent) as tmp:
        if not mvn_copy(artifact, Path(tmp)):
            raise LocalNodeError(f"{artifact} is not on Maven Central",
                                 hint="a plugin is published for each OpenSearch release; pin one that has it")
        archive = Path(tmp) / f"{name}-{dist.version}.0.zip"
        result = subprocess.run(
            [str(dist.home / "bin" / "opensearch-plugin"), "install", "--batch", archive.as_uri()],
            env={**os.environ, "OPENSEARCH_JAVA_HOME": str(java_home), "JAVA_HOME": str(java_home)},
            capture_output=True, text=True, timeout=PLUGIN_INSTALL_TIMEOUT_S,
        )
    if result.returncode != 0 or installed_for(plugin_dir) != dist.version:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
        raise LocalNodeError(f"installing {artifact} into {dist.home} failed (exit {result.returncode}):\n{tail}",
                             hint=f"delete {dist.home} to start from a fresh distribution")
    return plugin_dir
