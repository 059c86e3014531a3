from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from model import FUSIONS, ConfigError, Preprocessing, R3DConfig
from training.config import (
    RECIPES,
    ModelConfig,
    TrainConfig,
    add_config_flags,
    dump_yaml,
    field_comments,
    flag_overrides,
    load_config,
)

SHIPPED = sorted(RECIPES.glob("*.yaml"))


def test_recipes_are_shipped() -> None:
    assert {"service", "paper"} <= {p.stem for p in SHIPPED}


@pytest.mark.parametrize("recipe", SHIPPED, ids=lambda p: p.stem)
def test_recipe_loads_validates_and_builds_a_model_config(recipe: Path) -> None:
    cfg = load_config(recipe, {"data.dataset": "data/x"})
    model_cfg = cfg.model.to_r3d(["a", "b"])
    assert model_cfg.none_index == 2 and model_cfg.window_frames <= model_cfg.max_len
    assert load_config(recipe.stem, {"data.dataset": "data/x"}) == cfg  # a shipped recipe by name


def test_service_recipe_is_the_streaming_rtf_model() -> None:
    cfg = load_config("service")
    assert cfg.data.protocol == "streaming" and cfg.model.fusion == "rtf"
    assert (cfg.model.window_s, cfg.model.horizon_s, cfg.model.fps) == (8.0, 8.0, 15.0)


def test_paper_recipe_has_the_authors_settings() -> None:
    cfg = load_config("paper", {"data.dataset": "d"})
    o = cfg.optim
    assert cfg.data.protocol == "paper" and cfg.data.future_fraction == 0.5
    assert (o.lr, o.weight_decay, o.batch_size, o.epochs, o.warmup_epochs) == (1e-3, 5e-3, 8, 60, 10)


def test_toml_recipe_and_set_overrides_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('[data]\ndataset = "d"\nprotocol = "paper"\n[model]\ndepth_size = [30, 40]\n[run]\nseed = 10\n')
    cfg = load_config(
        path,
        sets=["data.train_ratios=[0.2, 0.4]", "optim.lr=3e-4", "run.max_epochs=none", "model.temporal_encoder=false"],
    )
    assert cfg.data.protocol == "paper" and cfg.model.depth_size == (30, 40) and cfg.run.seed == 10
    assert cfg.data.train_ratios == [0.2, 0.4] and cfg.optim.lr == 3e-4
    assert cfg.run.max_epochs is None and cfg.model.temporal_encoder is False


def test_every_problem_is_reported_at_once_naming_the_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, {"data.dataset": "d", "optim.lr": "-1", "run.precision": "fp8", "data.frame_step": "0"})
    text = str(err.value)
    for key in ("optim.lr", "run.precision", "data.frame_step"):
        assert key in text


def test_unknown_keys_and_bad_types_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"optim\.lrr: unknown field") as err:
        load_config(None, {"data.dataset": "d", "optim.lrr": 1, "run.seed": "x", "bogus.a": 1})
    assert "run.seed: expected an integer, got 'x'" in str(err.value)
    assert "bogus.a: unknown key" in str(err.value)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, {"data.dataset": "d"}, sets=["optim.lr"])


def test_model_problems_come_from_the_model_config() -> None:
    with pytest.raises(ConfigError, match="fusion: expected one of"):
        load_config(None, {"data.dataset": "d", "model.fusion": "sum"})


def test_colour_person_view_needs_the_person_mask_and_builds_the_model_with_it() -> None:
    with pytest.raises(ConfigError, match=r"model\.color_view: expected 'frame' when model\.person_mask is 'none'"):
        load_config(None, {"data.dataset": "d", "model.color_view": "frame+person"})
    cfg = load_config("training/configs/service.yaml", {"data.dataset": "d", "model.color_view": "frame+person"})
    model = cfg.model.to_r3d(["walk", "sit"])
    assert model.preprocessing.color_view == "frame+person" and model.preprocessing.color_views == 2


def test_generated_flags_override_and_dump_round_trips(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(["--optim.batch_size", "4", "--model.depth_size", "[24, 32]", "--data.dataset", "d"])
    cfg = load_config(None, flag_overrides(args))
    assert cfg.optim.batch_size == 4 and cfg.model.depth_size == (24, 32)
    saved = tmp_path / "config.yaml"
    saved.write_text(dump_yaml(cfg))
    assert load_config(saved) == cfg


def test_each_flag_explains_its_field_with_the_comment_where_it_is_declared() -> None:
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    helps = {a.dest.removeprefix("cfg:"): a.help or "" for a in parser._actions if a.dest.startswith("cfg:")}
    # a block of comment lines above the field
    assert helps["optim.ema_decay"].startswith("exponential moving average of the weights, updated after every step")
    assert helps["optim.ema_decay"].endswith("0 = off (default: 0.0)")
    # the comment beside it; a model field with none of its own reads R3DConfig's or Preprocessing's
    assert helps["data.min_observed_s"] == "streaming: shortest observed history of a window (seconds) (default: 1.0)"
    assert helps["model.max_len"] == "positional table size: the longest token window (default: 2000)"
    assert helps["model.depth_min_m"] == "nearer readings are invalid (holes) (default: 0.1)"
    assert helps["optim.lr"] == "default: 0.001"  # undocumented: the default alone
    assert all(f'"{name}"' in helps["model.fusion"] for name in FUSIONS)  # the choices, not a constant's name
    # a block above belongs to the field below it, not to the one before
    assert helps["data.max_val_sequences"] == "default: 0"
    assert helps["data.max_train_sequences"].startswith("0: the whole split; N: its first N sequences")
    parser.format_help()  # argparse formats every help string (a bare % would raise here)
    documented = field_comments(R3DConfig)
    assert documented["causal_encoder"].startswith("the temporal encoder lets a frame attend only to itself")
    assert "classes" in documented and "heads" not in documented


def test_missing_recipe_names_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="service"):
        load_config("no-such-recipe.yaml")


def test_defaults_are_the_papers_optimiser() -> None:
    o = TrainConfig().optim
    assert (o.lr, o.weight_decay, o.transition_weight) == (1e-3, 5e-3, 10.0)


def test_model_section_mirrors_every_model_field_except_those_recipes_do_not_set() -> None:
    # from the dataset, from the backbone, flattened below, and fitted on validation data after training
    not_in_recipes = {
        "classes", "backbone_weights_sha256", "preprocessing", "segment_temperature", "action_temperature",
    }  # fmt: skip
    model_fields = {f.name for f in dataclasses.fields(R3DConfig)} - not_in_recipes
    preprocessing_fields = {f.name for f in dataclasses.fields(Preprocessing)}
    assert {f.name for f in dataclasses.fields(ModelConfig)} == model_fields | preprocessing_fields


def test_model_section_defaults_are_the_models_own() -> None:
    assert ModelConfig().to_r3d(["a", "b"]) == R3DConfig(classes=["a", "b"])
