"""Fetch an engine's distribution from Maven Central with `mvn`, into a reusable cache.

The artifacts are the integ-test zips (coordinates in `distributions`). OpenSearch 2.19's
ships only the netty transport module, so the `analysis-common` module (English stemming,
stop words) is fetched from `org.opensearch.plugin:analysis-common:<v>:jar` and installed
beside it; OpenSearch 3's zip already has it. Elasticsearch publishes no such module, so its
nodes keep the `standard` and `stop` analyzers only.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from es_rerank.engine.local_node.distributions import OPENSEARCH, EngineRecipe, ReleaseLine, release_line
from es_rerank.errors import LocalNodeError

MVN_TIMEOUT_S = 600

ANALYSIS_DESCRIPTOR = """\
description=Adds analyzers such as english and stop to OpenSearch.
version={version}
name=analysis-common
classname=org.opensearch.analysis.common.CommonAnalysisPlugin
java.version={java}
opensearch.version={version}
custom.foldername=
extended.plugins=
has.native.controller=false
"""


@dataclass(frozen=True)
class Distribution:
    """An unpacked distribution ready to run."""

    version: str
    home: Path
    line: ReleaseLine

    @property
    def launcher(self) -> Path:
        return self.home / "bin" / self.line.engine


def candidate_versions(requested: str | None, engine: str = OPENSEARCH) -> list[str]:
    """Versions to try, newest first: the default line's, a line's (`3.x`), or just an exact version.

    Example:
        >>> candidate_versions(None)[:2]
        ['2.19.15', '2.19.14']
        >>> candidate_versions("2.19.4")
        ['2.19.4']
        >>> candidate_versions("8.19.x", "elasticsearch")[-1]
        '8.19.0'
    """
    return release_line(engine, requested).versions(requested)


def require_tool(name: str, purpose: str, install_hint: str) -> str:
    """Return the path of an executable or raise a `LocalNodeError` saying how to get it."""
    path = shutil.which(name)
    if not path:
        raise LocalNodeError(f"{name} is not installed or not on PATH; it is needed {purpose}", hint=install_hint)
    return path


def mvn_copy(artifact: str, out_dir: Path) -> bool:
    """Copy one artifact from Maven Central into `out_dir`; False when it does not resolve."""
    mvn = require_tool("mvn", "to download the search engine from Maven Central", "install Maven (apt-get install maven)")
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


def ensure_distribution(cache_dir: Path, pinned_version: str | None = None, engine: str = OPENSEARCH) -> Distribution:
    """Return an unpacked distribution from the cache, downloading it the first time.

    `pinned_version` is an exact version or a release line (`3.x`, `8.19.x`); None is the
    engine's default line. The version a line resolved to is remembered in the cache (for
    OpenSearch 2.19 in `<cache>/opensearch-version`), so later runs neither probe Maven
    Central nor download again.
    """
    line = release_line(engine, pinned_version)
    cache_dir.mkdir(parents=True, exist_ok=True)
    candidates = line.versions(pinned_version)
    exact = candidates == [pinned_version]
    remembered = cache_dir / line.remembered_name
    version = pinned_version if exact else (remembered.read_text().strip() if remembered.exists() else None)
    if version and (cache_dir / f"{engine}-{version}" / "bin" / engine).exists():
        return Distribution(version, cache_dir / f"{engine}-{version}", line)

    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        download_dir = Path(tmp)
        version = _download_newest(line.recipe, download_dir, candidates)
        home = _unpack(line.recipe, download_dir / f"{engine}-{version}.zip", cache_dir, version)
        module_dir = home / "modules" / "analysis-common"
        analysis = line.recipe.analysis_artifact
        if analysis and not module_dir.is_dir() and mvn_copy(analysis.format(version=version), download_dir):
            _install_analysis_module(module_dir, download_dir / f"analysis-common-{version}.jar", version, line.min_java)
    if not exact:
        remembered.write_text(version + "\n")
    return Distribution(version, home, line)


def _download_newest(recipe: EngineRecipe, download_dir: Path, versions: list[str]) -> str:
    for version in versions:
        if mvn_copy(recipe.artifact.format(version=version), download_dir):
            return version
    raise LocalNodeError(
        f"none of {recipe.label} {', '.join(versions[:3])}{'...' if len(versions) > 3 else ''} could be found on Maven Central",
        hint="pin an existing version with --version, or set OPENSEARCH_URL to use an existing cluster",
    )


def _unpack(recipe: EngineRecipe, zip_path: Path, cache_dir: Path, version: str) -> Path:
    target = cache_dir / f"{recipe.name}-{version}"
    staging = cache_dir / f".unpack-{recipe.name}-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(staging)
    except zipfile.BadZipFile as exc:
        raise LocalNodeError(f"the downloaded {zip_path.name} is not a valid zip", hint="run the command again") from exc
    inner = staging / f"{recipe.name}-{version}"
    if not inner.is_dir():
        raise LocalNodeError(f"{zip_path.name} does not contain {recipe.name}-{version}/", hint="run the command again")
    for script in (inner / "bin").iterdir():
        script.chmod(0o755)  # zipfile drops the executable bits
    shutil.rmtree(target, ignore_errors=True)
    inner.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _install_analysis_module(module_dir: Path, jar: Path, version: str, java: int) -> None:
    module_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(jar, module_dir / jar.name)
    (module_dir / "plugin-descriptor.properties").write_text(ANALYSIS_DESCRIPTOR.format(version=version, java=java))
