"""Tokenize queries and documents once, up front, then build padded pair batches by slicing. Torch-free.

A training step needs thousands of pairs; tokenizing each again would keep the GPU waiting.
The ids are stored once per text in flat int32 arrays (cheap to share with forked DataLoader
workers), and a pair is assembled with the special-token template of the tokenizer's own
post-processor. The result is the pair `es_rerank.scoring.pair_encoding.PairEncoder` builds at serving
time (query cut to `query_max_length` tokens, then only the document cut so the pair fits
`max_length`); a unit test checks that on real SciFact pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

PAD_MULTIPLE = 8  # the serving encoder's padding multiple: tensor-core friendly widths


@dataclass(frozen=True)
class PairTemplate:
    """Special-token ids and type ids around the two sequences: prefix A middle B suffix."""

    prefix: np.ndarray
    prefix_types: np.ndarray
    middle: np.ndarray
    middle_types: np.ndarray
    suffix: np.ndarray
    suffix_types: np.ndarray
    type_a: int
    type_b: int

    @property
    def specials(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    @classmethod
    def of(cls, tokenizer) -> "PairTemplate":
        """Read the template off the tokenizer's post-processor by encoding a probe pair.
        """
        probe_a = tokenizer.encode("a", add_special_tokens=False)
        probe_b = tokenizer.encode("b", add_special_tokens=False)
        pair = tokenizer.post_process(probe_a, probe_b, add_special_tokens=True)
        ids, types = list(pair.ids), np.array(pair.type_ids, np.int32)
        a0 = _find(ids, probe_a.ids, 0)
        b0 = _find(ids, probe_b.ids, a0 + len(probe_a.ids)) if a0 >= 0 else -1
        if a0 < 0 or b0 < 0 or probe_a.ids == probe_b.ids:
            raise ValueError("cannot read the tokenizer's pair template: expected specials, query, specials, "
                             f"document, specials; got ids {ids}")
        a1, b1 = a0 + len(probe_a.ids), b0 + len(probe_b.ids)
        arr = np.array(ids, np.int32)
        return cls(arr[:a0], types[:a0], arr[a1:b0], types[a1:b0], arr[b1:], types[b1:],
                   int(types[a0]), int(types[b0]))


def _find(haystack: list[int], needle: list[int], start: int) -> int:
    """Index of the first occurrence of `needle` in `haystack` at or after `start`, or -1."""
    for i in range(start, len(haystack) - len(needle) + 1):
        if haystack[i:i + len(needle)] == needle:
            return i
    return -1


class TokenStore:
    """Token ids of queries (cut to `query_max_length`) and documents (cut to what can ever fit)."""

    def __init__(self, tokenizer, max_length: int, query_max_length: int, pad_id: int) -> None:
        """`tokenizer` is a `tokenizers.Tokenizer`; a copy is used with truncation and padding off."""
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.template = PairTemplate.of(self.tokenizer)
        if query_max_length > max_length - self.template.specials - 1:
            raise ValueError(f"query_max_length {query_max_length} leaves no room for a document within "
                             f"max_length {max_length}; expected at most {max_length - self.template.specials - 1}")
        self.max_length = max_length
        self.query_max_length = query_max_length
        self.pad_id = pad_id
        self._queries: dict[str, np.ndarray] = {}
        self._doc_index: dict[str, int] = {}
        self._doc_chunks: list[np.ndarray] = []
        self._doc_flat = np.zeros(0, np.int32)
        self._doc_offsets = np.zeros(1, np.int64)

    @classmethod
    def from_pretrained(cls, name_or_path: str, max_length: int, query_max_length: int) -> "TokenStore":
        """Load the tokenizer of a Hugging Face model directory or hub id."""
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(name_or_path)
        return cls(hf.backend_tokenizer, max_length, query_max_length, int(hf.pad_token_id or 0))

    def add_queries(self, texts: Mapping[str, str]) -> None:
        """Tokenize queries not seen yet, cut to `query_max_length` tokens."""
        new = [qid for qid in texts if qid not in self._queries]
        encodings = self.tokenizer.encode_batch([texts[q] for q in new], add_special_tokens=False)
        for qid, encoding in zip(new, encodings):
            self._queries[qid] = np.array(encoding.ids[:self.query_max_length], np.int32)

    def add_documents(self, texts: Mapping[str, str]) -> None:
        """Tokenize documents not seen yet, keeping the longest prefix any pair could use."""
        new = [doc_id for doc_id in texts if doc_id not in self._doc_index]
        if not new:
            return
        keep = self.max_length - self.template.specials
        encodings = self.tokenizer.encode_batch([texts[d] for d in new], add_special_tokens=False)
        chunks = [np.array(e.ids[:keep], np.int32) for e in encodings]
        base = len(self._doc_index)
        for i, doc_id in enumerate(new):
            self._doc_index[doc_id] = base + i
        lengths = np.array([len(c) for c in chunks], np.int64)
        self._doc_offsets = np.concatenate([self._doc_offsets, self._doc_offsets[-1] + np.cumsum(lengths)])
        self._doc_flat = np.concatenate([self._doc_flat, *chunks]) if chunks else self._doc_flat

    def has_query(self, qid: str) -> bool:
        return qid in self._queries

    def has_document(self, doc_id: str) -> bool:
        return doc_id in self._doc_index

    def query_ids(self, qid: str) -> np.ndarray:
        return self._queries[qid]

    def document_ids(self, doc_id: str) -> np.ndarray:
        row = self._doc_index[doc_id]
        return self._doc_flat[self._doc_offsets[row]:self._doc_offsets[row + 1]]

    def pair_ids(self, qid: str, doc_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Unpadded (input ids, token type ids) of one pair."""
        t = self.template
        query = self._queries[qid]
        budget = self.max_length - t.specials - len(query)
        document = self.document_ids(doc_id)[:budget]
        ids = np.concatenate([t.prefix, query, t.middle, document, t.suffix])
        types = np.concatenate([t.prefix_types, np.full(len(query), t.type_a, np.int32), t.middle_types,
                                np.full(len(document), t.type_b, np.int32), t.suffix_types])
        return ids, types

    def pair_batch(self, qids: Sequence[str], doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """int64 `input_ids`, `token_type_ids`, `attention_mask` of shape (pairs, width), padded to
        the longest pair rounded up to a multiple of 8 (never past `max_length`).
        """
        if len(qids) != len(doc_ids):
            raise ValueError(f"got {len(qids)} query ids but {len(doc_ids)} document ids; expected one per pair")
        pairs = [self.pair_ids(q, d) for q, d in zip(qids, doc_ids)]
        longest = max((len(ids) for ids, _ in pairs), default=1)
        width = min(max(longest, -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE), self.max_length)
        width = max(width, longest)
        input_ids = np.full((len(pairs), width), self.pad_id, np.int64)
        token_type_ids = np.zeros((len(pairs), width), np.int64)
        attention_mask = np.zeros((len(pairs), width), np.int64)
        for row, (ids, types) in enumerate(pairs):
            input_ids[row, :len(ids)] = ids
            token_type_ids[row, :len(ids)] = types
            attention_mask[row, :len(ids)] = 1
        return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
