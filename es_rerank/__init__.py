"""es-rerank: a cross-encoder reranker that sits in front of OpenSearch."""

__version__ = "0.1.0"
