"""Slow clients: slowloris headers, stalled bodies, a chunk that never arrives. Others must be served meanwhile.

Example:
    >>> [case.name for case in SLOW_CASES][:2]
    ['slowloris_headers', 'slow_body_search']
"""

from __future__ import annotations

import socket
import time

from lab.reliability.abuse_target import AbuseTarget, CustomCase, normal_search
from lab.reliability.rawhttp import exchange, host_port, read_reply

SLOWLORIS_CONNECTIONS = 200
SLOWLORIS_ROUNDS = 6
SLOWLORIS_TICK_S = 0.5
# A request from someone else may take this long while slow clients hold connections.
OTHERS_BOUND_S = 2.0
# After a 408 aiohttp lingers up to 10 s reading what the client still sends, then closes.
LINGER_BOUND_S = 12.0


def _served(target: AbuseTarget, problems: list[str], while_what: str) -> None:
    """One ordinary search; note a problem when it fails or is slower than OTHERS_BOUND_S."""
    reply = exchange(target.proxy_url, normal_search(target), timeout_s=OTHERS_BOUND_S + 5)
    if reply.status != 200 or reply.seconds > OTHERS_BOUND_S:
        problems.append(f"an ordinary search {while_what} got {reply.status or reply.error} "
                        f"after {reply.seconds:.2f}s (expected 200 within {OTHERS_BOUND_S}s)")


def _open(target: AbuseTarget, first: bytes) -> socket.socket | None:
    try:
        conn = socket.create_connection(host_port(target.proxy_url), timeout=5)
        conn.sendall(first)
        return conn
    except OSError:
        return None


def slowloris_headers(target: AbuseTarget) -> list[str]:
    """Many connections send their headers a line at a time, never finishing; ordinary searches still pass.
    """
    problems: list[str] = []
    conns = [c for c in (_open(target, b"GET / HTTP/1.1\r\nHost: proxy\r\n") for _ in range(SLOWLORIS_CONNECTIONS)) if c]
    try:
        if len(conns) < SLOWLORIS_CONNECTIONS // 2:
            problems.append(f"only {len(conns)} of {SLOWLORIS_CONNECTIONS} slow connections opened")
        for tick in range(SLOWLORIS_ROUNDS):
            for conn in conns:
                try:
                    conn.sendall(b"X-Slow-%d: still coming\r\n" % tick)
                except OSError:
                    pass  # a closed slow connection is fine
            _served(target, problems, f"while {len(conns)} slowloris connections were open")
            time.sleep(SLOWLORIS_TICK_S)
    finally:
        for conn in conns:
            conn.close()
    return problems


def _stalled_body(target: AbuseTarget, head: bytes, first_bytes: bytes, wait_for_close: bool = False) -> list[str]:
    """Send `head` and `first_bytes` of the body, then stall: expect 408 within the body timeout.

    With `wait_for_close`, also wait for the proxy to close the connection (after aiohttp's linger).
    """
    problems: list[str] = []
    conn = _open(target, head + first_bytes)
    if conn is None:
        return ["could not connect to the proxy"]
    with conn:
        started = time.monotonic()
        _served(target, problems, "while a body stalled")
        conn.settimeout(target.body_timeout_s + 10)
        reply = read_reply(conn, started)
        limit = target.body_timeout_s + 3
        if reply.status != 408 or reply.seconds > limit:
            problems.append(f"a stalled body got {reply.status or reply.error} after {reply.seconds:.1f}s; "
                            f"expected 408 within {limit:g}s")
        if wait_for_close and not reply.closed and not _closes_within(conn, LINGER_BOUND_S):
            problems.append(f"the connection was still open {LINGER_BOUND_S:g}s after the 408")
    return problems


def _closes_within(conn: socket.socket, seconds: float) -> bool:
    """Wait for EOF, discarding anything that arrives; True when the peer closed in time."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        conn.settimeout(left)
        try:
            if not conn.recv(65536):
                return True
        except socket.timeout:
            return False
        except OSError:
            return True
    return False


def slow_body_search(target: AbuseTarget) -> list[str]:
    """A `_search` whose body stops after 10 of 100 bytes.
    """
    head = (f"POST /{target.index}/_search HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n").encode()
    return _stalled_body(target, head, b'{"query":', wait_for_close=True)


def slow_body_bulk(target: AbuseTarget) -> list[str]:
    """A pass-through `_bulk` whose body stalls (read whole before relaying, so nothing reaches OpenSearch).
    """
    head = (b"POST /_bulk HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/x-ndjson\r\n"
            b"Content-Length: 5000\r\n\r\n")
    return _stalled_body(target, head, b'{"index":{"_index":"rel-abuse-slow"}}\n')


def chunk_never_arrives(target: AbuseTarget) -> list[str]:
    """A chunked `_search` that announces a 64 KiB chunk and sends 5 bytes of it.
    """
    head = (f"POST /{target.index}/_search HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    return _stalled_body(target, head, b"10000\r\n{\"que")


SLOW_CASES = (
    CustomCase("slowloris_headers", "slow", slowloris_headers),
    CustomCase("slow_body_search", "slow", slow_body_search),
    CustomCase("slow_body_bulk", "slow", slow_body_bulk),
    CustomCase("chunk_never_arrives", "slow", chunk_never_arrives),
)
