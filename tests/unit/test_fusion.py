"""Fusion math: normalisation edge cases, weights, request overrides, recipe files."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from es_rerank.errors import ConfigError, ScoringError
from es_rerank.scoring.fusion import (FusionWeights, fuse, fused_order, load_weights, normalise, parse_fusion_override,
                              weights_from_mapping)
from es_rerank.types import Hit

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


def test_zscore_uses_the_population_std():
    scores = np.array([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])  # mean 5, population std 2
    assert normalise(scores, "zscore").tolist() == [-1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 1.0, 2.0]


def test_minmax_maps_to_the_unit_interval():
    assert normalise([10.0, 15.0, 20.0], "minmax").tolist() == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("norm", ["zscore", "minmax"])
@pytest.mark.parametrize("scores", [[3.7, 3.7, 3.7], [0.1] * 100, [-2.5], [1e30, 1e30]])
def test_inputs_that_cannot_discriminate_normalise_to_zeros(norm, scores):
    out = normalise(scores, norm)
    assert out.tolist() == [0.0] * len(scores)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("norm", ["zscore", "minmax"])
def test_an_empty_window_gives_an_empty_array(norm):
    assert normalise([], norm).shape == (0,)
    assert fuse([], [], None, FusionWeights(ce=1, bm25=1, norm=norm)).shape == (0,)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_are_refused_with_their_position(bad):
    with pytest.raises(ScoringError) as caught:
        normalise([1.0, bad, 2.0])
    assert "position 1" in caught.value.message and "BM25" in caught.value.hint


def test_nan_in_an_input_with_weight_is_refused_by_fuse():
    with pytest.raises(ScoringError, match="ce scores hold 1 NaN"):
        fuse([3.0, 2.0], [0.5, float("nan")], None, FusionWeights(ce=0.5, bm25=0.5))


@pytest.mark.parametrize("norm", ["zscore", "minmax"])
def test_finite_scores_whose_range_overflows_still_normalise(norm):
    out = normalise([-1e308, 0.0, 1e308], norm)
    assert np.isfinite(out).all() and out[0] < out[1] < out[2]


def test_an_unknown_norm_is_refused():
    with pytest.raises(ConfigError, match="unknown normalisation 'rank'"):
        normalise([1.0, 2.0], "rank")


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=2, max_size=50).filter(lambda xs: max(xs) - min(xs) > 1e-3))
def test_zscore_has_mean_zero_and_unit_std(scores):
    out = normalise(scores, "zscore")
    assert abs(out.mean()) < 1e-6
    assert abs(out.std() - 1.0) < 1e-6


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=2, max_size=50).filter(lambda xs: max(xs) - min(xs) > 1e-3),
       st.floats(min_value=0.01, max_value=100), st.floats(min_value=-100, max_value=100))
def test_fused_order_ignores_the_scale_and_offset_of_an_input(bm25, scale, shift):
    # Normalising over the window is what makes BM25 from a long query comparable to a short one.
    dense = list(reversed(bm25))
    weights = FusionWeights(ce=0, bm25=0.4, dense=0.6)
    plain = fuse(bm25, None, dense, weights)
    shifted = fuse([scale * x + shift for x in bm25], None, dense, weights)
    assert np.allclose(plain, shifted, atol=1e-4)


def test_fuse_is_the_weighted_sum_of_normalised_inputs():
    bm25, ce, dense = [12.0, 7.0, 3.0, 1.0], [-2.0, 4.0, 0.5, 1.0], [0.31, 0.35, 0.12, 0.50]
    weights = FusionWeights(ce=0.5, bm25=0.3, dense=0.2, norm="zscore")
    expected = 0.5 * normalise(ce) + 0.3 * normalise(bm25) + 0.2 * normalise(dense)
    got = fuse(bm25, ce, dense, weights)
    assert got.dtype == np.float32
    assert np.allclose(got, expected, atol=1e-6)


def test_inputs_with_weight_zero_are_ignored_even_when_missing_or_broken():
    weights = FusionWeights(ce=1.0, bm25=0.0, dense=0.0)
    assert fuse([float("nan"), 1.0], [0.2, 0.8], None, weights).tolist() == fuse([0, 0], [0.2, 0.8], [9, 9], weights).tolist()
    only_bm25 = FusionWeights(ce=0, bm25=1)
    assert np.argsort(-fuse([5.0, 9.0, 1.0], None, None, only_bm25)).tolist() == [1, 0, 2]


def test_a_missing_input_that_has_weight_is_refused():
    with pytest.raises(ScoringError, match="fusion weight dense=0.2 but no dense scores") as caught:
        fuse([1.0, 2.0], [0.1, 0.2], None, FusionWeights(ce=0.5, bm25=0.3, dense=0.2))
    assert "set its fusion weight to 0" in caught.value.hint


def test_inputs_of_different_lengths_are_refused():
    with pytest.raises(ScoringError, match="ce has 3 scores, expected 2"):
        fuse([1.0, 2.0], [0.1, 0.2, 0.3], None, FusionWeights(ce=0.5, bm25=0.5))


def test_one_candidate_keeps_a_finite_score():
    assert fuse([7.5], [3.0], [0.4], FusionWeights(ce=0.5, bm25=0.3, dense=0.2)).tolist() == [0.0]


def test_all_equal_bm25_leaves_the_order_to_the_cross_encoder():
    order = np.argsort(-fuse([4.0, 4.0, 4.0], [0.1, 0.9, 0.5], None, FusionWeights(ce=0.2, bm25=0.8)))
    assert order.tolist() == [1, 2, 0]


def test_fused_order_breaks_ties_by_bm25_rank():
    hits = [Hit("a", 3.0), Hit("b", 2.0), Hit("c", 1.0)]
    # ce mirrors bm25, so with equal weights every fused score is 0: BM25 order must survive.
    ordered = fused_order(hits, [1.0, 2.0, 3.0], None, FusionWeights(ce=1, bm25=1))
    assert [h.doc_id for h, _ in ordered] == ["a", "b", "c"]
    assert [s for _, s in ordered] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("kwargs, message", [
    ({"ce": -0.1}, "fusion weight ce must be a finite number >= 0, got -0.1"),
    ({"bm25": math.nan}, "fusion weight bm25 must be a finite number >= 0, got nan"),
    ({"dense": math.inf}, "fusion weight dense must be a finite number >= 0, got inf"),
    ({"ce": True}, "fusion weight ce must be a finite number >= 0, got True"),
    ({"ce": "0.5"}, "fusion weight ce must be a finite number >= 0, got '0.5'"),
    ({"ce": 0, "bm25": 0, "dense": 0}, "fusion weights ce, bm25 and dense are all 0"),
    ({"norm": "l2"}, "fusion norm must be one of zscore, minmax, got 'l2'"),
])
def test_weights_say_what_came_and_what_was_expected(kwargs, message):
    with pytest.raises(ConfigError) as caught:
        FusionWeights(**kwargs)
    assert caught.value.message == message
    assert caught.value.hint


def test_weights_are_frozen_and_floats():
    weights = FusionWeights(ce=1, bm25=0, dense=2)
    assert weights.as_dict() == {"ce": 1.0, "bm25": 0.0, "dense": 2.0, "norm": "zscore"}
    assert type(weights.ce) is float
    assert weights.needs_ce and weights.needs_dense
    with pytest.raises(AttributeError):
        weights.ce = 0.0  # type: ignore[misc]


def test_a_request_override_is_parsed():
    weights = parse_fusion_override({"ce": 0.5, "bm25": 0.3, "dense": 0.2, "norm": "minmax"})
    assert weights == FusionWeights(ce=0.5, bm25=0.3, dense=0.2, norm="minmax")


def test_an_override_fills_left_out_keys_from_the_index_weights():
    base = FusionWeights(ce=0.7, bm25=0.3, dense=0.0, norm="zscore")
    assert parse_fusion_override({"norm": "minmax"}, base=base) == FusionWeights(ce=0.7, bm25=0.3, norm="minmax")
    assert parse_fusion_override({"bm25": 1}, base=base) == FusionWeights(ce=0.7, bm25=1.0)
    # Without a base, left-out weights are 0: {"bm25": 1} means BM25 alone.
    assert parse_fusion_override({"bm25": 1}) == FusionWeights(ce=0.0, bm25=1.0)


@pytest.mark.parametrize("value, message", [
    ([0.5, 0.5], "ext.rerank.fusion must be an object with keys ce, bm25, dense, norm; got a list"),
    ("zscore", "ext.rerank.fusion must be an object with keys ce, bm25, dense, norm; got the string 'zscore'"),
    (None, "ext.rerank.fusion must be an object with keys ce, bm25, dense, norm; got null"),
    ({"ce": 0.5, "weight": 1}, "ext.rerank.fusion has unknown key(s) weight"),
    ({"ce": "0.5"}, "ext.rerank.fusion.ce must be a number >= 0, got the string '0.5'"),
    ({"bm25": True}, "ext.rerank.fusion.bm25 must be a number >= 0, got the boolean true"),
    ({"dense": None}, "ext.rerank.fusion.dense must be a number >= 0, got null"),
    ({"dense": [1]}, "ext.rerank.fusion.dense must be a number >= 0, got a list"),
    ({"ce": 1, "norm": 3}, "ext.rerank.fusion.norm must be a string, got int 3"),
    ({"ce": 1, "norm": "rank"}, "ext.rerank.fusion: fusion norm must be one of zscore, minmax, got 'rank'"),
    ({"ce": -1}, "ext.rerank.fusion: fusion weight ce must be a finite number >= 0, got -1"),
    ({"ce": 0}, "ext.rerank.fusion: fusion weights ce, bm25 and dense are all 0"),
])
def test_bad_overrides_raise_a_config_error_a_proxy_can_turn_into_a_400(value, message):
    with pytest.raises(ConfigError) as caught:
        parse_fusion_override(value)
    assert caught.value.message == message
    assert caught.value.hint


def test_config_blocks_name_where_they_came_from():
    with pytest.raises(ConfigError, match=r"^indices.scifact.fusion.ce must be a number"):
        weights_from_mapping({"ce": "x"}, where="indices.scifact.fusion")


def test_weights_are_read_from_a_recipe(tmp_path):
    recipe = tmp_path / "w.yaml"
    recipe.write_text("kind: fusion-weights\nweights: {ce: 0.0, bm25: 0.4, dense: 0.6, norm: zscore}\n")
    assert load_weights(recipe) == FusionWeights(ce=0.0, bm25=0.4, dense=0.6)


@pytest.mark.parametrize("text, message", [
    ("kind: fusion-weights\n", "has no top-level `weights` block"),
    ("weights: {ce: high}\n", "weights.ce must be a number >= 0, got the string 'high'"),
    ("weights: [1, 2\n", "cannot read fusion weights"),
])
def test_bad_recipes_say_what_is_wrong(tmp_path, text, message):
    recipe = tmp_path / "w.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_weights(recipe)


def test_committed_recipes_load_and_were_not_fitted_on_test_judgments():
    import yaml

    from tests.conftest import REPO

    recipes = sorted((REPO / "recipes" / "fusion").glob("*.yaml"))
    assert recipes, "recipes/fusion/ holds the fitted weights"
    for path in recipes:
        assert isinstance(load_weights(path), FusionWeights)
        fitted = yaml.safe_load(path.read_text())["fitted_on"]
        assert fitted["split"] != "test" and fitted["dataset"] != "cranfield", path.name
