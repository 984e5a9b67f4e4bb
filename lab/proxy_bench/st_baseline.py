"""The reranking server a user would write instead of es-rerank: the baseline of `bench proxy rerank`.

A plain aiohttp app: take the client's search, ask the upstream for the top `window` hits
(`from=0, size=window`, the request es-rerank sends too, so a replay upstream answers both),
score `(query, title + text)` pairs with sentence-transformers' `CrossEncoder.predict` (fp16 on
CUDA), reorder the hits and return the client's page. One model, called on one thread off the
event loop; no caching, no cross-request batching, no fallback: what a short script does.

PyTorch and sentence-transformers are imported only in the baseline's own process.

Example:
    >>> search_query({"query": {"multi_match": {"query": "gene therapy", "fields": ["title", "text"]}}})
    'gene therapy'
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import aiohttp
from aiohttp import web

from es_rerank.errors import ConfigError


def search_query(body: dict) -> str:
    """The query text of es-rerank's BM25 search body (a `multi_match`, or a `match` on one field)."""
    query = body.get("query") or {}
    for kind in ("multi_match", "match"):
        clause = query.get(kind)
        if isinstance(clause, dict):
            text = clause.get("query")
            if text is None and len(clause) == 1:  # {"match": {"field": "text"}} or {"field": {"query": ...}}
                value = next(iter(clause.values()))
                text = value.get("query") if isinstance(value, dict) else value
            if isinstance(text, str):
                return text
    raise ValueError(f"no multi_match or match query text in {json.dumps(query)[:200]}")


def load_cross_encoder(model_dir: Path, device: str, max_length: int):
    """`sentence_transformers.CrossEncoder` on `device`, in fp16 on CUDA, cutting pairs at `max_length`."""
    import torch
    from sentence_transformers import CrossEncoder

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = CrossEncoder(str(model_dir), device=device, max_length=max_length)
    if device == "cuda":
        model.model.half()
    return model


def baseline_app(upstream: str, model, window: int, fields: Sequence[str], batch_size: int) -> web.Application:
    """The aiohttp app: relay the window search, rerank it with `model.predict`, answer the page."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="cross-encoder")
    base = upstream.rstrip("/")

    async def search(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        start, size = int(body.get("from", 0)), int(body.get("size", 10))
        query = search_query(body)
        upstream_body = {**body, "from": 0, "size": max(window, start + size)}
        session: aiohttp.ClientSession = request.app["session"]
        async with session.post(f"{base}/{request.match_info['index']}/_search", json=upstream_body) as response:
            result = await response.json()
        hits = result["hits"]["hits"]
        texts = [" ".join(str((hit.get("_source") or {}).get(name, "")) for name in fields) for hit in hits]
        if hits:
            scores = await asyncio.get_running_loop().run_in_executor(
                pool, lambda: model.predict([(query, text) for text in texts], batch_size=batch_size,
                                            show_progress_bar=False))
            order = sorted(range(len(hits)), key=lambda i: -float(scores[i]))
            hits = [{**hits[i], "_score": float(scores[i])} for i in order]
        result["hits"]["hits"] = hits[start:start + size]
        return web.json_response(result)

    async def open_session(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def close_session(app: web.Application) -> None:
        await app["session"].close()
        pool.shutdown(wait=False)

    app = web.Application(client_max_size=1 << 26)
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_post("/{index}/_search", search)
    return app


def serve_baseline(upstream: str, model_dir: str, device: str, max_length: int, window: int, fields: list[str],
                   batch_size: int, port_out) -> None:
    """Process entry point: load the model, serve on a free port, report the port on `port_out` (a queue)."""
    model = load_cross_encoder(Path(model_dir), device, max_length)

    async def main() -> None:
        runner = web.AppRunner(baseline_app(upstream, model, window, fields, batch_size), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_out.put(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


def baseline_launcher(model_dir: Path, device: str, max_length: int, window: int, fields: Sequence[str],
                      batch_size: int = 32, ready_timeout_s: float = 300.0):
    """A launcher (upstream URL -> context yielding the server's URL) running the baseline in its own process."""
    if not (Path(model_dir) / "config.json").is_file():
        raise ConfigError(f"{model_dir} is not a Hugging Face model directory (no config.json)",
                          hint="give --baseline-model the checkpoint the export was made from")

    @contextlib.contextmanager
    def launch(upstream: str) -> Iterator[str]:
        context = multiprocessing.get_context("spawn")
        ports = context.Queue()
        process = context.Process(target=serve_baseline, daemon=True,
                                  args=(upstream, str(model_dir), device, max_length, window, list(fields),
                                        batch_size, ports))
        process.start()
        try:
            try:
                port = ports.get(timeout=ready_timeout_s)
            except Exception as exc:  # queue.Empty: the model did not load in time, or the process died
                raise ConfigError(f"the sentence-transformers baseline did not start within {ready_timeout_s:.0f} s "
                                  f"(exit code {process.exitcode})",
                                  hint="run `python -c 'from sentence_transformers import CrossEncoder'` "
                                       "to see why it fails to load") from exc
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.join(10)

    return launch
