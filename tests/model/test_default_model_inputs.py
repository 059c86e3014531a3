"""The committed default model is the service recipe's (training/configs/service.yaml) and runs on camera frames
through the one input path: a person-mask model fed a stream in order finds the person once the room is seen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model import load_checkpoint, prepare_inputs
from training.config import load_config

DEFAULT = Path(__file__).resolve().parents[2] / "models" / "default" / "model.safetensors"


def test_default_model_is_the_service_recipe_and_small_enough_to_ship() -> None:
    model, meta = load_checkpoint(DEFAULT)
    recipe = load_config("service").model
    cfg = model.cfg
    assert cfg.preprocessing == recipe.preprocessing()
    assert (cfg.depth_encoder, cfg.fusion, cfg.hidden) == (recipe.depth_encoder, recipe.fusion, recipe.hidden)
    assert (cfg.window_s, cfg.horizon_s, cfg.fps) == (recipe.window_s, recipe.horizon_s, recipe.fps)
    assert cfg.segment_temperature != 1.0 and cfg.action_temperature != 1.0  # fitted on validation, served
    assert DEFAULT.stat().st_size <= 25 * 2**20
    assert "/work" not in str(meta["provenance"])  # no machine paths in the shipped metadata


def test_default_model_streams_camera_frames_and_finds_a_moving_person() -> None:
    model, _ = load_checkpoint(DEFAULT)
    pre = model.cfg.preprocessing
    locator = pre.locator()
    images, depths = [], []
    for i in range(6):  # a wall at 3.5 m, a person-sized box at 2 m walking across
        rgb = np.full((120, 160, 3), 80, np.uint8)
        depth = np.full((120, 160), 3500, np.uint16)
        depth[30:90, 20 + 15 * i : 32 + 15 * i] = 2000
        image, dmap = prepare_inputs(rgb, depth, 0.001, pre, locator)
        images.append(torch.from_numpy(image))
        depths.append(torch.from_numpy(dmap))
    assert depths[0][2].sum() == 0 and all(d[2].sum() > 0 for d in depths[1:])
    with torch.no_grad():
        out = model(torch.stack(images)[None], torch.stack(depths)[None], torch.ones(1, 6, dtype=torch.bool))
    assert out.action_logits.shape == (1, model.cfg.n_queries, model.cfg.n_classes + 1)
    assert torch.isfinite(out.action_logits).all() and torch.isfinite(out.segment_logits).all()
