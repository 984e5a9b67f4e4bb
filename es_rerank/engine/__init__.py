"""The search engine: which cluster and its client, local nodes, the one BM25 query.

Everything that knows an engine's wire format lives here, so a second engine joins in one place.
"""
