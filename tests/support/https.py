"""A tiny HTTPS client for tests: one request, the raw status, headers and body back.

Tests of access control compare exact statuses and bodies, so this client never raises on
4xx/5xx and never retries. It trusts only the CA file it is given.

Example:
    >>> reply = call("https://127.0.0.1:9280", "GET", "/", ca_file=Path("root-ca.pem"))   # doctest: +SKIP
    >>> reply.status   # doctest: +SKIP
    401
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.security_config import Account

JsonBody = dict | list | str | bytes | None


@dataclass(frozen=True)
class Reply:
    """One HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON.

        Example:
            >>> Reply(200, {}, b'{"a": 1}').json()
            {'a': 1}
        """
        return json.loads(self.body)


def call(base_url: str, method: str, path: str, *, ca_file: Path, account: Account | None = None,
         body: JsonBody = None, timeout: float = 30.0) -> Reply:
    """Send one request; `body` is JSON-encoded unless it is already str/bytes (then NDJSON).

    Example:
        >>> call("https://127.0.0.1:9280", "GET", "/_cat/indices", ca_file=Path("root-ca.pem"))   # doctest: +SKIP
        Reply(status=401, ...)
    """
    if not path.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {path!r}")
    headers = {}
    data = None
    if body is not None:
        if isinstance(body, (dict, list)):
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        else:
            data = body.encode() if isinstance(body, str) else body
            headers["Content-Type"] = "application/x-ndjson"
    if account is not None:
        headers["Authorization"] = account.authorization
    request = urllib.request.Request(base_url + path, data=data, method=method, headers=headers)
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return Reply(response.status, _lower(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, _lower(error.headers.items()), error.read())


def _lower(items) -> dict[str, str]:
    return {key.lower(): value for key, value in items}
