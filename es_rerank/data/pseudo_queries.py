"""Pseudo-queries cut from the documents of an index, for adapting a reranker without judgments. Torch-free.

Three sources, each giving a query and the document it came from with that query's text taken
out (the *masked positive*, what the model sees as the query's own document):

- `title`: the title is the query; the positive is the body without the title (Cranfield's
  body opens by repeating its title, so a leading repeat is cut too).
- `first`: the first sentence of the body (after a title repeat) is the query; the positive is
  the document without that sentence.
- `ict`: inverse cloze (Lee et al. 2019): a sentence drawn from the rest of the body is the
  query; the positive is the document without that sentence.

Taking the query's text out of the positive matters: otherwise "find the document containing
this string" solves the training task, and that is not what real queries ask. Otherwise a
positive keeps the layout of the served text (title, the body's repeat of the title if it has
one, body): a first CPU run whose positives lacked Cranfield's repeated title learnt that cue
(documents without it scored about 1.2 logits higher) instead of relevance. A query longer
than `max_words` words is cut to a window of that many words; queries shorter than `min_words`
and positives shorter than `min_positive_words` are dropped.

Everything random is drawn from a generator seeded by (seed, source, document id), so the
pseudo-queries of a document do not depend on the order documents arrive in, nor on which
other documents exist.

Example:
    >>> doc = SourceDocument("7", "wing flutter at transonic speed .",
    ...     "wing flutter at transonic speed . flutter tests of a swept wing were made in a wind tunnel . "
    ...     "the flutter speed fell sharply near mach one for every sweep angle that was tried .")
    >>> [(q.source, q.text) for q in pseudo_queries_of(doc, ("title", "first"), seed=0)]
    [('title', 'wing flutter at transonic speed .'), ('first', 'flutter tests of a swept wing were made in a wind tunnel .')]
    >>> pseudo_queries_of(doc, ("first",), seed=0)[0].positive_text  # the layout of the served text, less the query
    'wing flutter at transonic speed . wing flutter at transonic speed . the flutter speed fell sharply near mach one for every sweep angle that was tried .'
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from es_rerank.errors import ConfigError

SOURCES = ("title", "first", "ict")
# A sentence ends at . ! or ? followed by white space (Cranfield spaces its full stops: "word . next").
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
_WORD = re.compile(r"\w", re.UNICODE)


@dataclass(frozen=True)
class SourceDocument:
    """A document as pseudo-queries see it: a title (may be empty) and a body."""

    doc_id: str
    title: str
    body: str

    @classmethod
    def from_source(cls, doc_id: str, source: Mapping[str, object], fields: Sequence[str]) -> "SourceDocument":
        """Map an index `_source` onto title and body: with two or more `fields`, the first is the
        title and the others, joined, the body; with one field there is no title.

        Example:
            >>> SourceDocument.from_source("1", {"title": "T", "text": "B"}, ("title", "text"))
            SourceDocument(doc_id='1', title='T', body='B')
        """
        def value(name: str) -> str:
            raw = source.get(name)
            if isinstance(raw, list):
                raw = " ".join(str(v) for v in raw if v is not None)
            return " ".join(str(raw).split()) if raw else ""

        if len(fields) == 1:
            return cls(doc_id, "", value(fields[0]))
        return cls(doc_id, value(fields[0]), " ".join(v for v in (value(f) for f in fields[1:]) if v))


@dataclass(frozen=True)
class PseudoQuery:
    """One pseudo-query and the document it was cut from (its positive, never one of its negatives)."""

    qid: str
    source: str
    doc_id: str
    text: str
    positive_text: str


@dataclass(frozen=True)
class PseudoQuerySettings:
    """How pseudo-queries are cut. Validated on construction.

    Example:
        >>> PseudoQuerySettings(sources=("title", "bogus"))
        Traceback (most recent call last):
        ...
        es_rerank.errors.ConfigError: pseudo-query sources must be among title, first, ict; got bogus (e.g. title,ict, each name once)
    """

    sources: tuple[str, ...] = SOURCES
    ict_per_doc: int = 1
    min_words: int = 3
    max_words: int = 24
    min_positive_words: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        sources = tuple(self.sources)
        bad = [s for s in sources if s not in SOURCES]
        if bad or not sources or len(set(sources)) != len(sources):
            raise ConfigError(f"pseudo-query sources must be among {', '.join(SOURCES)}; got {', '.join(bad or sources)}",
                              hint="e.g. title,ict, each name once")
        object.__setattr__(self, "sources", sources)
        for name, low in (("ict_per_doc", 1), ("min_words", 1), ("max_words", 1), ("min_positive_words", 1),
                          ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"pseudo-query setting {name} must be an integer >= {low}, got {value!r}")
        if self.max_words < self.min_words:
            raise ConfigError(f"max_words {self.max_words} is below min_words {self.min_words}",
                              hint="max_words must be at least min_words")


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, split after . ! or ? followed by white space.

    Example:
        >>> split_sentences("a flat plate . shear flow past it . ")
        ['a flat plate .', 'shear flow past it .']
        >>> split_sentences("Values of 3.5 were seen. Others (n = 7) not!")
        ['Values of 3.5 were seen.', 'Others (n = 7) not!']
    """
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def word_count(text: str) -> int:
    """Space-separated tokens that hold a letter or digit (a lone "." is not a word).

    Example:
        >>> word_count("flow past a plate .")
        4
    """
    return sum(1 for token in text.split() if _WORD.search(token))


