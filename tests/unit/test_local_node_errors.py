"""The local node's failure messages. These need no running node."""

import os
import socket
import stat

import pytest

from es_rerank.errors import LocalNodeError
from es_rerank.engine.local_node import LocalNode, NodeSettings
from es_rerank.engine.local_node.fetch import candidate_versions, ensure_distribution
from es_rerank.engine.local_node.node import find_java_home


def test_candidate_versions_newest_first():
    versions = candidate_versions(None)
    assert versions[0] == "2.19.15" and versions[-1] == "2.19.0"
    assert candidate_versions("2.19.4") == ["2.19.4"]


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(LocalNodeError, match="heap size"):
        NodeSettings(heap="lots", cache_dir=tmp_path)
    with pytest.raises(LocalNodeError, match="out of range"):
        NodeSettings(port=70000, cache_dir=tmp_path)


def test_port_taken_is_reported(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        if port > 65435:
            pytest.skip("ephemeral port too high for a node port")
        with pytest.raises(LocalNodeError, match=f"port {port} on 127.0.0.1 is already in use"):
            LocalNode(NodeSettings(port=port, cache_dir=tmp_path)).start()


def test_missing_java_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("OPENSEARCH_JAVA_HOME", raising=False)
    with pytest.raises(LocalNodeError, match="java is not installed"):
        find_java_home()


def test_missing_maven_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalNodeError, match="mvn is not installed") as info:
        ensure_distribution(tmp_path / "cache")
    assert "install Maven" in info.value.hint


def test_download_failure_is_reported(monkeypatch, tmp_path):
    """A fake `mvn` that fails like a broken network stands in for Maven Central being unreachable."""
    fake = tmp_path / "bin" / "mvn"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho '[ERROR] Could not transfer artifact: Connection refused' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(LocalNodeError, match="(?s)mvn failed to download.*Connection refused"):
        ensure_distribution(tmp_path / "cache")


def test_unknown_version_is_reported(tmp_path):
    with pytest.raises(LocalNodeError, match="none of OpenSearch 2.19.99 could be found"):
        ensure_distribution(tmp_path / "cache", pinned_version="2.19.99")


def test_status_of_a_node_that_never_ran(tmp_path):
    status = LocalNode(NodeSettings(port=9296, cache_dir=tmp_path)).status()
    assert not status.running and "stopped" in status.describe()
