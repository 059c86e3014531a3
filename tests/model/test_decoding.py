from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model import decode_frames, decode_timed

NONE = 3  # three classes, NONE last


def logits_for(actions: list[int], n_classes: int = 4) -> torch.Tensor:
    out = torch.full((len(actions), n_classes), -10.0)
    out[torch.arange(len(actions)), torch.tensor(actions)] = 10.0
    return out


def test_transcript_stops_at_first_none_and_fills_horizon_exactly() -> None:
    actions = logits_for([2, 0, NONE, 1])
    durations = torch.log(torch.tensor([1.0, 3.0, 5.0, 7.0]))  # only the first two count: 1/4 and 3/4
    frames = decode_frames(actions, durations, NONE, 8)
    assert frames.tolist() == [2, 2] + [0] * 6


def test_rounding_never_leaves_unfilled_frames() -> None:
    actions = logits_for([0, 1, 2])
    durations = torch.log(torch.tensor([1.0, 1.0, 1.0]))
    frames = decode_frames(actions, durations, NONE, 7)
    assert (frames >= 0).all() and sorted(set(frames.tolist())) == [0, 1, 2]


def test_empty_transcript_predicts_no_action() -> None:
    frames = decode_frames(logits_for([NONE, 0]), torch.zeros(2), NONE, 5)
    assert frames.tolist() == [-1] * 5


def test_timed_actions_in_seconds() -> None:
    actions = logits_for([1, 2, NONE])
    durations = torch.log(torch.tensor([1.0, 3.0, 9.0]))
    timed = decode_timed(actions, durations, NONE, horizon_s=8.0)
    assert [a.action for a in timed] == [1, 2]
    assert [a.start_s for a in timed] == pytest.approx([0.0, 2.0])
    assert [a.duration_s for a in timed] == pytest.approx([2.0, 6.0])
    assert timed[0].probability == pytest.approx(1 / (1 + 3 * math.exp(-20)), rel=1e-6)


def test_frames_are_int64_array() -> None:
    frames = decode_frames(logits_for([0]), torch.zeros(1), NONE, 3)
    assert isinstance(frames, np.ndarray) and frames.dtype == np.int64
