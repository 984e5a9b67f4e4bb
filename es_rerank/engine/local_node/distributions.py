"""Which engines and release lines a local node can run, and how each is fetched and launched.

Both engines publish a minimal "integ-test" distribution to Maven Central. A release line
(`2.19`, `3` for OpenSearch; `8.19`, `9` for Elasticsearch) names the versions to try, newest
first, and the Java it needs. Maven Central's metadata for these artifacts lags behind what it
serves, so versions are probed one by one instead of resolved as a range.

Example:
    >>> release_line("opensearch", None).series, release_line("opensearch", "3.x").series
    ('2.19', '3')
    >>> line = release_line("elasticsearch", "8.19.7")
    >>> line.label, line.min_java, line.versions("8.19.7")
    ('Elasticsearch 8.19', 17, ['8.19.7'])
    >>> release_line("opensearch", "1.3.0")
    Traceback (most recent call last):
    ...
    es_rerank.errors.LocalNodeError: OpenSearch 1.3.0 is not a release line es-rerank runs locally (use --version 2.19.x or 3.x)
"""

from __future__ import annotations

from dataclasses import dataclass

from es_rerank.engine.engine_profile import ELASTICSEARCH, LABELS, OPENSEARCH
from es_rerank.errors import LocalNodeError


@dataclass(frozen=True)
class EngineRecipe:
    """How one engine's integ-test distribution is fetched and launched."""

    name: str
    label: str
    artifact: str                   # Maven coordinates with {version}
    analysis_artifact: str | None   # the analysis-common module, where the zip lacks it and Maven Central has it
    java_home_var: str
    path_conf_var: str
    java_opts_var: str
    node_settings: tuple[str, ...]  # -E settings beyond the common single-node ones


RECIPES = {
    OPENSEARCH: EngineRecipe(
        name=OPENSEARCH, label=LABELS[OPENSEARCH],
        artifact="org.opensearch.distribution.integ-test-zip:opensearch:{version}:zip",
        analysis_artifact="org.opensearch.plugin:analysis-common:{version}:jar",
        java_home_var="OPENSEARCH_JAVA_HOME", path_conf_var="OPENSEARCH_PATH_CONF",
        java_opts_var="OPENSEARCH_JAVA_OPTS", node_settings=()),
    # Elasticsearch publishes no analysis-common module, so its local nodes lack `english`
    # (es_rerank.data.indexing then falls back to `stop`).
    ELASTICSEARCH: EngineRecipe(
        name=ELASTICSEARCH, label=LABELS[ELASTICSEARCH],
        artifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip",
        analysis_artifact=None,
        java_home_var="ES_JAVA_HOME", path_conf_var="ES_PATH_CONF", java_opts_var="ES_JAVA_OPTS",
        # These nodes are for the quickstart, tests and benchmarks on 127.0.0.1: no TLS, no users.
        node_settings=("xpack.security.enabled=false",)),
}


@dataclass(frozen=True)
class ReleaseLine:
    """One release line: the versions to try (newest first) and the oldest Java that runs them."""

    engine: str
    series: str
    candidates: tuple[str, ...]
    min_java: int

    @property
    def recipe(self) -> EngineRecipe:
        return RECIPES[self.engine]

    @property
    def label(self) -> str:
        return f"{self.recipe.label} {self.series}"

    def versions(self, requested: str | None) -> list[str]:
        """The versions to try for `requested`: all of this line's for the line itself, else just that version.

        Example:
            >>> release_line("opensearch", "3.x").versions("3.x")[-1]
            '3.0.0'
            >>> release_line("elasticsearch", "9.2.0").versions("9.2.0")
            ['9.2.0']
        """
        if not requested or _series_of(requested) == self.series:
            return list(self.candidates)
        return [requested]

    @property
    def remembered_name(self) -> str:
        """The cache file naming the version this line resolved to (2.19 keeps its original name)."""
        if (self.engine, self.series) == (OPENSEARCH, "2.19"):
            return "opensearch-version"
        return f"{self.engine}-{self.series}-version"


def _patches(series: str, newest: int) -> tuple[str, ...]:
    return tuple(f"{series}.{patch}" for patch in range(newest, -1, -1))


# The first line of each engine is its default.
LINES = {
    OPENSEARCH: (
        ReleaseLine(OPENSEARCH, "2.19", _patches("2.19", 15), 11),
        # 3.x releases go up by minor; the `.0` of each minor is what is probed.
        ReleaseLine(OPENSEARCH, "3", tuple(f"3.{minor}.0" for minor in range(12, -1, -1)), 21),
    ),
    ELASTICSEARCH: (
        ReleaseLine(ELASTICSEARCH, "9", tuple(v for minor in range(4, -1, -1) for v in _patches(f"9.{minor}", 10)), 21),
        ReleaseLine(ELASTICSEARCH, "8.19", _patches("8.19", 25), 17),
    ),
}


def _series_of(requested: str) -> str:
    """`3.x` -> `3`, `8.19.x` -> `8.19`, `9` -> `9`; an exact version is returned as it is."""
    return requested.removesuffix(".x")


def release_line(engine: str, requested: str | None) -> ReleaseLine:
    """The release line a `--version` value belongs to (`3.x`, `3.5.0`, `9`, `8.19.x`); None is the default line."""
    if engine not in LINES:
        raise LocalNodeError(f"unknown search engine {engine!r}", hint=f"use one of {', '.join(LINES)}")
    lines = LINES[engine]
    if not requested:
        return lines[0]
    wanted = _series_of(requested.strip())
    for line in lines:
        if wanted == line.series or wanted.startswith(line.series + "."):
            return line
    choices = " or ".join(f"{line.series}.x" for line in sorted(lines, key=lambda line: line.series))
    raise LocalNodeError(f"{RECIPES[engine].label} {requested} is not a release line es-rerank runs locally",
                         hint=f"use --version {choices}")
