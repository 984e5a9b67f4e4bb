"""Packed pairs: the window as three flat arrays must read, pad and travel exactly as pairs one by one."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from es_rerank.proxy.model_server.frames import REQUEST_HEAD, parse_request, request_frame
from es_rerank.scoring.pair_encoding import PairTemplate
from es_rerank.scoring.token_batches import (EncodedBatch, EncodedPair, PackedPairs, batch_by_length,
                                             concat_encoded)

token_lists = st.lists(st.integers(0, 30_000), max_size=12)
pair_lists = st.lists(st.tuples(token_lists, token_lists), max_size=20)


def reference_pad(pairs: list[EncodedPair], rows: list[int], pad_id: int, width: int) -> tuple[list, list, list]:
    """Padding written the obvious way, one row at a time."""
    ids, mask, types = [], [], []
    for r in rows:
        n = len(pairs[r])
        ids.append(list(pairs[r].ids) + [pad_id] * (width - n))
        types.append(list(pairs[r].type_ids) + [0] * (width - n))
        mask.append([1] * n + [0] * (width - n))
    return ids, mask, types


@settings(max_examples=150, deadline=None)
@given(pair_lists, st.data())
def test_padding_packed_rows_equals_padding_each_row_by_hand(raw, data):
    pairs = [EncodedPair(ids, [k % 2] * len(ids)) for k, (ids, _) in enumerate(raw) if ids]
    if not pairs:
        return
    rows = data.draw(st.lists(st.integers(0, len(pairs) - 1), min_size=1, max_size=len(pairs), unique=True))
    batch = EncodedBatch.pad(PackedPairs.of(pairs), np.array(rows), pad_id=7, multiple=4)
    width = batch.shape[1]
    assert width == -(-max(len(pairs[r]) for r in rows) // 4) * 4
    ids, mask, types = reference_pad(pairs, rows, 7, width)
    assert batch.input_ids.tolist() == ids and batch.attention_mask.tolist() == mask
    assert batch.token_type_ids.tolist() == types and batch.rows.tolist() == rows


@settings(max_examples=150, deadline=None)
@given(pair_lists, st.integers(4, 20))
def test_packing_pairs_equals_joining_each_pair_by_hand(raw, max_length):
    template = PairTemplate([101], [0], [102], [0], [102], [1], query_type=0, doc_type=1)
    queries = [q[: max_length - 4] for q, _ in raw]  # a query is cut to its own budget before
    packed = template.pack(queries, [d for _, d in raw], max_length)
    assert len(packed) == len(raw)
    for pair, query, (_, doc) in zip(packed, queries, raw):
        kept = doc[: max_length - 3 - len(query)]
        assert pair.ids.tolist() == [101, *query, 102, *kept, 102]
        assert pair.type_ids.tolist() == [0] * (len(query) + 2) + [1] * (len(kept) + 1)


def test_a_window_travels_to_the_model_server_and_merges_without_changing_a_token():
    first = PackedPairs.of([EncodedPair([101, 5, 102], [0, 0, 0]), EncodedPair([101, 102], [0, 1])])
    second = [EncodedPair([101, 9, 9, 102], [0, 0, 1, 1])]
    frame = request_frame(3, first)
    _, count, tokens = REQUEST_HEAD.unpack(frame[:REQUEST_HEAD.size])
    received = parse_request(frame[REQUEST_HEAD.size:], count, tokens)
    assert received == first and list(received) == list(first)
    merged = concat_encoded([received, PackedPairs.of(second)])
    assert isinstance(merged, PackedPairs) and merged == [*first, *second]
    assert merged[1:] == [first[1], second[0]] and merged[-1] == second[0]
    assert concat_encoded([[1], [2, 3]]) == [1, 2, 3]  # a scorer's own encoding stays a list
    (batch,) = batch_by_length(merged, 8, pad_id=0, max_width=4)
    assert batch.rows.tolist() == [1, 0, 2] and batch.input_ids[0].tolist() == [101, 102, 0, 0]


def test_packed_pairs_refuse_lengths_that_do_not_add_up_and_compare_by_value():
    with pytest.raises(ValueError, match="add up to 4 tokens, but 3 ids"):
        PackedPairs(np.arange(3), np.zeros(3), np.array([2, 2]))
    packed = PackedPairs.of([EncodedPair([1, 2], [0, 0])])
    assert packed == [EncodedPair([1, 2], [0, 0])] and packed != [EncodedPair([1, 2], [0, 1])]
    assert packed != "ab" and PackedPairs.of([]) == [] and repr(packed) == "PackedPairs(1 sequences, 2 tokens)"
