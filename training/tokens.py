"""Tokenize queries and documents once, up front, then build padded pair batches by slicing. Torch-free.

A training step needs thousands of pairs; tokenizing each again would keep the GPU waiting.
The ids are stored once per text in flat int32 arrays (cheap to share with forked DataLoader
workers). Pairs are joined, cut and padded by the serving code itself (`PairTemplate`,
`EncodedBatch`), so a training pair is the pair `PairEncoder` builds at serving time (query
cut to `query_max_length` tokens, then only the document cut so the pair fits `max_length`);
a unit test checks that on real SciFact pairs.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from es_rerank.scoring.token_batches import PAD_MULTIPLE, EncodedBatch, EncodedPair
from es_rerank.scoring.pair_encoding import PairTemplate, check_query_room

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


class TokenStore:
    """Token ids of queries (cut to `query_max_length`) and documents (cut to what can ever fit)."""

    def __init__(self, tokenizer, max_length: int, query_max_length: int, pad_id: int) -> None:
        """`tokenizer` is a `tokenizers.Tokenizer`; a copy is used with truncation and padding off."""
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.template = PairTemplate.learn(self.tokenizer)
        check_query_room(max_length, query_max_length, self.template.specials)
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

    def pair(self, qid: str, doc_id: str) -> EncodedPair:
        """One pair, unpadded, cut to `max_length` as the serving encoder cuts it."""
        return self.template.fit(self._queries[qid], self.document_ids(doc_id), self.max_length)

    def pair_ids(self, qid: str, doc_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Unpadded (input ids, token type ids) of one pair."""
        pair = self.pair(qid, doc_id)
        return np.array(pair.ids, np.int32), np.array(pair.type_ids, np.int32)

    def pair_batch(self, qids: Sequence[str], doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """int64 `input_ids`, `token_type_ids`, `attention_mask` of shape (pairs, width), padded to
        the longest pair rounded up to a multiple of 8 (never past `max_length`).
        """
        if len(qids) != len(doc_ids):
            raise ValueError(f"got {len(qids)} query ids but {len(doc_ids)} document ids; expected one per pair")
        # one pack for the whole batch, as the serving encoder packs a window
        pairs = self.template.pack([self._queries[q] for q in qids], [self.document_ids(d) for d in doc_ids],
                                   self.max_length)
        batch = EncodedBatch.pad(pairs, np.arange(len(pairs)), self.pad_id, PAD_MULTIPLE, self.max_length)
        return batch.arrays(MODEL_INPUTS)
