"""The Rank-enhancing Token Fuser (RTF, docs/paper.md section 2) and the baselines' fusers as configurations of it.

Per frame t the fuser takes the RGB and depth tokens (r_t, d_t) and returns one fused token f_t:
  1. BatchNorm per modality, with statistics over the valid (un-padded) frames of the batch only.
  2. Choose k = floor(rho * C) channels per modality: the k smallest |gamma| of its BatchNorm (a buffer, fixed at
     inference) or, per sample, the k channels with the lowest variance over the window's valid frames.
  3. Exchange on the chosen channels: blend r_c <- a_c r_c + (1 - a_c) d_c (and symmetrically for depth) with one
     learnable a (RTF), or replace outright (CEN-style hard exchange), or nothing.
  4. Mix the two tokens into one: the cross-modal block (each token attends only to the other, so the attention is
     the fixed swap [[0,1],[1,0]] and is computed directly), concatenation, or one modality alone.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

EXCHANGES = ("blend", "hard", "none")
MIXERS = ("cross", "concat", "rgb", "depth")
SELECTIONS = ("gamma", "variance")


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over channels of (B, T, C) tokens whose statistics ignore padded frames."""

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not self.training:
            assert self.running_mean is not None and self.running_var is not None
            return F.batch_norm(x.transpose(1, 2), self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps).transpose(1, 2)  # fmt: skip
        m = valid.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        n = m.sum().clamp_min(1.0)
        mean = (x * m).sum(dim=(0, 1)) / n  # (C,)
        var = (((x - mean) ** 2) * m).sum(dim=(0, 1)) / n
        with torch.no_grad():
            assert self.running_mean is not None and self.running_var is not None
            unbiased = var * n / (n - 1).clamp_min(1.0)
            self.running_mean.lerp_(mean, self.momentum or 0.1)
            self.running_var.lerp_(unbiased, self.momentum or 0.1)
            self.get_buffer("num_batches_tracked").add_(1)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


def smallest_gamma_mask(gamma: torch.Tensor, k: int) -> torch.Tensor:
    """(C,) float mask of the k channels of smallest |gamma|; ties go to the lower channel index (stable sort)."""
    order = torch.sort(gamma.detach().abs(), stable=True).indices
    mask = torch.zeros_like(gamma)
    mask[order[:k]] = 1.0
    return mask


def lowest_variance_mask(x: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """(B, 1, C) float mask of each sample's k channels with the lowest variance over its valid frames.

    Ties go to the lower channel index (as in smallest_gamma_mask), so every backend picks the same channels, also
    when variances tie exactly (a window of one valid frame, dead channels); topk's order among ties is unspecified.
    """
    m = valid.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
    n = m.sum(dim=1, keepdim=True).clamp_min(1.0)
    mean = (x * m).sum(dim=1, keepdim=True) / n
    var = (((x - mean) ** 2) * m).sum(dim=1, keepdim=True) / n  # (B, 1, C)
    c = torch.arange(var.shape[-1], device=var.device)
    vi, vj = var.unsqueeze(-1), var.unsqueeze(-2)  # (B, 1, C, 1), (B, 1, 1, C)
    ahead = (vj < vi) | ((vj == vi) & (c < c.unsqueeze(-1)))  # [.., i, j]: channel j ranks before channel i
    return (ahead.sum(dim=-1) < k).to(var.dtype)  # rank < k


class CrossModalBlock(nn.Module):
    """Pre-norm transformer block over the pair (r, d) where each token attends only to the other."""

    def __init__(self, c: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.ln1 = nn.LayerNorm(c)
        self.value = nn.Linear(c, c)
        self.out = nn.Linear(c, c)
        self.ln2 = nn.LayerNorm(c)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))
        self.ln_f = nn.LayerNorm(c)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        """(B, T, 2, C) -> fused (B, T, C)."""
        x = self.drop(pair)
        # masked-diagonal attention over two tokens = each token receives the other's value (any number of heads)
        x = x + self.drop(self.out(self.value(self.ln1(x)).flip(-2)))
        x = x + self.drop(self.mlp(self.ln2(x)))
        fused: torch.Tensor = self.ln_f(x).mean(dim=-2)  # (B, T, C)
        return fused


class FusionOutput(NamedTuple):
    fused: torch.Tensor  # (B, T, C)
    rgb_before: torch.Tensor  # (B, T, C) after BatchNorm, before exchange
    depth_before: torch.Tensor
    rgb_after: torch.Tensor  # (B, T, C) after exchange
    depth_after: torch.Tensor


class TokenFuser(nn.Module):
    """RTF when exchange="blend" and mixer="cross"; the baselines are other settings of the same module."""

    def __init__(
        self, c: int, exchange: str, mixer: str, selection: str, exchange_ratio: float, dropout: float
    ) -> None:
        super().__init__()
        self.exchange, self.mixer, self.selection = exchange, mixer, selection
        self.k = int(exchange_ratio * c + 1e-9)  # floor(rho * C), robust to 0.3 * 128 = 38.4 style round-off
        self.normalise = mixer == "cross"  # BatchNorm belongs to the exchange/cross-attention path
        if self.normalise:
            self.bn_rgb = MaskedBatchNorm1d(c)
            self.bn_depth = MaskedBatchNorm1d(c)
        if exchange == "blend":
            self.alpha = nn.Parameter(torch.rand(c))  # U[0, 1), shared by both directions
        if exchange != "none":
            # exchanged channels under the |gamma| rule, refreshed every training step, constant at inference
            self.register_buffer("rgb_channels", torch.zeros(c))
            self.register_buffer("depth_channels", torch.zeros(c))
        if mixer == "cross":
            self.cross = CrossModalBlock(c, dropout)
        elif mixer == "concat":
            self.concat = nn.Sequential(nn.Linear(2 * c, c), nn.ReLU())

    def _masks(self, r: torch.Tensor, d: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.selection == "variance":
            return lowest_variance_mask(r, valid, self.k), lowest_variance_mask(d, valid, self.k)
        rgb_channels, depth_channels = self.get_buffer("rgb_channels"), self.get_buffer("depth_channels")
        if self.training:
            with torch.no_grad():
                rgb_channels.copy_(smallest_gamma_mask(self.bn_rgb.weight, self.k))
                depth_channels.copy_(smallest_gamma_mask(self.bn_depth.weight, self.k))
        return rgb_channels, depth_channels

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor) -> FusionOutput:
        """tokens (B, T, 2, C) [RGB, depth], valid (B, T) bool -> FusionOutput."""
        r, d = tokens[:, :, 0], tokens[:, :, 1]  # (B, T, C) each
        if self.normalise:
            r, d = self.bn_rgb(r, valid), self.bn_depth(d, valid)
        r_x, d_x = r, d
        if self.exchange != "none":
            m_r, m_d = self._masks(r, d, valid)
            a = self.alpha if self.exchange == "blend" else torch.zeros_like(r[0, 0])
            r_x = r + m_r * ((a * r + (1 - a) * d) - r)
            d_x = d + m_d * ((a * d + (1 - a) * r) - d)
        if self.mixer == "cross":
            fused = self.cross(torch.stack([r_x, d_x], dim=2))  # (B, T, 2, C) -> (B, T, C)
        elif self.mixer == "concat":
            fused = self.concat(torch.cat([r_x, d_x], dim=-1))
        else:
            fused = r_x if self.mixer == "rgb" else d_x
        return FusionOutput(fused, r, d, r_x, d_x)
