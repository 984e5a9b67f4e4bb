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
    with pytest.raises(LocalNodeError, match="needs Java 11 or newer; found no Java at all") as info:
        find_java_home(search_dirs=())
    assert "install a JDK 11+" in info.value.hint


def fake_jdk(folder, name, version):
    """A JDK layout whose `java -version` answers like a real one: stands in for JDKs this machine lacks."""
    java = folder / name / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f'#!/bin/sh\necho \'openjdk version "{version}" 2025-01-01\' >&2\n')
    java.chmod(0o755)
    return folder / name


@pytest.fixture
def no_java_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for var in ("JAVA_HOME", "OPENSEARCH_JAVA_HOME", "ES_JAVA_HOME"):
        monkeypatch.delenv(var, raising=False)


def test_java_too_old_for_the_line_names_what_to_install(no_java_env, monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(fake_jdk(tmp_path / "jvm", "jdk-17", "17.0.9")))
    with pytest.raises(LocalNodeError, match=r"Elasticsearch 9 needs Java 21 or newer; found .*jdk-17 \(Java 17\)") as info:
        find_java_home(21, "ES_JAVA_HOME", "Elasticsearch 9", search_dirs=())
    assert "install a JDK 21+" in info.value.hint and "ES_JAVA_HOME" in info.value.hint


def test_a_newer_jdk_beside_java_home_is_found(no_java_env, monkeypatch, tmp_path):
    jvm = tmp_path / "jvm"
    monkeypatch.setenv("JAVA_HOME", str(fake_jdk(jvm, "jdk-17", "17.0.9")))
    fake_jdk(jvm, "jdk-25", "25.0.1")
    newest_enough = fake_jdk(tmp_path / "system", "jdk-21", "21.0.4")
    assert find_java_home(17, "ES_JAVA_HOME", "Elasticsearch 8.19", search_dirs=()) == jvm / "jdk-17"
    # The oldest JDK that is new enough wins, from beside JAVA_HOME or the system folder.
    assert find_java_home(21, "ES_JAVA_HOME", "Elasticsearch 9", search_dirs=(tmp_path / "system",)) == newest_enough


def test_engine_java_home_too_old_is_an_error(no_java_env, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENSEARCH_JAVA_HOME", str(fake_jdk(tmp_path, "jdk-17", "17.0.9")))
    fake_jdk(tmp_path, "jdk-21", "21.0.4")
    with pytest.raises(LocalNodeError, match="OpenSearch 3 needs Java 21 or newer; OPENSEARCH_JAVA_HOME=.* has Java 17"):
        find_java_home(21, "OPENSEARCH_JAVA_HOME", "OpenSearch 3", search_dirs=(tmp_path,))


def test_release_lines_and_their_candidates(tmp_path):
    assert candidate_versions("3.x")[0].startswith("3.") and candidate_versions("3.5.0") == ["3.5.0"]
    assert candidate_versions("9.x", "elasticsearch")[-1] == "9.0.0"
    assert candidate_versions("8.19.7", "elasticsearch") == ["8.19.7"]
    with pytest.raises(LocalNodeError, match="Elasticsearch 8.18.0 is not a release line") as info:
        NodeSettings(engine="elasticsearch", version="8.18.0", cache_dir=tmp_path)
    assert info.value.hint == "use --version 8.19.x or 9.x"


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


def test_unknown_elasticsearch_version_is_reported(tmp_path):
    with pytest.raises(LocalNodeError, match="none of Elasticsearch 9.2.99 could be found"):
        ensure_distribution(tmp_path / "cache", pinned_version="9.2.99", engine="elasticsearch")
