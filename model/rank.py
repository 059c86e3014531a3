"""Effective rank (Roy and Vetterli) and the harmonic-mean rank-gain score of docs/paper.md section 1.

ERank(Z) = exp(-sum_i p_i ln p_i), p_i = s_i / sum_j s_j over the non-zero singular values s_i of the uncentred
token matrix Z (T frames x C channels). 1 <= ERank <= min(T, C).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def effective_rank(z: torch.Tensor | np.ndarray) -> float:
    """Effective rank of a (T, C) matrix given as a torch tensor or numpy array."""
    m = torch.as_tensor(np.asarray(z) if not isinstance(z, torch.Tensor) else z).detach().double().cpu()
    if m.ndim != 2 or m.numel() == 0:
        raise ValueError(f"expected a non-empty (T, C) matrix, got shape {tuple(m.shape)}")
    if not torch.isfinite(m).all():
        raise ValueError("expected finite values, got NaN or infinity")
    s = torch.linalg.svdvals(m)
    if s.numel() == 0 or s[0] == 0:
        raise ValueError("effective rank of an all-zero matrix is undefined")
    # singular values at round-off level count as zero (numpy's matrix_rank tolerance)
    s = s[s > s[0] * max(m.shape) * torch.finfo(torch.float64).eps]
    p = s / s.sum()
    return float(torch.exp(-(p * p.log()).sum()))


@dataclass(frozen=True)
class RankGain:
    """Gain of means of each modality's effective rank through fusion, and their harmonic mean H."""

    gain_a: float
    gain_b: float
    harmonic: float


def rank_gain(before_a: list[float], after_a: list[float], before_b: list[float], after_b: list[float]) -> RankGain:
    """H = 2 G_a G_b / (G_a + G_b), with G = mean(after) - mean(before); H = 0 if either gain <= 0."""
    if not before_a or len(before_a) != len(after_a) or len(before_b) != len(after_b) or not before_b:
        raise ValueError("expected non-empty before/after lists of equal length for both modalities")
    g_a = float(np.mean(after_a) - np.mean(before_a))
    g_b = float(np.mean(after_b) - np.mean(before_b))
    h = 0.0 if g_a <= 0 or g_b <= 0 else 2 * g_a * g_b / (g_a + g_b)
    return RankGain(g_a, g_b, h)
