"""Evaluation metrics.

MoC (docs/paper.md section 3): per class c, the frames whose ground truth is c are counted over ALL evaluated sequences
(correct when the prediction is c too); MoC is the mean of correct/total over the classes that appear in the
ground truth. Frames with unknown ground truth (-1) are not counted; a frame without a prediction (-1) is wrong.

Streaming metrics, per window:
- next action: the first ground-truth future action that differs from the last observed action (NONE when the
  action does not change within the horizon). Predicted: the first decoded action that differs from the model's own
  segmentation of the last observed frame (NONE when there is none). Accuracy over all windows.
- time to next action: |predicted start - true start| in seconds, over windows where both have a next action.
- MoC over the horizon: decode_frames over the horizon against the future frames' ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class MoC:
    """Accumulates per-class frame counts over sequences; `value` is the mean over classes present."""

    def __init__(self, n_classes: int) -> None:
        self.correct = np.zeros(n_classes, dtype=np.int64)
        self.total = np.zeros(n_classes, dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"expected prediction and ground truth of one shape, got {pred.shape} and {gt.shape}")
        known = gt >= 0
        n = len(self.total)
        if (gt[known] >= n).any():
            raise ValueError(f"ground-truth class out of range: expected < {n}, got {int(gt.max())}")
        np.add.at(self.total, gt[known], 1)
        np.add.at(self.correct, gt[known & (pred == gt)], 1)

    @property
    def value(self) -> float:
        present = self.total > 0
        if not present.any():
            return float("nan")
        return float(np.mean(self.correct[present] / self.total[present]))


def mean_over_classes(preds: list[np.ndarray], gts: list[np.ndarray], n_classes: int) -> float:
    """MoC of several sequences' predictions at once."""
    acc = MoC(n_classes)
    for p, g in zip(preds, gts, strict=True):
        acc.update(p, g)
    return acc.value


def next_change(labels: np.ndarray, current: int) -> tuple[int, int] | None:
    """(action, offset in frames) of the first entry of `labels` (>= 0) differing from `current`; None if none."""
    for i, lab in enumerate(np.asarray(labels).tolist()):
        if lab >= 0 and lab != current:
            return int(lab), i
    return None


@dataclass
class StreamingMetrics:
    """Accumulates next-action accuracy, time-to-next-action error and MoC over the horizon."""

    n_classes: int
    none_index: int
    fps: float
    hits: int = 0
    windows: int = 0
    abs_errors_s: list[float] = field(default_factory=list)
    moc: MoC = field(init=False)

    def __post_init__(self) -> None:
        self.moc = MoC(self.n_classes)

    def update(self, pred_future: np.ndarray, gt_future: np.ndarray, pred_current: int, gt_current: int) -> None:
        """Frame labels of the horizon (predicted, true) and the last observed action (predicted, true)."""
        k = min(len(pred_future), len(gt_future))
        self.moc.update(pred_future[:k], gt_future[:k])
        truth = next_change(gt_future, gt_current)
        guess = next_change(pred_future, pred_current)
        true_action = truth[0] if truth else self.none_index
        guess_action = guess[0] if guess else self.none_index
        self.windows += 1
        self.hits += int(true_action == guess_action)
        if truth and guess:
            self.abs_errors_s.append(abs(truth[1] - guess[1]) / self.fps)

    def result(self) -> dict[str, float]:
        return {
            "next_action_acc": self.hits / self.windows if self.windows else float("nan"),
            "time_to_next_mae_s": float(np.mean(self.abs_errors_s)) if self.abs_errors_s else float("nan"),
            "moc_horizon": self.moc.value,
            "windows": float(self.windows),
        }