def pseudo_queries_of(doc: SourceDocument, sources: Sequence[str] = SOURCES, seed: int = 0,
                      settings: PseudoQuerySettings | None = None) -> list[PseudoQuery]:
    """The pseudo-queries of one document, in `sources` order.

    `settings` gives the limits (its own `sources` and `seed` are ignored here: the arguments win).

    Example:
        >>> pseudo_queries_of(SourceDocument("1", "", "too short ."), ("ict",))
        []
    """
    settings = settings or PseudoQuerySettings()
    title = " ".join(doc.title.split())
    echo, body = _split_title_echo(" ".join(doc.body.split()), title)
    sentences = split_sentences(body)
    # A positive keeps the layout of a served document (title, its repeat in the body if the
    # collection has one, body): a layout only positives had would be a cue to learn instead
    # of relevance. Only a title query's positive must lose both copies of the title.
    head = [echo] if echo else []
    made: list[PseudoQuery] = []
    for source in sources:
        rng = np.random.default_rng(_seed_words(seed, source, doc.doc_id))
        if source == "title":
            picks = [(title, body)] if title else []
        elif source == "first":
            picks = [(sentences[0], _join(title, head + sentences[1:]))] if sentences else []
        elif source == "ict":
            rest = list(range(1, len(sentences)))  # the first sentence is the `first` source's
            chosen = sorted(rng.permutation(rest)[:settings.ict_per_doc].tolist()) if rest else []
            picks = [(sentences[i], _join(title, head + sentences[:i] + sentences[i + 1:])) for i in chosen]
        else:
            raise ConfigError(f"unknown pseudo-query source {source!r}", hint=f"use one of {', '.join(SOURCES)}")
        for n, (span, positive) in enumerate(picks):
            query = _window(span, settings.max_words, rng)
            if word_count(query) < settings.min_words or word_count(positive) < settings.min_positive_words:
                continue
            made.append(PseudoQuery(f"{source}-{doc.doc_id}-{n}", source, doc.doc_id, query, positive))
    return made


