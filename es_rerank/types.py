"""Small value types shared across modules."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hit:
    """One search hit: its id, the BM25 score OpenSearch gave it, and its `_source`.

    Example:
        >>> Hit("4983", 12.5, {"title": "Microstructural development"}).text(("title", "text"))
        'Microstructural development'
    """

    doc_id: str
    score: float
    source: dict = field(default_factory=dict, compare=False)

    def text(self, fields: tuple[str, ...]) -> str:
        """The hit's text for scoring: the named fields joined; missing ones count as empty."""
        parts = []
        for name in fields:
            value = self.source.get(name)
            if isinstance(value, list):
                value = " ".join(str(v) for v in value if v is not None)
            if value:
                parts.append(str(value))
        return " ".join(parts)
