from __future__ import annotations

import math

import pytest
import torch

from model import AnticipatorOutput
from training.losses import anticipation_loss, duration_loss, r3d_loss, segmentation_loss

LN2, LN3 = math.log(2), math.log(3)


def test_segmentation_loss_averages_over_labelled_frames_only() -> None:
    logits = torch.tensor([[[0.0, 0.0], [LN3, 0.0], [100.0, -100.0], [5.0, 1.0]]])  # (1, 4, 2)
    labels = torch.tensor([[0, 1, -1, -1]])  # frame 2 unknown, frame 3 padding
    assert segmentation_loss(logits, labels).item() == pytest.approx((LN2 + math.log(4)) / 2)


def test_anticipation_loss_weights_transition_samples_and_ignores_padding_slots() -> None:
    logits = torch.zeros(2, 3, 3)
    logits[:, 2] = torch.tensor([50.0, -50.0, 0.0])  # garbage in the padding slots
    actions = torch.tensor([[0, 2, -1], [1, 2, -1]])
    weight = torch.tensor([10.0, 1.0])
    assert anticipation_loss(logits, actions, weight).item() == pytest.approx((10 * 2 * LN3 + 2 * LN3) / 4)


def test_duration_loss_is_masked_softmax_mse_over_real_actions() -> None:
    logits = torch.tensor([[0.0, LN3, 7.0, 9.0]])  # slots: action, action, NONE, padding
    actions = torch.tensor([[0, 1, 5, -1]])
    target = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    # predicted shares exp(0), exp(ln 3) normalised: 1/4, 3/4
    assert duration_loss(logits, target, actions, none_index=5).item() == pytest.approx(0.0625)


def test_duration_loss_counts_unknown_runs_but_never_slots_after_none() -> None:
    logits = torch.tensor([[0.0, 0.0, 3.0, 4.0]])
    actions = torch.tensor([[-1, 0, 2, -1]])  # an unknown run keeps its duration; NONE is class 2 here
    target = torch.tensor([[0.25, 0.75, 0.0, 0.0]])
    assert duration_loss(logits, target, actions, none_index=2).item() == pytest.approx(0.0625)


def _outputs(b: int, t: int, q: int, k: int, seed: int) -> AnticipatorOutput:
    g = torch.Generator().manual_seed(seed)
    return AnticipatorOutput(
        torch.randn(b, q, k + 1, generator=g),
        torch.randn(b, q, generator=g),
        torch.randn(b, t, k, generator=g),
        torch.zeros(b, t, 4),
    )


def test_r3d_loss_is_unchanged_by_padding_a_sample_into_a_longer_batch() -> None:
    k, none = 3, 3
    short = _outputs(1, 4, 5, k, seed=0)
    batch = {
        "segmentation": torch.tensor([[0, 1, 1, 2]]),
        "actions": torch.tensor([[2, 0, none, -1, -1]]),
        "durations": torch.tensor([[0.4, 0.6, 0.0, 0.0, 0.0]]),
        "transition": torch.tensor([True]),
    }
    alone = r3d_loss(short, batch, none_index=none)
    noise = _outputs(1, 7, 5, k, seed=1)  # garbage everywhere, then the real values in the real entries
    seg = noise.segment_logits.clone()
    seg[:, :4] = short.segment_logits
    act = noise.action_logits.clone()
    act[:, :3] = short.action_logits[:, :3]
    dur = noise.duration_logits.clone()
    dur[:, :2] = short.duration_logits[:, :2]
    padded_batch = {**batch, "segmentation": torch.tensor([[0, 1, 1, 2, -1, -1, -1]])}
    padded = r3d_loss(AnticipatorOutput(act, dur, seg, noise.fused), padded_batch, none_index=none)
    for a, p in zip(alone, padded, strict=True):
        assert p.item() == pytest.approx(a.item(), rel=1e-6)


def test_r3d_loss_total_is_the_weighted_sum() -> None:
    out = _outputs(2, 3, 4, 2, seed=2)
    batch = {
        "segmentation": torch.tensor([[0, 1, -1], [1, 1, 0]]),
        "actions": torch.tensor([[1, 2, -1, -1], [0, 1, 2, -1]]),
        "durations": torch.tensor([[1.0, 0, 0, 0], [0.5, 0.5, 0, 0]]),
        "transition": torch.tensor([False, True]),
    }
    parts = r3d_loss(out, batch, none_index=2, transition_weight=10.0, weights=(0.5, 2.0, 3.0))
    expected = 0.5 * parts.segmentation + 2.0 * parts.anticipation + 3.0 * parts.duration
    assert parts.total.item() == pytest.approx(expected.item())
    unweighted = r3d_loss(out, batch, none_index=2, transition_weight=1.0)
    assert parts.anticipation.item() > unweighted.anticipation.item()
