"""The fault relay itself, in front of the real node: it forwards, counts X-Opaque-Id, resets and black-holes."""

import socket
from urllib.parse import urlsplit

import pytest

from lab.reliability.rawhttp import exchange
from lab.reliability.relay import FaultRelay

HEALTH = b"GET /_cluster/health HTTP/1.1\r\nHost: x\r\nX-Opaque-Id: %s\r\nConnection: close\r\n\r\n"


@pytest.fixture
def relay(opensearch_url):
    parts = urlsplit(opensearch_url)
    with FaultRelay(parts.hostname, parts.port) as relay:
        yield relay


def test_it_forwards_and_counts_each_opaque_id_once(relay):
    for n in range(3):
        assert exchange(relay.url, HEALTH % b"rel-relay-%d" % n).status == 200
    assert exchange(relay.url, HEALTH % b"rel-relay-0").status == 200
    assert relay.opaque_ids["rel-relay-0"] == 2 and relay.opaque_ids["rel-relay-1"] == 1


def test_latency_slows_every_exchange(relay):
    relay.set_mode("latency", latency_s=0.3)
    reply = exchange(relay.url, HEALTH % b"rel-relay-slow")
    relay.set_mode("pass")
    assert reply.status == 200 and reply.seconds >= 0.6  # one chunk each way


def test_reset_mode_resets_connections(relay):
    relay.set_mode("reset")
    reply = exchange(relay.url, HEALTH % b"rel-relay-reset")
    relay.set_mode("pass")
    assert reply.status == 0 and reply.error in ("reset", "closed")
    assert relay.opaque_ids["rel-relay-reset"] == 0
    assert exchange(relay.url, HEALTH % b"rel-relay-after").status == 200


def test_a_black_hole_forwards_nothing_and_answers_nothing(relay):
    relay.set_mode("blackhole")
    reply = exchange(relay.url, HEALTH % b"rel-relay-hole", timeout_s=1.0)
    relay.set_mode("pass")
    assert reply.status == 0 and reply.error == "timeout"
    assert relay.opaque_ids["rel-relay-hole"] == 0
    assert exchange(relay.url, HEALTH % b"rel-relay-after").status == 200


def test_a_dead_upstream_means_a_reset_connection():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with FaultRelay("127.0.0.1", port) as relay:
        reply = exchange(relay.url, HEALTH % b"rel-relay-dead")
    assert reply.status == 0 and reply.error in ("reset", "closed")
