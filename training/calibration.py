"""Calibrated probabilities: one temperature per served distribution, fitted on the validation split.

The service shows two distributions: the current action (softmax of the segmentation logits at the newest frame) and
each anticipated action (softmax of an action query's logits). After training, each gets a temperature T that
minimises the negative log-likelihood on validation windows (logits / T; a grid over log T, then the best grid
point refined by a finer grid, which is exact enough for one parameter and has no optimiser state to tune). The
temperatures go into the model's config (R3D.set_temperatures), so evaluation, export and the service all divide by
them. Expected calibration error (ECE): |accuracy - confidence| per confidence bin (15 equal-width bins), weighted by
the bin's share of predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model import R3D, load_checkpoint, save_checkpoint
from training.evaluate import iterate_outputs
from training.features import SequenceFeatures
from training.sampler import ProtocolSpec, Window

ECE_BINS = 15


@dataclass
class LogitSets:
    """Uncalibrated (temperature 1) logits with their labels: current action per window, every real query slot."""

    current_logits: torch.Tensor  # (N, K)
    current_labels: torch.Tensor  # (N,)
    action_logits: torch.Tensor  # (M, K + 1)
    action_labels: torch.Tensor  # (M,)
    current_seqs: list[str] = field(default_factory=list)  # (N,) the sequence of each row: intervals resample them
    action_seqs: list[str] = field(default_factory=list)  # (M,)


def collect_logits(
    model: R3D, data: dict[str, SequenceFeatures], windows: list[Window], spec: ProtocolSpec, **kw: Any
) -> LogitSets:
    """Run the model over windows; the logits are multiplied back by the model's temperatures (i.e. raw)."""
    t_seg, t_act = model.cfg.segment_temperature, model.cfg.action_temperature
    cur, cur_y, act, act_y, cur_s, act_s = [], [], [], [], [], []
    for ws, out, batch in iterate_outputs(model, data, windows, spec, **kw):
        last = batch["valid"].sum(dim=1) - 1  # (B,)
        rows = torch.arange(len(ws))
        labels = batch["segmentation"][rows, last]
        keep = labels >= 0
        cur.append(out.segment_logits[rows, last][keep] * t_seg)
        cur_y.append(labels[keep])
        cur_s += [w.seq for w, k in zip(ws, keep.tolist(), strict=True) if k]
        slots = batch["actions"] >= 0  # (B, Q)
        act.append(out.action_logits[slots] * t_act)
        act_y.append(batch["actions"][slots])
        act_s += [w.seq for w, n in zip(ws, slots.sum(dim=1).tolist(), strict=True) for _ in range(n)]
    k = model.cfg.n_classes
    return LogitSets(
        torch.cat(cur) if cur else torch.zeros(0, k),
        torch.cat(cur_y) if cur_y else torch.zeros(0, dtype=torch.long),
        torch.cat(act) if act else torch.zeros(0, k + 1),
        torch.cat(act_y) if act_y else torch.zeros(0, dtype=torch.long),
        cur_s,
        act_s,
    )


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T in [0.05, 20] minimising the NLL of softmax(logits / T); 1.0 when there is nothing to fit."""
    if len(labels) == 0:
        return 1.0
    logits = logits.double()

    def nll(ts: np.ndarray) -> np.ndarray:
        return np.array([float(F.cross_entropy(logits / t, labels)) for t in ts])

    coarse = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))
    best = coarse[int(np.argmin(nll(coarse)))]
    fine = best * np.exp(np.linspace(-0.06, 0.06, 61))  # the coarse grid's step is 0.05 in log T
    return float(fine[int(np.argmin(nll(fine)))])


def _bin_sums(logits: torch.Tensor, labels: torch.Tensor, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Each prediction's confidence bin ((lo, hi] of ``bins`` equal-width bins) and its (1, correct, confidence)."""
    conf, pred = logits.double().softmax(-1).max(-1)
    correct = (pred == labels).double().numpy()
    which = np.searchsorted(np.linspace(0.0, 1.0, bins + 1), conf.numpy(), side="left") - 1
    return np.clip(which, 0, bins - 1), np.stack([np.ones_like(correct), correct, conf.numpy()], axis=1)


def _ece_of_sums(sums: np.ndarray) -> np.ndarray:
    """ECE from per-bin sums (..., bins, 3) of (count, correct, confidence): sum over bins of |correct - confidence|
    over the count, i.e. each bin's |accuracy - confidence| weighted by its share of predictions."""
    return np.abs(sums[..., 1] - sums[..., 2]).sum(axis=-1) / np.maximum(sums[..., 0].sum(axis=-1), 1.0)


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """ECE of the argmax predictions of softmax(logits) (NaN without samples)."""
    if len(labels) == 0:
        return float("nan")
    which, rows = _bin_sums(logits, labels, bins)
    sums = np.zeros((bins, 3))
    np.add.at(sums, which, rows)
    return float(_ece_of_sums(sums))


def ece_interval(
    logits: torch.Tensor,
    labels: torch.Tensor,
    seqs: list[str],
    bins: int = ECE_BINS,
    resamples: int = 1000,
    seed: int = 0,
) -> list[float]:
    """95 % interval of the ECE, resampling whole sequences (as training.baselines' intervals do): the bin sums per
    sequence, so that each resample's are their sum."""
    if len(labels) == 0:
        return [float("nan"), float("nan")]
    which, rows = _bin_sums(logits, labels, bins)
    names, seq_row = np.unique(np.asarray(seqs), return_inverse=True)
    per_seq = np.zeros((len(names), bins, 3))
    np.add.at(per_seq, (seq_row, which), rows)
    picks = np.random.default_rng(seed).integers(0, len(names), size=(resamples, len(names)))
    eces = _ece_of_sums(per_seq[picks].sum(axis=1))  # (resamples,)
    return [float(np.percentile(eces, 2.5)), float(np.percentile(eces, 97.5))]


def calibration_figures(sets: LogitSets, t_current: float, t_action: float) -> dict[str, float]:
    """ECE before (T = 1) and after (the given temperatures) for both distributions."""
    return {
        "ece_current_before": expected_calibration_error(sets.current_logits, sets.current_labels),
        "ece_current_after": expected_calibration_error(sets.current_logits / t_current, sets.current_labels),
        "ece_action_before": expected_calibration_error(sets.action_logits, sets.action_labels),
        "ece_action_after": expected_calibration_error(sets.action_logits / t_action, sets.action_labels),
    }


def calibrate_checkpoint(
    path: Path, data: dict[str, SequenceFeatures], windows: list[Window], spec: ProtocolSpec, **kw: Any
) -> dict[str, float]:
    """Fit both temperatures on these (validation) windows and rewrite the checkpoint with them installed; returns
    the temperatures and the validation ECE before and after."""
    model, meta = load_checkpoint(path, with_backbone=False)
    sets = collect_logits(model, data, windows, spec, **kw)
    t_current = fit_temperature(sets.current_logits, sets.current_labels)
    t_action = fit_temperature(sets.action_logits, sets.action_labels)
    figures = {"segment_temperature": t_current, "action_temperature": t_action}
    figures |= {f"val_{k}": v for k, v in calibration_figures(sets, t_current, t_action).items()}
    model.set_temperatures(t_current, t_action)
    save_checkpoint(path, model, provenance=meta["provenance"], metrics={**meta["metrics"], "calibration": figures})
    return figures
