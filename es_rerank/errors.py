"""One error tree for the whole project.

Every error carries what went wrong and what to do about it, so the CLI can print both and
the proxy can turn them into OpenSearch-shaped error bodies.

Example:
    >>> err = DatasetError("line 3 of corpus.jsonl is not JSON", hint="fix the line or pass --skip-bad")
    >>> str(err)
    'line 3 of corpus.jsonl is not JSON (fix the line or pass --skip-bad)'
"""

from __future__ import annotations


class EsRerankError(Exception):
    """Base of every error es-rerank raises on purpose.

    `hint` says what the user can do about it; the CLI prints it after the message.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(EsRerankError):
    """An option, config file or environment variable has a bad value."""

    exit_code = 2


class DatasetError(EsRerankError):
    """A BEIR-layout file is missing or malformed."""


class LocalNodeError(EsRerankError):
    """The local OpenSearch node could not be fetched, started or stopped."""


class OpenSearchUnavailable(EsRerankError):
    """The OpenSearch cluster could not be reached or answered with an error."""


class IndexingError(EsRerankError):
    """Bulk indexing failed or the index disagrees with the corpus."""


class ModelError(EsRerankError):
    """A model directory or checkpoint is missing, malformed or unsuitable."""


class ScoringError(EsRerankError):
    """The scorer failed while scoring; the proxy falls back to BM25 on it."""


class ScoringOutOfMemory(ScoringError):
    """The accelerator ran out of memory while scoring."""
