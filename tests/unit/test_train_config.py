"""Training settings: recipes, validation with messages that say what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from es_rerank.errors import ConfigError
from es_rerank.training.config import TrainConfig, build_config, merge_settings, read_recipe, write_recipe

RECIPE_DIR = Path(__file__).resolve().parents[2] / "recipes"
RECIPES = sorted(RECIPE_DIR.glob("*.yaml"))


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


def test_source_repeats_come_from_a_recipe_and_survive_the_written_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("base_model: m\nsource-repeats: {scifact: 4}\n")
    config = build_config(read_recipe(recipe))
    assert config.source_repeats == {"scifact": 4}
    write_recipe(config, tmp_path / "out.yaml")
    assert "source_repeats:\n  scifact: 4\n" in (tmp_path / "out.yaml").read_text()
    assert build_config(read_recipe(tmp_path / "out.yaml")) == config
    assert TrainConfig(base_model="m").source_repeats == {}  # by default no source is repeated


@pytest.mark.parametrize("value", [{"scifact": 0}, {"scifact": -2}, {"scifact": 2.0}, {"scifact": "4"},
                                   {"scifact": True}, {"": 4}, {4: 4}, [["scifact", 4]], "scifact", None])
def test_bad_source_repeats_say_what_was_expected(value):
    with pytest.raises(ConfigError, match=r"source_repeats: expected a mapping of source name to an integer >= 1"):
        TrainConfig(base_model="m", source_repeats=value)


def test_the_default_general_recipe_is_the_first_one_with_scifact_repeated():
    general = build_config(read_recipe(RECIPE_DIR / "general-minilm-l6-lce-g16.yaml")).to_dict()
    default = build_config(read_recipe(RECIPE_DIR / "general-minilm-l6-lce-g16-scifact-x4.yaml")).to_dict()
    assert default.pop("source_repeats") == {"scifact": 4} and general.pop("source_repeats") == {}
    assert default == general


def test_the_command_passes_a_recipes_source_repeats_to_the_training(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from es_rerank.cli.train_cmd import train_command
    from es_rerank.training import supervised

    trained = []

    def record(config, inputs, out, resume=False, stop_after=None):
        trained.append(config)
        return {"steps_done": config.steps, "train_queries": 1, "finished": True}

    monkeypatch.setattr(supervised, "train", record)
    (tmp_path / "recipe.yaml").write_text("base_model: m\nsteps: 10\nsource_repeats: {scifact: 3}\n")
    (tmp_path / "groups.jsonl").write_text("")
    result = CliRunner().invoke(train_command, ["--config", str(tmp_path / "recipe.yaml"), "--steps", "2",
                                                "--groups", str(tmp_path / "groups.jsonl"), "--corpus", str(tmp_path),
                                                "--queries", str(tmp_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert [(c.source_repeats, c.steps) for c in trained] == [({"scifact": 3}, 2)]


def test_a_state_saved_before_a_setting_existed_resumes_with_its_default(tmp_path):
    import torch

    from es_rerank.training.state import load_state, state_dir

    config = TrainConfig(base_model="m")
    saved = config.to_dict()
    del saved["source_repeats"]  # as a state written before the setting existed holds it
    state_dir(tmp_path).mkdir()
    torch.save({"config": saved, "step": 3}, state_dir(tmp_path) / "trainer.pt")
    assert load_state(tmp_path, 0, config, torch.device("cpu"))["step"] == 3
    with pytest.raises(ConfigError, match=r"settings changed \(source_repeats: \{\} -> \{'scifact': 4\}\)"):
        load_state(tmp_path, 0, TrainConfig(base_model="m", source_repeats={"scifact": 4}), torch.device("cpu"))
