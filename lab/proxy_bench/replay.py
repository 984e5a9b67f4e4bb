"""Recorded real OpenSearch responses, replayed by a tiny upstream where no OpenSearch can run (the GPU machine).

`record_replay` plans each client search with the proxy's own planning code, sends the window
request the proxy would send to a real node, and stores request and response in a JSONL file.
`ReplayServer` answers those exact requests with the stored bytes.

Example:
    >>> key = request_key("/scifact/_search", b'{"size": 100, "from": 0}')
    >>> key == request_key("/scifact/_search", b'{"from":0,"size":100}')
    True
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from aiohttp import web

from es_rerank.proxy.settings import IndexRule, ProxySettings, UpstreamSettings
from es_rerank.errors import ConfigError
from es_rerank.proxy.httperror import error_body
from es_rerank.proxy.plan import (DEFAULT_MAX_RESULT_WINDOW, RerankPlan, SearchRequest, WindowRequest, max_result_window,
                                  plan_search, settings_path, window_request)
from es_rerank.engine.bm25_query import bm25_body
from es_rerank.data.textfiles import open_text

FORMAT = "es-rerank-replay/1"


@dataclass(frozen=True)
class ReplayEntry:
    """One recorded upstream exchange; `client_body` is set for searches (what a client sends the proxy)."""

    method: str
    path_qs: str
    body: str
    status: int
    content_type: str
    response: str
    client_path: str = ""
    client_body: str = ""


def request_key(path_qs: str, body: bytes | str) -> tuple[str, str]:
    """Match requests by path and JSON meaning, not by key order or whitespace.

    Example:
        >>> request_key("/", b"")
        ('/', '')
    """
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    if not body.strip():
        return path_qs, ""
    return path_qs, json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))


def client_search(index: str, query: str, size: int, fields: tuple[str, ...]) -> tuple[str, bytes]:
    """The search a client sends: es-rerank's BM25 query (the same one `ab` and the quickstart use).

    Example:
        >>> client_search("scifact", "gene", 10, ("title", "text"))[0]
        '/scifact/_search'
    """
    return f"/{index}/_search", json.dumps(bm25_body(query, size=size, fields=fields)).encode()


def record_replay(opensearch_url: str, index: str, queries: Iterable[str], out: Path, window: int = 100,
                  page_size: int = 10, fields: tuple[str, ...] = ("title", "text")) -> int:
    """Record the upstream side of a reranked search for each query; returns the number of searches stored.
    """
    base = opensearch_url.rstrip("/")
    settings = ProxySettings(UpstreamSettings(base), rules=(IndexRule(index, fields, window),), max_window=max(window, 1000))
    entries = [_fetch(base, "GET", "/", b""), _fetch(base, "GET", settings_path(index), b"")]
    mrw = max_result_window(json.loads(entries[1].response)) if entries[1].status == 200 else DEFAULT_MAX_RESULT_WINDOW
    searches = 0
    for text in queries:
        client_path, client_body = client_search(index, text, page_size, fields)
        plan = plan_search(SearchRequest("POST", client_path, "", {"Content-Type": "application/json"}, client_body),
                           settings)
        if not isinstance(plan, RerankPlan):
            continue
        upstream = window_request(plan, mrw)
        if not isinstance(upstream, WindowRequest):  # a page beyond max_result_window
            continue
        entry = _fetch(base, "POST", upstream.path_qs, upstream.body)
        if entry.status != 200:
            raise ConfigError(f"OpenSearch answered {entry.status} while recording: {entry.response[:200]}",
                              hint=f"check that index {index} exists and holds the corpus")
        entries.append(ReplayEntry(**{**entry.__dict__, "client_path": client_path,
                                      "client_body": client_body.decode()}))
        searches += 1
    out.parent.mkdir(parents=True, exist_ok=True)
    with open_text(out, "w") as handle:  # .gz: a top-100 SciFact replay shrinks about 5x
        handle.write(json.dumps({"format": FORMAT, "index": index, "window": window, "page_size": page_size,
                                 "fields": list(fields)}) + "\n")
        for entry in entries:
            handle.write(json.dumps(entry.__dict__) + "\n")
    return searches


def _fetch(base: str, method: str, path_qs: str, body: bytes) -> ReplayEntry:
    request = urllib.request.Request(base + path_qs, data=body or None, method=method,
                                     headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, content_type, payload = response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        status, content_type, payload = exc.code, exc.headers.get("Content-Type", ""), exc.read()
    return ReplayEntry(method, path_qs, body.decode(), status, content_type, payload.decode("utf-8"))


@dataclass(frozen=True)
class ReplayFile:
    """A loaded replay file: its header and entries."""

    header: dict
    entries: tuple[ReplayEntry, ...]

    @property
    def searches(self) -> list[ReplayEntry]:
        """The recorded searches (entries with a client request), in recording order.

        Example:
            >>> len(ReplayFile({}, (ReplayEntry("GET", "/", "", 200, "", "{}"),)).searches)
            0
        """
        return [e for e in self.entries if e.client_path]


def load_replay(path: Path) -> ReplayFile:
    """Read a file written by `record_replay`, checking its format line.
    """
    if not Path(path).is_file():
        raise ConfigError(f"replay file {path} does not exist",
                          hint="record one with `es-rerank bench proxy record` next to a running OpenSearch")
    with open_text(path) as handle:
        header = json.loads(handle.readline() or "{}")
        if header.get("format") != FORMAT:
            raise ConfigError(f"{path} is not an es-rerank replay file (format {header.get('format')!r})",
                              hint="record one with `es-rerank bench proxy record`")
        entries = tuple(ReplayEntry(**json.loads(line)) for line in handle if line.strip())
    return ReplayFile(header, entries)


def replay_app(replay: ReplayFile) -> web.Application:
    """An aiohttp app answering each recorded request with its recorded status and bytes.

    Example:
        >>> replay_app(ReplayFile({}, ())).router is not None
        True
    """
    table = {request_key(e.path_qs, e.body): e for e in replay.entries}

    async def answer(request: web.Request) -> web.Response:
        entry = table.get(request_key(request.raw_path, await request.read()))
        if entry is None:
            return web.Response(status=404, content_type="application/json",
                                body=error_body(404, "resource_not_found_exception",
                                                f"no recorded response for {request.method} {request.raw_path}"))
        return web.Response(status=entry.status, body=entry.response.encode("utf-8"),
                            headers={"Content-Type": entry.content_type or "application/json; charset=UTF-8"})

    app = web.Application(client_max_size=1 << 26)
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def serve_replay(path: str, port_out, host: str = "127.0.0.1") -> None:
    """Process entry point: serve a replay file on a free port and report the port on `port_out` (a queue).
    """
    import asyncio

    async def main() -> None:
        runner = web.AppRunner(replay_app(load_replay(Path(path))), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        port_out.put(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())
