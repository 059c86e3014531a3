from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.decoding import decode_frames
from training.metrics import MoC, StreamingMetrics, mean_over_classes, next_change


def test_moc_accumulates_per_class_over_sequences_then_averages_present_classes() -> None:
    preds = [np.array([0, 0, 1, 1, 2]), np.array([1, 0, 2, -1, 0])]
    gts = [np.array([0, 0, 0, 1, 1]), np.array([1, 1, 2, 2, -1])]
    # class 0: 2/3; class 1: (1 + 1)/4; class 2: 1/2 (a missing prediction is wrong); class 3 never in the truth;
    # the unknown ground-truth frame is not counted
    assert mean_over_classes(preds, gts, n_classes=4) == pytest.approx((2 / 3 + 1 / 2 + 1 / 2) / 3)


def test_moc_without_labelled_frames_is_nan_and_shape_mismatch_is_refused() -> None:
    acc = MoC(3)
    acc.update(np.array([0, 1]), np.array([-1, -1]))
    assert math.isnan(acc.value)
    with pytest.raises(ValueError, match="one shape"):
        acc.update(np.array([0, 1, 2]), np.array([0, 1]))


def test_moc_of_decoded_queries_matches_the_hand_computed_value() -> None:
    none = 3
    logits = torch.full((4, 4), -5.0)
    for q, a in enumerate([1, 2, none, 0]):
        logits[q, a] = 5.0
    durations = torch.tensor([0.0, math.log(3), 2.0, 2.0])  # shares 1/4, 3/4 before NONE
    pred = decode_frames(logits, durations, none, horizon=8)
    assert pred.tolist() == [1, 1, 2, 2, 2, 2, 2, 2]
    gt = np.array([1, 1, 1, 2, 2, 2, 2, 0])
    assert mean_over_classes([pred], [gt], n_classes=3) == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_next_change_skips_unknown_and_same_action() -> None:
    assert next_change(np.array([1, -1, 1, 2, 0]), current=1) == (2, 3)
    assert next_change(np.array([1, 1]), current=1) is None


def test_streaming_metrics_next_action_time_error_and_horizon_moc() -> None:
    m = StreamingMetrics(n_classes=3, none_index=3, fps=10.0)
    m.update(np.array([1, 2, 2, 2, 2]), np.array([1, 1, 2, 2, 2]), pred_current=1, gt_current=1)  # hit, 0.1 s off
    m.update(np.array([0, 0, 0, 1, 1]), np.array([0, 0, 0, 0, 0]), pred_current=0, gt_current=0)  # NONE vs 1: miss
    res = m.result()
    assert res["next_action_acc"] == pytest.approx(0.5)
    assert res["time_to_next_mae_s"] == pytest.approx(0.1)
    assert res["moc_horizon"] == pytest.approx((3 / 5 + 1 / 2 + 1) / 3)
    assert res["windows"] == 2
