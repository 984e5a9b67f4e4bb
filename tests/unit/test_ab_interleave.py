import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from es_rerank.proxy.online_ab.interleave import credit, outcome, seeded_coins, team_draft


def pairs(merged):
    return list(zip(merged.ids, merged.teams))


# Hand-worked examples. R = reranked list (team "rerank"), B = BM25 list (team "bm25").

def test_shared_documents_go_to_the_team_that_picks_them_first():
    # R = a b c d, B = b a d c; round 1 coin: R first -> a(R), B wants b -> b(B)
    # round 2 coin: B first -> B skips b, a; picks d(B); R skips b; picks c(R)
    merged = team_draft(list("abcd"), list("badc"), coins=[True, False])
    assert pairs(merged) == [("a", "rerank"), ("b", "bm25"), ("d", "bm25"), ("c", "rerank")]


def test_identical_lists_alternate_teams_but_keep_the_order():
    # Both rank a b c d. The merged list is a b c d whatever the coins; only the credit changes.
    merged = team_draft(list("abcd"), list("abcd"), coins=[False, True])
    assert pairs(merged) == [("a", "bm25"), ("b", "rerank"), ("c", "rerank"), ("d", "bm25")]


def test_disjoint_lists_interleave_one_by_one():
    merged = team_draft(["r1", "r2"], ["b1", "b2"], coins=[True, True])
    assert pairs(merged) == [("r1", "rerank"), ("b1", "bm25"), ("r2", "rerank"), ("b2", "bm25")]


def test_a_duplicate_inside_one_list_is_placed_once():
    # R = a a b (a repeated, e.g. one id from two indices), B = c
    merged = team_draft(["a", "a", "b"], ["c"], coins=[True])
    assert pairs(merged) == [("a", "rerank"), ("c", "bm25"), ("b", "rerank")]


def test_when_one_list_runs_out_the_other_keeps_picking():
    merged = team_draft(["a"], ["a", "x", "y"], coins=[True])
    # round 1: R picks a; B skips a, picks x; R is empty, so B picks y
    assert pairs(merged) == [("a", "rerank"), ("x", "bm25"), ("y", "bm25")]


def test_length_caps_the_merged_list():
    merged = team_draft(list("abcdef"), list("fedcba"), coins=itertools.repeat(True), length=3)
    assert pairs(merged) == [("a", "rerank"), ("f", "bm25"), ("b", "rerank")]


def test_running_out_of_coins_is_an_error_that_says_what_to_pass():
    with pytest.raises(ValueError, match="seeded_coins"):
        team_draft(list("ab"), list("cd"), coins=[])


def test_clicks_credit_the_contributing_team():
    merged = team_draft(list("abcd"), list("badc"), coins=[True, False])
    # clicks on b (pos 2, bm25) and d (pos 3, bm25) and c (pos 4, rerank); b clicked twice counts once
    counts = credit(merged.teams, [2, 2, 3, 4])
    assert counts == {"rerank": 1, "bm25": 2}
    assert outcome(counts) == "loss"
    assert outcome(credit(merged.teams, [1])) == "win"
    assert outcome(credit(merged.teams, [1, 2])) == "tie"
    assert outcome(credit(merged.teams, [])) is None
    assert credit(merged.teams, [0, 9]) == {"rerank": 0, "bm25": 0}  # positions outside the list


def test_seeded_coins_are_reproducible_and_balanced():
    first = list(itertools.islice(seeded_coins("k|q"), 2000))
    assert first == list(itertools.islice(seeded_coins("k|q"), 2000))
    assert first != list(itertools.islice(seeded_coins("k|q2"), 2000))
    assert 0.45 < sum(first) / len(first) < 0.55


ids = st.lists(st.sampled_from(list("abcdefghij")), max_size=10)


@settings(max_examples=300, deadline=None)
@given(a=ids, b=ids, seed=st.text(max_size=5))
def test_team_draft_invariants(a, b, seed):
    merged = team_draft(a, b, seeded_coins(seed))
    # every distinct item of both lists appears exactly once
    assert sorted(merged.ids) == sorted(set(a) | set(b))
    # each team's picks keep that team's own ranking order
    for team, ranking in (("rerank", a), ("bm25", b)):
        picked = [item for item, t in zip(merged.ids, merged.teams) if t == team]
        order = [ranking.index(item) for item in picked]
        assert order == sorted(order)
    # while both lists still had something to give, team sizes never differ by more than one
    count = {"rerank": 0, "bm25": 0}
    for team in merged.teams:
        count[team] += 1
        placed = set(merged.ids[: sum(count.values())])
        if set(a) - placed and set(b) - placed:
            assert abs(count["rerank"] - count["bm25"]) <= 1