def make_pseudo_queries(docs: Iterable[SourceDocument], settings: PseudoQuerySettings,
                        max_queries: int | None = None) -> list[PseudoQuery]:
    """Pseudo-queries of every document, ordered by document id, then source; with `max_queries`,
    the hashed subset of that size (which depends only on the seed and the query ids).

    Example:
        >>> docs = [SourceDocument(str(i), f"title number {i} of many", "x " * 20) for i in range(5)]
        >>> [q.qid for q in make_pseudo_queries(docs, PseudoQuerySettings(sources=("title",)), max_queries=2)]
        ['title-0-0', 'title-2-0']
    """
    if max_queries is not None and (isinstance(max_queries, bool) or not isinstance(max_queries, int)
                                    or max_queries < 1):
        raise ConfigError(f"max_queries must be a positive integer or unset, got {max_queries!r}")
    by_id = {doc.doc_id: doc for doc in docs}
    made = [q for doc_id in sorted(by_id, key=natural_key)
            for q in pseudo_queries_of(by_id[doc_id], settings.sources, settings.seed, settings)]
    if max_queries is not None and len(made) > max_queries:
        keep = set(sorted((q.qid for q in made), key=lambda qid: _hash(settings.seed, "keep", qid))[:max_queries])
        made = [q for q in made if q.qid in keep]
    return made


def hashed_subset(doc_ids: Iterable[str], limit: int, seed: int) -> set[str]:
    """`limit` of the ids, chosen by a hash of (seed, id): the same ids whatever the order.

    Example:
        >>> hashed_subset(["a", "b", "c"], 2, 0) == hashed_subset(["c", "b", "a"], 2, 0)
        True
    """
    return set(sorted(doc_ids, key=lambda d: _hash(seed, "doc", d))[:limit])


def scan_index_documents(client, index: str, fields: Sequence[str], page: int = 500) -> Iterator[SourceDocument]:
    """Every document of `index`, read with a scroll (opensearch-py `helpers.scan`), as `SourceDocument`s.
    """
    from opensearchpy import helpers
    from opensearchpy.exceptions import NotFoundError, OpenSearchException

    from es_rerank.errors import OpenSearchUnavailable

    try:
        for hit in helpers.scan(client, index=index, query={"query": {"match_all": {}}}, _source=list(fields),
                                size=page, scroll="5m", preserve_order=False):
            yield SourceDocument.from_source(str(hit["_id"]), hit.get("_source") or {}, fields)
    except NotFoundError as exc:
        raise OpenSearchUnavailable(f"index {index!r} does not exist",
                                    hint="index the corpus first with `es-rerank index`") from exc
    except OpenSearchException as exc:
        raise OpenSearchUnavailable(f"reading the documents of {index!r} failed: {exc}",
                                    hint="check that the cluster is healthy") from exc


def natural_key(value: str) -> tuple:
    """Sort key putting numeric ids in numeric order before other ids.

    Example:
        >>> sorted(["10", "9", "b", "a"], key=natural_key)
        ['9', '10', 'a', 'b']
    """
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def _split_title_echo(body: str, title: str) -> tuple[str, str]:
    """(leading repeat of the title, rest of the body); the repeat is matched case-insensitively
    on words and is empty when the body does not open with the title.

    Example:
        >>> _split_title_echo("Wing Flutter . tests were made .", "wing flutter .")
        ('Wing Flutter .', 'tests were made .')
    """
    words, title_words = body.split(), title.split()
    if title_words and [w.lower() for w in words[:len(title_words)]] == [w.lower() for w in title_words]:
        return " ".join(words[:len(title_words)]), " ".join(words[len(title_words):])
    return "", body


def _join(title: str, sentences: Sequence[str]) -> str:
    return " ".join(part for part in (title, " ".join(sentences)) if part)


def _window(span: str, max_words: int, rng: np.random.Generator) -> str:
    """`span`, or a random window of `max_words` of its words when it is longer."""
    words = span.split()
    if len(words) <= max_words:
        return span
    start = int(rng.integers(0, len(words) - max_words + 1))
    return " ".join(words[start:start + max_words])


def _seed_words(seed: int, source: str, doc_id: str) -> list[int]:
    digest = hashlib.sha256(f"{seed}\0{source}\0{doc_id}".encode("utf-8")).digest()
    return [int.from_bytes(digest[i:i + 4], "big") for i in range(0, 16, 4)]


def _hash(seed: int, purpose: str, key: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{purpose}\0{key}".encode("utf-8")).digest()
