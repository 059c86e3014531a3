"""Depth map jitter in training (optim.depth_scale_jitter / depth_shift_jitter): the person seen nearer or farther
and elsewhere in the frame, with validity and person mask kept binary and metric depth consistent with the zoom."""

from __future__ import annotations

import pytest
import torch

from model import Preprocessing
from training.config import load_config
from training.train import jitter_depth

METRIC = Preprocessing(depth_size=(60, 80), depth_input="metric", person_mask="segmented")


def person_batch(b: int = 4, t: int = 3) -> torch.Tensor:
    """(b, t, 3, 60, 80): a 20x10 person at 2.0 m in the middle of an otherwise invalid (background-removed) map."""
    depth = torch.zeros(b, t, 3, 60, 80)
    depth[:, :, 0, 20:40, 35:45] = (2.0 - METRIC.depth_mean_m) / METRIC.depth_std_m
    depth[:, :, 1:, 20:40, 35:45] = 1.0
    return depth


def test_zoom_makes_the_person_larger_and_nearer_by_the_same_factor() -> None:
    depth = person_batch()
    moved = jitter_depth(depth, METRIC, 0.3, 0.0, torch.Generator().manual_seed(5))
    scales = 1 + (torch.rand(4, generator=torch.Generator().manual_seed(5)) * 2 - 1) * 0.3  # the same draws
    for i, s in enumerate(scales.tolist()):
        valid = moved[i, :, 1] > 0
        assert set(moved[i, :, 1:].unique().tolist()) <= {0.0, 1.0}  # nearest resampling keeps the masks binary
        assert torch.equal(moved[i, :, 1], moved[i, :, 2])
        area = valid[0].sum().item()
        assert area == pytest.approx(200 * s * s, rel=0.2)
        metres = moved[i, :, 0][valid] * METRIC.depth_std_m + METRIC.depth_mean_m
        assert torch.allclose(metres, torch.full_like(metres, 2.0 / s), atol=1e-5)
        assert torch.all(moved[i, :, 0][~valid] == 0)
        assert torch.equal(moved[i, 0], moved[i, -1])  # one draw per window, every frame the same


def test_shift_moves_the_person_and_leaves_its_depth_alone() -> None:
    depth = person_batch()
    moved = jitter_depth(depth, METRIC, 0.0, 0.1, torch.Generator().manual_seed(2))
    draws = torch.Generator().manual_seed(2)
    torch.rand(4, generator=draws)  # the scales come first
    shifts = (torch.rand(4, 2, generator=draws) * 2 - 1) * 0.1
    ys, xs = torch.meshgrid(torch.arange(60.0), torch.arange(80.0), indexing="ij")
    for i, (dx, dy) in enumerate(shifts.tolist()):
        valid = moved[i, 0, 1] > 0
        assert valid.sum().item() == 200  # small shift, no zoom: the whole person, nothing cut off
        assert xs[valid].mean().item() - 39.5 == pytest.approx(dx * 80, abs=1.0)
        assert ys[valid].mean().item() - 29.5 == pytest.approx(dy * 60, abs=1.0)
        assert torch.all(moved[i, 0, 0][valid] == depth[0, 0, 0, 30, 40])


def test_minmax_depth_is_only_moved_and_no_jitter_is_the_identity() -> None:
    minmax = Preprocessing(depth_size=(60, 80), depth_input="minmax")
    depth = torch.rand(2, 2, 1, 60, 80)
    moved = jitter_depth(depth, minmax, 0.2, 0.1, torch.Generator().manual_seed(0))
    assert set(moved.unique().tolist()) <= set(depth.unique().tolist()) | {0.0}
    same = jitter_depth(depth, minmax, 0.0, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(same, depth)


def test_jitter_out_of_range_is_a_config_error() -> None:
    with pytest.raises(Exception, match="optim.depth_scale_jitter"):
        load_config(None, {"optim.depth_scale_jitter": 0.7})
