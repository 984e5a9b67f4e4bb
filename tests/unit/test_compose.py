"""The compose deployment and the Dockerfile, checked without a Docker engine.

`docker compose config` (or the older `docker-compose config`) validates the file where a client
is installed; the YAML checks below run everywhere and tie the file to the real `serve` options.
"""

import re
import shutil
import subprocess

import pytest
import yaml

from es_rerank.cli.serve_cmd import serve
from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def compose_client():
    """The argv prefix of a compose client that can parse files offline, or None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


PROFILE_SERVICES = {"gpu": {"opensearch", "proxy"}, "cpu": {"opensearch", "proxy-cpu"},
                    "elasticsearch": {"elasticsearch", "proxy-elasticsearch"}}


@pytest.mark.parametrize("profile", sorted(PROFILE_SERVICES))
def test_compose_client_accepts_the_file(profile):
    client = compose_client()
    if client is None:
        pytest.skip("no compose client (docker compose plugin or docker-compose) is installed here")
    result = subprocess.run([*client, "-f", str(COMPOSE), "--profile", profile, "config"], capture_output=True,
                            text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert PROFILE_SERVICES[profile] <= set(services)  # v1 ignores profiles here


def test_opensearch_service(compose):
    opensearch = compose["services"]["opensearch"]
    assert opensearch["image"].startswith("opensearchproject/opensearch:2.")
    env = opensearch["environment"]
    assert env["discovery.type"] == "single-node" and env["DISABLE_SECURITY_PLUGIN"] == "true"
    assert opensearch["ports"] == ["127.0.0.1:9200:9200"]
    assert "_cluster/health" in " ".join(opensearch["healthcheck"]["test"])


@pytest.mark.parametrize("name, extra, gpu", [("proxy", "gpu", True), ("proxy-cpu", "serve", False)])
def test_proxy_services(compose, name, extra, gpu):
    proxy = compose["services"][name]
    assert proxy["build"]["context"] == "." and proxy["build"]["args"]["EXTRA"] == extra
    assert ("nvidia/cuda" in proxy["build"]["args"]["BASE_IMAGE"]) == gpu
    assert proxy["depends_on"] == {"opensearch": {"condition": "service_healthy"}}
    env = proxy["environment"]
    assert env["OPENSEARCH_URL"] == "http://opensearch:9200"
    assert proxy["ports"] == [f"127.0.0.1:{env['ES_RERANK_SERVE_PORT']}:{env['ES_RERANK_SERVE_PORT']}"]
    assert "/_rerank/ready" in " ".join(proxy["healthcheck"]["test"])
    assert any(v.endswith(f":{env['ES_RERANK_SERVE_MODEL']}:ro") for v in proxy["volumes"])  # model from a volume
    devices = proxy.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    if gpu:
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    else:
        assert devices == []
    assert proxy["profiles"] == ["gpu" if gpu else "cpu"]


def test_every_proxy_variable_is_a_real_serve_option_and_parses(compose, monkeypatch):
    env = compose["services"]["proxy"]["environment"]
    known = {f"ES_RERANK_SERVE_{param.name.upper()}" for param in serve.params}  # click's automatic names
    known |= {var for param in serve.params for var in ([param.envvar] if isinstance(param.envvar, str) else param.envvar or [])}
    for name, value in env.items():
        assert name in known, f"{name} in docker-compose.yml is not an env var of `es-rerank serve`"
        default = re.fullmatch(r"\$\{\w+:-(.*)\}", str(value))
        monkeypatch.setenv(name, default.group(1) if default else str(value))
    monkeypatch.setenv("ES_RERANK_SERVE_MODEL", str(REPO))  # any existing directory: parsing only
    with serve.make_context("serve", [], auto_envvar_prefix="ES_RERANK_SERVE") as ctx:
        params = ctx.params
    assert params["opensearch_url"] == "http://opensearch:9200"
    assert params["host"] == "0.0.0.0" and params["port"] == 9201 and params["indices"] == ("scifact",)
    assert params["window"] == 100 and params["drain_delay_s"] == 5.0


def test_dockerfile_builds_the_gpu_proxy_with_a_healthcheck():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=nvidia/cuda:\S+-cudnn-runtime-\S+$", text, re.M)
    assert "ARG EXTRA=gpu" in text and 'pip install ".[${EXTRA}]"' in text
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD .*/_rerank/health", text, re.M)
    assert 'ENTRYPOINT ["es-rerank", "serve"]' in text and "STOPSIGNAL SIGTERM" in text
    assert "USER esrerank" in text
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in source.split():
            assert (REPO / path).exists(), f"Dockerfile copies {path}, which is not in the repository"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "*.onnx" in ignored


def test_every_service_belongs_to_a_profile_so_one_engine_starts(compose):
    for name, service in compose["services"].items():
        assert service.get("profiles"), f"{name} has no profile: it would start beside the other engine"
    for profile, names in PROFILE_SERVICES.items():
        assert {n for n, s in compose["services"].items() if profile in s["profiles"]} == names


def test_the_elasticsearch_profile_puts_the_proxy_in_front_of_elasticsearch(compose, monkeypatch):
    es = compose["services"]["elasticsearch"]
    assert es["image"].startswith("docker.elastic.co/elasticsearch/elasticsearch:9.")
    assert es["environment"]["discovery.type"] == "single-node" and es["environment"]["xpack.security.enabled"] == "false"
    assert "_cluster/health" in " ".join(es["healthcheck"]["test"]) and es["ports"] == ["127.0.0.1:9200:9200"]
    proxy = compose["services"]["proxy-elasticsearch"]
    assert proxy["depends_on"] == {"elasticsearch": {"condition": "service_healthy"}}
    assert proxy["build"]["args"]["EXTRA"] == "serve" and "/_rerank/ready" in " ".join(proxy["healthcheck"]["test"])
    for name, value in proxy["environment"].items():
        default = re.fullmatch(r"\$\{\w+:-(.*)\}", str(value))
        monkeypatch.setenv(name, default.group(1) if default else str(value))
    monkeypatch.setenv("ES_RERANK_SERVE_MODEL", str(REPO))
    with serve.make_context("serve", [], auto_envvar_prefix="ES_RERANK_SERVE") as ctx:
        params = ctx.params
    assert params["opensearch_url"] == "http://elasticsearch:9200" and params["upstream_engine"] == "elasticsearch"
