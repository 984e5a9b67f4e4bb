"""Fetch the OpenSearch distribution from Maven Central with `mvn`, into a reusable cache.

The artifact is `org.opensearch.distribution.integ-test-zip:opensearch:<v>:zip`, the minimal
distribution OpenSearch publishes to Maven Central. It ships only the netty transport module,
so the `analysis-common` module (English stemming, stop words) is fetched from
`org.opensearch.plugin:analysis-common:<v>:jar` and installed beside it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from es_rerank.errors import LocalNodeError

DIST_ARTIFACT = "org.opensearch.distribution.integ-test-zip:opensearch:{version}:zip"
ANALYSIS_ARTIFACT = "org.opensearch.plugin:analysis-common:{version}:jar"
# Newest first. Maven Central's metadata for this artifact lags behind what it serves, so
# versions are probed one by one instead of resolved as a range.
SERIES = "2.19"
MAX_PATCH = 15
MVN_TIMEOUT_S = 600

ANALYSIS_DESCRIPTOR = """\
description=Adds analyzers such as english and stop to OpenSearch.
version={version}
name=analysis-common
classname=org.opensearch.analysis.common.CommonAnalysisPlugin
java.version=11
opensearch.version={version}
custom.foldername=
extended.plugins=
has.native.controller=false
"""


@dataclass(frozen=True)
class Distribution:
    """An unpacked OpenSearch distribution ready to run."""

    version: str
    home: Path


def candidate_versions(pinned: str | None) -> list[str]:
    """Versions to try, newest first; just the pinned one when given.

    Example:
        >>> candidate_versions(None)[:2]
        ['2.19.15', '2.19.14']
        >>> candidate_versions("2.19.4")
        ['2.19.4']
    """
    if pinned:
        return [pinned]
    return [f"{SERIES}.{patch}" for patch in range(MAX_PATCH, -1, -1)]


def require_tool(name: str, purpose: str, install_hint: str) -> str:
    """Return the path of an executable or raise a `LocalNodeError` saying how to get it."""
    path = shutil.which(name)
    if not path:
        raise LocalNodeError(f"{name} is not installed or not on PATH; it is needed {purpose}", hint=install_hint)
    return path


def mvn_copy(artifact: str, out_dir: Path) -> bool:
    """Copy one artifact from Maven Central into `out_dir`; False when it does not resolve."""
    mvn = require_tool("mvn", "to download OpenSearch from Maven Central", "install Maven (apt-get install maven)")
    cmd = [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={out_dir}"]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=MVN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise LocalNodeError(
            f"mvn took over {MVN_TIMEOUT_S}s to fetch {artifact}",
            hint="check the connection to Maven Central, or set OPENSEARCH_URL to use an existing cluster",
        ) from exc
    if result.returncode == 0:
        return True
    output = result.stdout + result.stderr
    if "Could not find artifact" in output or "Unable to find artifact" in output:
        return False
    tail = "\n".join(output.strip().splitlines()[-8:])
    raise LocalNodeError(
        f"mvn failed to download {artifact}:\n{tail}",
        hint="check the connection to Maven Central (repo1.maven.org), or set OPENSEARCH_URL to use an existing cluster",
    )


def ensure_distribution(cache_dir: Path, pinned_version: str | None = None) -> Distribution:
    """Return an unpacked distribution from the cache, downloading it the first time.

    The version that resolved is remembered in `<cache>/opensearch-version`, so later runs
    neither probe Maven Central nor download again.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    remembered = cache_dir / "opensearch-version"
    version = pinned_version or (remembered.read_text().strip() if remembered.exists() else None)
    if version and (cache_dir / f"opensearch-{version}" / "bin" / "opensearch").exists():
        return Distribution(version, cache_dir / f"opensearch-{version}")

    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        download_dir = Path(tmp)
        version = _download_newest(download_dir, candidate_versions(version))
        analysis_ok = mvn_copy(ANALYSIS_ARTIFACT.format(version=version), download_dir)
        home = _unpack(download_dir / f"opensearch-{version}.zip", cache_dir, version)
        if analysis_ok:
            _install_analysis_module(home, download_dir / f"analysis-common-{version}.jar", version)
    if not pinned_version:
        remembered.write_text(version + "\n")
    return Distribution(version, home)


def _download_newest(download_dir: Path, versions: list[str]) -> str:
    for version in versions:
        if mvn_copy(DIST_ARTIFACT.format(version=version), download_dir):
            return version
    raise LocalNodeError(
        f"none of OpenSearch {', '.join(versions[:3])}{'...' if len(versions) > 3 else ''} could be found on Maven Central",
        hint="pin an existing version with --version, or set OPENSEARCH_URL to use an existing cluster",
    )


def _unpack(zip_path: Path, cache_dir: Path, version: str) -> Path:
    target = cache_dir / f"opensearch-{version}"
    staging = cache_dir / f".unpack-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(staging)
    except zipfile.BadZipFile as exc:
        raise LocalNodeError(f"the downloaded {zip_path.name} is not a valid zip", hint="run the command again") from exc
    inner = staging / f"opensearch-{version}"
    if not inner.is_dir():
        raise LocalNodeError(f"{zip_path.name} does not contain opensearch-{version}/")
    for script in (inner / "bin").iterdir():
        script.chmod(0o755)  # zipfile drops the executable bits
    shutil.rmtree(target, ignore_errors=True)
    inner.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _install_analysis_module(home: Path, jar: Path, version: str) -> None:
    module_dir = home / "modules" / "analysis-common"
    module_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(jar, module_dir / jar.name)
    (module_dir / "plugin-descriptor.properties").write_text(ANALYSIS_DESCRIPTOR.format(version=version))
