"""Scorers for the reliability runs: a small real CPU model, and a wrapper that injects model faults.

`TermOverlapScorer` is a real (if simple) relevance model, deterministic and fast enough for a
2-core machine under load. `FaultScorer` wraps any scorer and, while a fault is switched on in
its control file, stalls past the deadline, raises out-of-memory, or returns NaN. The control
file lets the bench switch faults in a proxy that runs as a separate process.

Example:
    >>> scorer = TermOverlapScorer()
    >>> scorer.score_pairs(["wing lift", "wing lift"], ["lift of a wing section", "a wing"]).argmax().item()
    0
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from es_rerank.errors import ScoringError, ScoringOutOfMemory

WORD = re.compile(r"\w+")
FAULTS = ("none", "stall", "oom", "error", "nan")


class TermOverlapScorer:
    """Score = distinct query words in the document, minus a hair per document word (shorter wins ties)."""

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Scores in input order.

        Example:
            >>> TermOverlapScorer().score_pairs(["a b"], ["b c"]).dtype
            dtype('float32')
        """
        out = []
        for query, document in zip(queries, documents):
            doc_words = WORD.findall(document.lower())
            out.append(len(set(WORD.findall(query.lower())) & set(doc_words)) - 1e-4 * len(doc_words))
        return np.asarray(out, dtype=np.float32)


def write_fault(control: Path, fault: str, stall_s: float = 0.0) -> None:
    """Switch the fault a FaultScorer reading `control` injects (`none` turns it off).

    Example:
        >>> import tempfile
        >>> control = Path(tempfile.mkdtemp()) / "fault"
        >>> write_fault(control, "stall", 1.5); control.read_text()
        'stall 1.5'
    """
    if fault not in FAULTS:
        raise ValueError(f"fault must be one of {FAULTS}, got {fault!r}")
    tmp = control.with_suffix(".tmp")
    tmp.write_text(f"{fault} {stall_s:g}")
    tmp.replace(control)  # atomic: the scorer never reads half a line


def read_fault(control: Path) -> tuple[str, float]:
    """(fault, stall seconds) from a control file; ("none", 0) when it is missing or unreadable.

    Example:
        >>> read_fault(Path("/nonexistent/fault"))
        ('none', 0.0)
    """
    try:
        name, _, seconds = control.read_text().partition(" ")
        return (name, float(seconds or 0)) if name in FAULTS else ("none", 0.0)
    except (OSError, ValueError):
        return "none", 0.0


class FaultScorer:
    """Wraps a scorer; each call first reads the control file and injects the fault it names."""

    def __init__(self, inner, control: Path) -> None:
        self.inner = inner
        self.control = Path(control)

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """The inner scorer's scores, unless a fault is on.

        Example:
            >>> import tempfile
            >>> control = Path(tempfile.mkdtemp()) / "fault"
            >>> scorer = FaultScorer(TermOverlapScorer(), control)
            >>> write_fault(control, "oom")
            >>> scorer.score_pairs(["q"], ["d"])
            Traceback (most recent call last):
            ...
            es_rerank.errors.ScoringOutOfMemory: injected: CUDA out of memory (fault file ...)
        """
        fault, stall_s = read_fault(self.control)
        if fault == "oom":
            raise ScoringOutOfMemory(f"injected: CUDA out of memory (fault file {self.control.name})")
        if fault == "error":
            raise ScoringError(f"injected: model failure (fault file {self.control.name})")
        if fault == "stall":
            time.sleep(stall_s)
        scores = self.inner.score_pairs(queries, documents)
        if fault == "nan":
            return np.full(len(documents), np.nan, dtype=np.float32)
        return scores
