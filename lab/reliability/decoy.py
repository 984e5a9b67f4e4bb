"""A decoy server: the "other upstream" an attacker would like the proxy to reach.

It accepts TCP connections on loopback and records every byte; abuse cases aim Host headers,
absolute URIs and odd paths at it, and then assert it never saw a single connection.

Example:
    >>> with DecoyServer() as decoy:
    ...     decoy.port > 0, decoy.connections
    (True, 0)
"""

from __future__ import annotations

import socket
import threading


class DecoyServer:
    """A listener on 127.0.0.1 that counts connections and keeps what they sent (bounded)."""

    MAX_KEPT = 1 << 16

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="decoy", daemon=True)

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`, for Host headers and absolute URIs.

        Example:
            >>> with DecoyServer() as decoy:
            ...     decoy.address.startswith("127.0.0.1:")
            True
        """
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by __exit__
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        conn.settimeout(2.0)
        with conn:
            try:
                while chunk := conn.recv(4096):
                    with self._lock:
                        if len(self.received) < self.MAX_KEPT:
                            self.received += chunk
            except OSError:
                pass

    def __enter__(self) -> "DecoyServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        except OSError:
            pass
        self._sock.close()
        self._thread.join(5)
