"""A second local OpenSearch node with the security plugin, for access-control tests.

It differs from the shared node in three ways:
- OpenSearch 2.19.4 from its own cache directory (`<cache>/secure/`), because the security
  plugin must match the OpenSearch version exactly and Maven Central has it only for
  2.19.3 and 2.19.4; the plugin is installed into that copy once and then reused;
- TLS on HTTP and transport with a throwaway CA made per start (tests/support/tls.py);
- basic auth with the users and roles of tests/support/security_config.py, random
  passwords per start, and the security index initialised from those files.

Every start wipes the node's data: new passwords need a new security index.

Example:
    >>> with running_secure_node() as cluster:   # doctest: +SKIP
    ...     cluster.call("GET", "/").status      # doctest: +SKIP
    401
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from es_rerank.errors import LocalNodeError
from es_rerank.engine.local_node import LocalNode, NodeSettings
from es_rerank.engine.local_node.fetch import Distribution
from es_rerank.engine.local_node.node import default_cache_dir, find_java_home
from tests.support.https import JsonBody, Reply, call
from tests.support.node_plugins import ensure_plugin
from tests.support.security_config import (
    INDEX_MAPPING,
    SEED_DOCS,
    Account,
    append_settings,
    make_accounts,
    node_security_settings,
    write_security_config,
)
from tests.support.tls import TestPki, make_test_pki

SECURE_VERSION = "2.19.4"
SECURE_PORT = 9280
SECURE_HEAP = "512m"
HASH_TIMEOUT_S = 120
PASSWORD_ENV = "ES_RERANK_TEST_PASSWORD"


def secure_cache_dir() -> Path:
    """The secured node's own cache: its distribution copy, plugin and node directory.

    Example:
        >>> secure_cache_dir().name
        'secure'
    """
    return default_cache_dir() / "secure"


def ensure_security_plugin(dist: Distribution, java_home: Path) -> Path:
    """Install `opensearch-security` matching `dist` into it, downloading it the first time.

    Example:
        >>> ensure_security_plugin(dist, find_java_home()).name   # doctest: +SKIP
        'opensearch-security'
    """
    return ensure_plugin(dist, java_home, "opensearch-security")


def hash_passwords(plugin_dir: Path, dist_home: Path, java_home: Path, accounts: dict[str, Account]) -> dict[str, str]:
    """bcrypt hashes of the accounts' passwords, made with the plugin's own Hasher tool.

    The Hashers run in parallel (one JVM each) and read the password from the environment,
    so it never shows on a command line.

    Example:
        >>> hash_passwords(plugin, dist.home, find_java_home(), make_accounts())["admin"][:4]   # doctest: +SKIP
        '$2y$'
    """
    classpath = os.pathsep.join([f"{plugin_dir}/*", f"{plugin_dir}/deps/*", f"{dist_home}/lib/*"])
    java = str(java_home / "bin" / "java")
    running = {
        account.name: subprocess.Popen(
            [java, "-cp", classpath, "org.opensearch.security.tools.Hasher", "-env", PASSWORD_ENV],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), PASSWORD_ENV: account.password},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for account in accounts.values()
    }
    hashes = {}
    for name, process in running.items():
        output, _ = process.communicate(timeout=HASH_TIMEOUT_S)
        found = re.findall(r"^\$2[aby]\$\d\d\$\S{53}$", output, flags=re.MULTILINE)
        if process.returncode != 0 or not found:
            raise LocalNodeError(f"the security plugin's Hasher failed for user {name}: {output.strip()[-500:]}")
        hashes[name] = found[-1]
    return hashes


class SecureNode(LocalNode):
    """A LocalNode with the security plugin, TLS on both layers, and the test accounts."""

    def __init__(self, settings: NodeSettings, accounts: dict[str, Account]) -> None:
        if "admin" not in accounts:
            raise ValueError(f"expected an 'admin' account to probe the node with, got {sorted(accounts)}")
        super().__init__(settings)
        self.accounts = accounts
        self.pki = TestPki(self.node_dir / "config")

    @property
    def url(self) -> str:
        """HTTPS on 127.0.0.1 at the node's port.

        Example:
            >>> SecureNode(NodeSettings(port=9281), make_accounts()).url
            'https://127.0.0.1:9281'
        """
        return f"https://127.0.0.1:{self.settings.port}"

    @property
    def ca_file(self) -> Path:
        """The CA that signed this start's node certificate.

        Example:
            >>> SecureNode(NodeSettings(port=9281), make_accounts()).ca_file.name
            'root-ca.pem'
        """
        return self.pki.path(self.pki.ca_cert)

    def _fetch_json(self, path: str, timeout: float) -> dict | None:
        try:
            reply = call(self.url, "GET", path, ca_file=self.ca_file, account=self.accounts["admin"], timeout=timeout)
            return reply.json() if reply.status == 200 else None
        except (OSError, ssl.SSLError, ValueError):
            return None

    def _prepare_node_dir(self, dist: Distribution, fresh: bool) -> None:
        java_home = find_java_home()
        plugin_dir = ensure_security_plugin(dist, java_home)  # before the config copy: it adds config files
        # Always fresh: a security index from an earlier start holds other passwords.
        super()._prepare_node_dir(dist, fresh=True)
        config_dir = self.node_dir / "config"
        make_test_pki(config_dir)
        hashes = hash_passwords(plugin_dir, dist.home, java_home, self.accounts)
        write_security_config(config_dir / "opensearch-security", self.accounts, hashes)
        append_settings(config_dir / "opensearch.yml", node_security_settings(self.pki))


@dataclass(frozen=True)
class SecureCluster:
    """What a test gets: where the secured node is, how to trust it, and who may log in."""

    url: str
    ca_file: Path
    accounts: dict[str, Account]

    def call(self, method: str, path: str, *, user: str | None = None, body: JsonBody = None) -> Reply:
        """One request as `user` (an account name), or without credentials when None.

        Example:
            >>> cluster.call("GET", "/secure-a/_count", user="reader-a").json()["count"]   # doctest: +SKIP
            4
        """
        account = None if user is None else self.accounts[user]
        return call(self.url, method, path, ca_file=self.ca_file, account=account, body=body)


def seed_indices(cluster: SecureCluster) -> None:
    """(Re)create the test indices with their documents, as admin, and refresh them.

    Example:
        >>> seed_indices(cluster)   # doctest: +SKIP
    """
    for index, docs in SEED_DOCS.items():
        cluster.call("DELETE", f"/{index}", user="admin")
        created = cluster.call("PUT", f"/{index}", user="admin", body={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": INDEX_MAPPING})
        _require_ok(created, f"create index {index}")
        lines = "".join(f'{{"index":{{"_id":"{doc_id}"}}}}\n{json.dumps(doc)}\n' for doc_id, doc in docs.items())
        bulk = cluster.call("POST", f"/{index}/_bulk?refresh=true", user="admin", body=lines)
        _require_ok(bulk, f"index documents into {index}")
        if bulk.json().get("errors"):
            raise LocalNodeError(f"indexing into {index} on the secured node failed: {bulk.body[:500]!r}")


@contextmanager
def running_secure_node(port: int = SECURE_PORT, heap: str = SECURE_HEAP) -> Iterator[SecureCluster]:
    """Start the secured node with fresh certificates, passwords and seeded indices; stop it after.

    Example:
        >>> with running_secure_node() as cluster:   # doctest: +SKIP
        ...     cluster.call("GET", "/", user="admin").json()["version"]["number"]   # doctest: +SKIP
        '2.19.4'
    """
    settings = NodeSettings(port=port, heap=heap, version=SECURE_VERSION, cache_dir=secure_cache_dir(),
                            startup_timeout_s=120.0)
    node = SecureNode(settings, make_accounts())
    node.stop(timeout_s=20)  # one left running by an interrupted session holds the port
    node.start(fresh=True)
    try:
        cluster = SecureCluster(node.url, node.ca_file, node.accounts)
        seed_indices(cluster)
        yield cluster
    finally:
        node.stop(timeout_s=30)


def _require_ok(reply: Reply, what: str) -> None:
    if not 200 <= reply.status < 300:
        raise LocalNodeError(f"could not {what} on the secured node: HTTP {reply.status} {reply.body[:500]!r}")
