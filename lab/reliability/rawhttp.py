"""Raw-socket HTTP/1.1 exchanges: send exact bytes, read one response, tell whether the server closed.

Abuse cases need bytes no HTTP library would send (two Content-Lengths, broken chunks), and
they need to see what the server did with the connection afterwards.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

READ_TIMEOUT_S = 10.0
CLOSE_PROBE_S = 0.5


@dataclass(frozen=True)
class RawReply:
    """One response read off a raw socket.

    `status` is 0 when no parsable response came; `error` then says what happened instead
    (`closed`, `reset`, `timeout` or the parser's complaint). `closed` is True when the server
    closed the connection after answering; `extra` holds bytes that followed the response
    unasked (a second response would mean a request was smuggled).
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    closed: bool = False
    error: str = ""
    seconds: float = 0.0
    extra: bytes = b""

    def json(self):
        """The body parsed as JSON, or None when it is not JSON.

        Example:
            >>> RawReply(200, body=b'{"a": 1}').json(), RawReply(400, body=b"bad").json()
            ({'a': 1}, None)
        """
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def error_type(self) -> str:
        """`error.type` of an OpenSearch-shaped error body, or "" when the body has none.

        Example:
            >>> RawReply(400, body=b'{"error": {"type": "parsing_exception"}, "status": 400}').error_type()
            'parsing_exception'
        """
        body = self.json()
        error = body.get("error") if isinstance(body, dict) else None
        return str(error.get("type", "")) if isinstance(error, dict) else ""


def host_port(url: str) -> tuple[str, int]:
    """(host, port) of an http URL.

    Example:
        >>> host_port("http://127.0.0.1:9201")
        ('127.0.0.1', 9201)
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ValueError(f"expected a plain http://host:port URL, got {url!r}")
    return parts.hostname, parts.port


def exchange(url: str, data: bytes, timeout_s: float = READ_TIMEOUT_S) -> RawReply:
    """Connect, send `data` as is, and read the first response; never raises on network trouble.
    """
    started = time.monotonic()
    try:
        conn = socket.create_connection(host_port(url), timeout=timeout_s)
    except ConnectionResetError:
        return RawReply(0, error="reset", closed=True, seconds=time.monotonic() - started)
    except OSError as exc:
        return RawReply(0, error=f"connect: {type(exc).__name__}", seconds=time.monotonic() - started)
    with conn:
        try:
            conn.sendall(data)
        except OSError as exc:  # the server may close before reading everything; its answer may still be there
            if not isinstance(exc, (BrokenPipeError, ConnectionResetError)):
                return RawReply(0, error=f"send: {type(exc).__name__}", seconds=time.monotonic() - started)
        return read_reply(conn, started)


def read_reply(conn: socket.socket, started: float | None = None) -> RawReply:
    """Read one response from a connected socket, then probe whether the server closed it.
    """
    started = time.monotonic() if started is None else started
    response = http.client.HTTPResponse(conn)
    try:
        response.begin()
        body = response.read()
    except socket.timeout:
        return RawReply(0, error="timeout", seconds=time.monotonic() - started)
    except ConnectionResetError:
        return RawReply(0, error="reset", closed=True, seconds=time.monotonic() - started)
    except http.client.RemoteDisconnected:
        return RawReply(0, error="closed", closed=True, seconds=time.monotonic() - started)
    except (http.client.HTTPException, OSError) as exc:
        return RawReply(0, error=f"{type(exc).__name__}: {exc}", seconds=time.monotonic() - started)
    seconds = time.monotonic() - started
    headers = {name.lower(): value for name, value in response.getheaders()}
    closed, extra = _after(conn)
    return RawReply(response.status, headers, body, closed=closed, seconds=seconds, extra=extra)


def _after(conn: socket.socket) -> tuple[bool, bytes]:
    """(closed, extra bytes): whether the peer closed within a short wait, and anything it sent unasked."""
    conn.settimeout(CLOSE_PROBE_S)
    extra = b""
    try:
        while len(extra) < 1 << 16:
            chunk = conn.recv(1 << 16)
            if not chunk:
                return True, extra
            extra += chunk
    except socket.timeout:
        return False, extra
    except OSError:
        return True, extra
    return False, extra
