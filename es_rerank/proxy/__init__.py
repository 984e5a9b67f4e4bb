"""The drop-in rerank proxy in front of OpenSearch.

`create_app(settings, scorer)` builds the aiohttp app; `ProxyThread` runs it in-process on a
background thread; `serve_subprocess` runs `es-rerank serve` as a child process; `run_until_signal`
runs it in the foreground with a SIGTERM drain.
"""

from es_rerank.proxy.app import create_app
from es_rerank.proxy.server import ProxyThread, run_until_signal, serve_subprocess

__all__ = ["create_app", "ProxyThread", "run_until_signal", "serve_subprocess"]
