"""Which engine and version a cluster is, and what it can do, asked of the cluster itself.

Elasticsearch names itself in the `X-Elastic-Product: Elasticsearch` header of every response
(its clients refuse a server without it); OpenSearch sends no such header and says
`"distribution": "opensearch"` in `GET /`. Elasticsearch's integ-test zip has no root action
(`GET /` answers 405), so the version comes from `_nodes/_local` there. Whether the `english`
analyzer exists is asked with `_analyze`: a distribution without the analysis-common module
(Elasticsearch's integ-test zip) lacks it.

Example:
    >>> identify({"x-elastic-product": "Elasticsearch"}, {})
    'elasticsearch'
    >>> identify({}, {"version": {"distribution": "opensearch", "number": "3.5.0"}})
    'opensearch'
    >>> EngineProfile("elasticsearch", "9.2.0", english_analyzer=False).describe()
    'Elasticsearch 9.2.0'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping

OPENSEARCH = "opensearch"
ELASTICSEARCH = "elasticsearch"
LABELS = {OPENSEARCH: "OpenSearch", ELASTICSEARCH: "Elasticsearch"}
PRODUCT_HEADER = "x-elastic-product"


@dataclass(frozen=True)
class EngineProfile:
    """What one cluster is: its engine, its version, and whether it has the `english` analyzer."""

    engine: str
    version: str | None
    english_analyzer: bool

    @property
    def label(self) -> str:
        return LABELS[self.engine]

    @property
    def major(self) -> int | None:
        """The major version, e.g. 9; None when the cluster did not say.

        Example:
            >>> EngineProfile("opensearch", "2.19.6", True).major
            2
        """
        head = (self.version or "").split(".")[0]
        return int(head) if head.isdigit() else None

    def describe(self) -> str:
        return f"{self.label} {self.version or '(version unknown)'}"


def identify(headers: Mapping[str, str], root: Mapping) -> str:
    """The engine behind a response, from its headers and (when it answered) the `GET /` body."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if lowered.get(PRODUCT_HEADER, "").strip() == "Elasticsearch":
        return ELASTICSEARCH
    version = root.get("version") or {}
    if version.get("distribution") == OPENSEARCH:
        return OPENSEARCH
    # Elasticsearch before 7.14 sent no product header but has a `GET /` without a distribution.
    return ELASTICSEARCH if version.get("number") and root.get("tagline") else OPENSEARCH


def engine_and_version(client) -> tuple[str, str | None]:
    """Which engine and version the cluster behind an opensearch-py `client` is; raises the
    client's errors (connection refused, 401, ...) for the caller to turn into advice."""
    connection = client.transport.get_connection()
    status, headers, raw = connection.perform_request("GET", "/", ignore=(405,))
    root = _json(raw) if status == 200 else {}
    return identify(dict(headers), root), (root.get("version") or {}).get("number") or _node_version(connection)


def detect(client) -> EngineProfile:
    """`engine_and_version`, and whether the cluster has the `english` analyzer."""
    engine, version = engine_and_version(client)
    return EngineProfile(engine, version, _has_analyzer(client.transport.get_connection(), "english"))


def _node_version(connection) -> str | None:
    _, _, raw = connection.perform_request("GET", "/_nodes/_local", params={"filter_path": "nodes.*.version"})
    versions = [node.get("version") for node in (_json(raw).get("nodes") or {}).values()]
    return versions[0] if versions else None


def _has_analyzer(connection, name: str) -> bool:
    """True when the cluster knows the built-in analyzer `name` (400 "failed to find" when not).

    An account that may not call `_analyze` (403) cannot tell; every full distribution has
    `english`, so that counts as yes, and a missing one fails where the index is created.
    """
    body = json.dumps({"analyzer": name, "text": "stemming"}).encode()
    status, _, raw = connection.perform_request("POST", "/_analyze", body=body, ignore=(400, 403),
                                                headers={"content-type": "application/json"})
    return status != 400


def _json(raw: str) -> dict:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
