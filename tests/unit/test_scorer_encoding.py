"""Pair encoding with the Rust tokenizer: truncation keeps the query, batches group by length."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer

from es_rerank.scoring.token_batches import PAD_MULTIPLE, EncodedPair, batch_by_length
from es_rerank.scoring.pair_encoding import PairEncoder
from tests.fixtures_export import packaged_encoder

CLS, SEP = 101, 102


@pytest.fixture(scope="module")
def tokenizer_file():
    return packaged_encoder() / "tokenizer.json"


def plain_ids(tokenizer_file, text: str) -> list[int]:
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer.encode(text, add_special_tokens=False).ids


def test_a_huge_document_is_cut_and_the_query_kept(tokenizer_file):
    encoder = PairEncoder.from_file(tokenizer_file, max_length=64, query_max_length=16, pad_id=0)
    query = "does vitamin d reduce fractures"
    document = "Vitamin D was given to older adults in a randomised trial. " * 20000  # ~1.2 MB
    (pair,) = encoder.encode([query], [document])
    query_ids = plain_ids(tokenizer_file, query)
    doc_ids = plain_ids(tokenizer_file, document[:5000])
    assert len(pair) == 64
    assert pair.ids.tolist()[:len(query_ids) + 2] == [CLS, *query_ids, SEP]
    assert pair.ids.tolist()[len(query_ids) + 2:-1] == doc_ids[:64 - len(query_ids) - 3]
    assert pair.ids.tolist()[-1] == SEP
    assert pair.type_ids.tolist() == [0] * (len(query_ids) + 2) + [1] * (64 - len(query_ids) - 2)


def test_a_long_query_is_cut_to_the_query_limit(tokenizer_file):
    encoder = PairEncoder.from_file(tokenizer_file, max_length=64, query_max_length=8, pad_id=0)
    query = "one two three four five six seven eight nine ten eleven twelve"
    (pair,) = encoder.encode([query], ["short document"])
    assert pair.ids.tolist()[:10] == [CLS, *plain_ids(tokenizer_file, query)[:8], SEP]
    assert pair.ids.tolist()[10:] == [*plain_ids(tokenizer_file, "short document"), SEP]


@pytest.mark.parametrize("document", [
    "word " * 3000,
    "x" * 50000,                                  # no whitespace at all
    "line one\nline two\t" * 2000,
    "東京の天気は明日晴れる予報です。" * 500,         # CJK: one token per character
    "a" + " " * 40000 + "b c d e f",               # the prefix holds no token; must widen
])
def test_prefix_cut_tokenizes_like_the_whole_text(tokenizer_file, document):
    encoder = PairEncoder.from_file(tokenizer_file, max_length=128, query_max_length=16, pad_id=0)
    (pair,) = encoder.encode(["q"], [document])
    budget = 128 - 3 - 1
    assert pair.ids.tolist()[3:-1] == plain_ids(tokenizer_file, document)[:budget]


def test_empty_and_non_ascii_texts_encode(tokenizer_file):
    encoder = PairEncoder.from_file(tokenizer_file, max_length=32, query_max_length=8, pad_id=0)
    empty_doc, empty_query, accents = encoder.encode(["q", "", "café"], ["", "doc", "Müller über 東京 😴"])
    assert empty_doc.ids.tolist() == [CLS, *plain_ids(tokenizer_file, "q"), SEP, SEP]
    assert empty_query.ids.tolist() == [CLS, SEP, *plain_ids(tokenizer_file, "doc"), SEP]
    assert len(accents) > 6 and accents.ids[-1] == SEP
    assert encoder.encode([], []) == []


def test_batches_group_by_length_and_cover_every_pair_once(tokenizer_file):
    encoder = PairEncoder.from_file(tokenizer_file, max_length=64, query_max_length=16, pad_id=0)
    rng = np.random.default_rng(0)
    documents = [" ".join(["token"] * int(n)) for n in rng.integers(0, 80, size=37)]
    batches = list(encoder.batches(["a query"] * 37, documents, batch_size=8))
    rows = np.concatenate([b.rows for b in batches])
    assert sorted(rows.tolist()) == list(range(37))
    widths = [b.shape[1] for b in batches]
    assert widths == sorted(widths) and all(w <= 64 for w in widths)
    for batch in batches:
        assert batch.shape[0] <= 8
        lengths = batch.attention_mask.sum(axis=1)
        assert batch.shape[1] == min(64, -(-int(lengths.max()) // PAD_MULTIPLE) * PAD_MULTIPLE)
        assert np.all(batch.input_ids[batch.attention_mask == 0] == 0)


def test_padding_never_exceeds_the_model_limit():
    pairs = [EncodedPair([1] * 61, [0] * 61)]
    (batch,) = batch_by_length(pairs, 4, pad_id=0, max_width=61)
    assert batch.shape == (1, 61)


def test_bad_arguments_say_what_was_expected(tokenizer_file):
    encoder = PairEncoder.from_file(tokenizer_file, max_length=32, query_max_length=8, pad_id=0)
    with pytest.raises(ValueError, match="got 2 queries but 1 documents"):
        encoder.encode(["a", "b"], ["c"])
    with pytest.raises(TypeError, match="document 1 must be a str, got NoneType"):
        encoder.encode(["a", "b"], ["c", None])
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        list(encoder.batches(["a"], ["b"], 0))
    with pytest.raises(ValueError, match="leaves no room for the document"):
        PairEncoder.from_file(tokenizer_file, max_length=16, query_max_length=13, pad_id=0)


def test_cached_documents_encode_exactly_as_fresh_ones(tokenizer_file):
    cached = PairEncoder.from_file(tokenizer_file, max_length=48, query_max_length=8, pad_id=0, doc_cache_size=4)
    fresh = PairEncoder.from_file(tokenizer_file, max_length=48, query_max_length=8, pad_id=0, doc_cache_size=0)
    documents = [f"document number {i} " * (i + 1) for i in range(10)]
    queries = ["short q", "a much longer query with many words in it"]
    for query in queries * 2:  # the second round is served from the cache (LRU of 4 keeps the last ones)
        assert cached.encode([query] * 10, documents) == fresh.encode([query] * 10, documents)
