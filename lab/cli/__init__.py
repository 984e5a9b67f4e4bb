"""`es-rerank bench` for the scorer, the proxy and reliability: the lab side of the CLI."""
