"""Slow request headers are cut and open connections are capped, both in the metrics (issue 14 item 8).

200 connections trickling header bytes for 60 s all stayed open: nothing bounded the time a
client may take to send its headers, or the number of such connections.
"""

import socket
from dataclasses import replace

import pytest
import requests

from es_rerank.proxy.settings import ServerSettings
from tests.proxy_support import running_proxy, settings_for
from tests.support.waiting import wait_until

CAP = 5


@pytest.fixture()
def proxy(opensearch_url):
    settings = replace(settings_for(opensearch_url), server=ServerSettings(port=0, header_timeout_s=1.0,
                                                                            max_connections=CAP))
    with running_proxy(settings) as p:
        yield p


def connect(url) -> socket.socket:
    host, port = url.split("//")[1].split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def closed_by_peer(conn: socket.socket) -> bool:
    conn.setblocking(False)
    try:
        return conn.recv(65536) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        conn.setblocking(True)


def trickle_then_check(conn: socket.socket) -> bool:
    """Send one more header byte, as a slowloris client does; True once the proxy has closed the connection."""
    try:
        conn.sendall(b"a")
    except (BrokenPipeError, ConnectionResetError):
        return True
    return closed_by_peer(conn)


def cut(proxy, reason: str) -> float:
    return proxy.context.metrics.connections_cut.value((reason,))


def test_a_client_trickling_its_headers_is_cut(proxy):
    with connect(proxy.url) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        wait_until(lambda: trickle_then_check(conn), "the proxy to cut a connection whose headers never end")
    assert cut(proxy, "header_timeout") == 1
    assert requests.get(proxy.url + "/", timeout=30).status_code == 200  # others are served as ever
    assert "es_rerank_connections_cut_total{reason=\"header_timeout\"} 1" in \
        requests.get(proxy.url + "/_rerank/metrics", timeout=30).text


def test_connections_past_the_cap_are_closed_on_arrival(proxy):
    held = [connect(proxy.url) for _ in range(CAP)]
    try:
        wait_until(lambda: proxy.context.metrics.connections.value() == CAP, "the proxy to count the held connections")
        with connect(proxy.url) as extra:
            wait_until(lambda: closed_by_peer(extra), "the proxy to close the connection over the cap")
        assert cut(proxy, "connection_cap") == 1
    finally:
        for conn in held:
            conn.close()
    wait_until(lambda: proxy.context.metrics.connections.value() == 0, "the held connections to be let go")
    assert requests.get(proxy.url + "/", timeout=30).status_code == 200
