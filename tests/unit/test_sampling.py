"""Group sampling: never a positive among the negatives, deterministic per (seed, step), sharded exactly."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from es_rerank.data.mining import Group
from es_rerank.errors import ConfigError
from es_rerank.training.data import prepare_groups, split_dev
from es_rerank.training.sampling import GroupSampler, SampledGroup, repeat_sources, shard

doc_ids = st.sampled_from([f"d{i}" for i in range(12)])


@st.composite
def groups(draw):
    """Groups whose positive and negative lists may overlap, as a hand-edited file could."""
    result = []
    for qid in range(draw(st.integers(1, 6))):
        positives = draw(st.lists(doc_ids, min_size=1, max_size=3, unique=True))
        negatives = draw(st.lists(doc_ids, min_size=1, max_size=10, unique=True))
        if set(negatives) - set(positives):
            result.append(Group(str(qid), tuple(positives), tuple(negatives)))
    return result


@settings(max_examples=200, deadline=None)
@given(groups(), st.integers(2, 8), st.integers(1, 5), st.integers(1, 10), st.integers(0, 3), st.integers(0, 20))
def test_sampled_negatives_are_never_positives(gs, group_size, queries_per_step, neg_depth, seed, step):
    if not gs:
        return
    kept, _ = prepare_groups(gs, {f"d{i}" for i in range(12)}, {g.qid: "q" for g in gs}, neg_depth)
    if not kept:
        return
    by_qid = {g.qid: g for g in gs}
    batch = GroupSampler(kept, group_size, queries_per_step, seed, neg_depth).step(step)
    assert len(batch) == queries_per_step
    for sampled in batch:
        original = by_qid[sampled.qid]
        assert sampled.positive in original.positives
        assert not set(sampled.negatives) & set(original.positives)
        assert len(set(sampled.negatives)) == len(sampled.negatives) <= group_size - 1
        allowed = [d for d in original.negatives if d not in original.positives][:neg_depth]
        assert set(sampled.negatives) <= set(allowed)


def test_group_drops_positives_from_its_negatives():
    assert Group("1", ("a", "b"), ("b", "c", "a", "d")).negatives == ("c", "d")


def test_the_batch_of_a_step_depends_only_on_seed_and_step():
    gs = [Group(str(i), (f"p{i}",), tuple(f"n{i}-{j}" for j in range(20))) for i in range(10)]
    a, b = GroupSampler(gs, 4, 3, seed=7), GroupSampler(gs, 4, 3, seed=7)
    assert a.step(5) == b.step(5)
    b.step(0)  # visiting other steps first changes nothing
    assert a.step(5) == b.step(5)
    assert GroupSampler(gs, 4, 3, seed=8).step(5) != a.step(5)


def test_each_query_is_seen_once_per_epoch():
    gs = [Group(str(i), ("p",), ("n1", "n2")) for i in range(7)]
    sampler = GroupSampler(gs, 2, queries_per_step=7, seed=0)
    for step in range(3):
        assert sorted(g.qid for g in sampler.step(step)) == sorted(g.qid for g in gs)


def test_short_groups_are_ragged_not_padded():
    sampler = GroupSampler([Group("1", ("p",), ("n1",))], group_size=8, queries_per_step=2, seed=0)
    assert [len(g.doc_ids) for g in sampler.step(0)] == [2, 2]


def test_ranks_and_micro_batches_cover_the_batch_exactly_once():
    batch = [SampledGroup(str(i), ("p", "n")) for i in range(12)]
    seen = [g.qid for rank in range(3) for micro in shard(batch, rank, 3, 2) for g in micro]
    assert seen == [g.qid for g in batch]


def test_dev_split_is_stable_disjoint_and_independent_of_order():
    qids = [str(i) for i in range(100)]
    train, dev = split_dev(qids, 0.1, seed=0)
    assert len(dev) == 10 and not set(train) & set(dev) and set(train) | set(dev) == set(qids)
    assert sorted(split_dev(list(reversed(qids)), 0.1, seed=0)[1]) == sorted(dev)
    assert split_dev(qids, 0.1, seed=1)[1] != dev


def mixed_groups() -> list[Group]:
    """Groups of a two-source mixture (`es-rerank mix` ids), the sources interleaved."""
    return [Group(f"{source}:{i}", ("p",), ("n1", "n2", "n3")) for i in range(3) for source in ("scifact", "squad")]


def test_repeat_sources_repeats_only_the_named_sources_groups_in_place():
    gs = mixed_groups()
    repeated = repeat_sources(gs, {"scifact": 3})
    assert [g.qid for g in repeated] == [q for g in gs for q in ([g.qid] * 3 if g.qid.startswith("scifact:")
                                                                  else [g.qid])]
    assert Counter(g.qid.split(":")[0] for g in repeated) == {"scifact": 9, "squad": 3}
    assert repeat_sources(gs, {}) == gs and repeat_sources(gs, {"scifact": 1}) == gs


def test_repeat_sources_refuses_a_name_no_group_comes_from_and_names_those_that_do():
    with pytest.raises(ConfigError, match=r"names nfcorpus, .* starts with 'nfcorpus:'; the groups' sources are "
                                          r"scifact, squad") as refused:
        repeat_sources(mixed_groups(), {"scifact": 2, "nfcorpus": 2})
    assert "leave it out" in refused.value.hint
    with pytest.raises(ConfigError, match=r"sources are none \(no query id holds ':': not a mixture\)"):
        repeat_sources([Group("7", ("p",), ("n",))], {"scifact": 2})
    with pytest.raises(ConfigError, match="names sci"):  # a prefix of a name is not that source
        repeat_sources(mixed_groups(), {"sci": 2})


@pytest.mark.parametrize("repeats", [1, 2, 4])
def test_an_epoch_over_repeated_groups_sees_the_repeated_source_that_many_times(repeats):
    units = repeat_sources(mixed_groups(), {"scifact": repeats})
    sampler = GroupSampler(units, 2, queries_per_step=len(units), seed=3)
    for epoch in range(2):  # one step is one epoch here
        seen = Counter(g.qid for g in sampler.step(epoch))
        assert seen == {**{f"scifact:{i}": repeats for i in range(3)}, **{f"squad:{i}": 1 for i in range(3)}}
