"""Training settings: recipes, validation with messages that say what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from es_rerank.errors import ConfigError
from es_rerank.training.config import TrainConfig, build_config, merge_settings, read_recipe, write_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


def test_there_are_recipes_for_the_sweep():
    names = {p.stem for p in RECIPES}
    for config in ("lce-g2", "lce-g4", "lce-g8", "lce-g16", "lce-g32", "bce-g2"):
        assert f"scifact-minilm-l6-{config}" in names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_committed_recipe_builds(path):
    config = build_config(read_recipe(path))
    assert config.max_length == 256 and config.precision == "bf16"
    expected = path.stem.split("-")
    assert config.loss == expected[3] and config.group_size == int(expected[4][1:])


def test_sweep_recipes_hold_equal_everything_but_the_loss_and_group(tmp_path):
    configs = [build_config(read_recipe(p)).to_dict() for p in RECIPES if p.stem.startswith("scifact-")]
    varying = {"loss", "group_size", "bce_balanced"}
    for key in configs[0]:
        if key not in varying:
            assert len({repr(c[key]) for c in configs}) == 1, key


def test_command_line_values_override_the_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("base-model: m\nlr: 0.001\nsteps: 10\n")
    config = build_config(merge_settings(read_recipe(recipe), {"steps": 3}))
    assert (config.lr, config.steps) == (0.001, 3)
    write_recipe(config, tmp_path / "out.yaml")
    assert build_config(read_recipe(tmp_path / "out.yaml")) == config


def test_unknown_recipe_keys_are_named(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("base_model: m\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown setting.*learning_rate"):
        read_recipe(recipe)


@pytest.mark.parametrize("field,value,expected", [
    ("loss", "hinge", "bce or lce"),
    ("group_size", 1, "integer >= 2"),
    ("lr", 0, r"number in \[0.0, 1.0\]"),
    ("precision", "fp8", "auto, bf16, fp16, fp32"),
    ("query_max_length", 510, "fewer than max_length"),
])
def test_bad_values_say_what_was_expected(field, value, expected):
    with pytest.raises(ConfigError, match=expected):
        TrainConfig(base_model="m", **{field: value})


def test_queries_per_step_must_split_over_processes_and_micro_batches():
    TrainConfig(base_model="m", queries_per_step=8, grad_accum=2).check_world(4)
    with pytest.raises(ConfigError, match="multiple of 6"):
        TrainConfig(base_model="m", queries_per_step=8, grad_accum=2).check_world(3)
