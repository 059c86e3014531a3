"""The training objective (docs/paper.md section 3) with the reference code's defects fixed.

total = w_seg * segmentation + w_ant * anticipation + w_dur * duration, where
- segmentation: cross-entropy of every observed, labelled frame (padding and unknown labels are not counted);
- anticipation: cross-entropy of every real query slot (the runs and the NONE after them; padding slots are not
  counted); a sample whose next action differs from its last observed action has its slots weighted by
  `transition_weight`; the sum is divided by the number of real slots, so the weight is a true multiplier;
- duration: MSE between the target shares and the predicted shares, exp(logits) over the slots of real actions
  divided by their sum (a softmax masked to those slots), averaged over those slots.
Class indices are never hard-coded: NONE is the model's none_index, and any dataset class (a background class
included) is an ordinary class.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from model import AnticipatorOutput


class LossParts(NamedTuple):
    total: torch.Tensor
    segmentation: torch.Tensor
    anticipation: torch.Tensor
    duration: torch.Tensor


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values over mask; 0 (with a gradient path) when the mask is empty."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits (B, T, K), labels (B, T) with -1 for padded or unknown frames."""
    mask = labels >= 0
    ce = F.cross_entropy(logits.float().flatten(0, 1), labels.clamp_min(0).flatten(), reduction="none")
    return _masked_mean(ce, mask.flatten())


def anticipation_loss(logits: torch.Tensor, actions: torch.Tensor, sample_weight: torch.Tensor) -> torch.Tensor:
    """logits (B, Q, K + 1), actions (B, Q) with -1 for ignored slots, sample_weight (B,)."""
    mask = actions >= 0
    ce = F.cross_entropy(logits.float().transpose(1, 2), actions.clamp_min(0), reduction="none")  # (B, Q)
    return _masked_mean(ce * sample_weight.unsqueeze(1).to(ce.dtype), mask)


def duration_loss(
    duration_logits: torch.Tensor, durations: torch.Tensor, actions: torch.Tensor, none_index: int
) -> torch.Tensor:
    """duration_logits (B, Q); durations (B, Q) target shares; the real-action slots are those before NONE."""
    is_none = actions == none_index
    before_none = torch.cumsum(is_none.long(), dim=1) == 0  # slots before the first NONE
    mask = before_none & (durations > 0)
    logits = duration_logits.float().masked_fill(~mask, float("-inf"))
    has_any = mask.any(dim=1, keepdim=True)
    pred = torch.where(has_any, logits, torch.zeros_like(logits)).softmax(dim=1)  # exp / sum over real slots
    return _masked_mean((pred - durations.float()) ** 2, mask)


def r3d_loss(
    out: AnticipatorOutput,
    batch: dict[str, torch.Tensor],
    *,
    none_index: int,
    transition_weight: float = 10.0,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> LossParts:
    """The weighted sum of the three losses for a collated batch (training.sampler.collate)."""
    seg = segmentation_loss(out.segment_logits, batch["segmentation"])
    sample_weight = 1.0 + (transition_weight - 1.0) * batch["transition"].float()
    ant = anticipation_loss(out.action_logits, batch["actions"], sample_weight)
    dur = duration_loss(out.duration_logits, batch["durations"], batch["actions"], none_index)
    total = weights[0] * seg + weights[1] * ant + weights[2] * dur
    return LossParts(total, seg, ant, dur)
