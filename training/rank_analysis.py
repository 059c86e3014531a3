"""Effective-rank analysis of a trained model (docs/paper.md section 1, claims 2-4; the paper's Figure 2).

Per observation ratio, every evaluation window's tokens go through the model's FrameEncoder projection and its
TokenFuser; for each window the (T, C) matrices of the RGB and depth tokens before the exchange (after BatchNorm),
after it, and of the fused tokens get their effective rank (model.effective_rank). Reported: the mean ERank of each
over the windows and the harmonic-mean gain H (model.rank_gain) of RGB and depth through the exchange. The spectra
are the singular values of each matrix divided by its largest, averaged over windows, on a log scale.

Dead channels: a channel of a modality's token (the FrameEncoder's output, before fusion) that is exactly zero on
every frame of the evaluated sequences; it carries nothing, and |gamma| selection cannot see it (no gradient).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import R3D, effective_rank, rank_gain
from rgbd.files import write_bytes_atomic
from training.features import SequenceFeatures
from training.sampler import ProtocolSpec, Window, WindowDataset, collate, paper_window, streaming_window, timeline

KINDS = ("rgb_before", "rgb_after", "depth_before", "depth_after", "fused")


def windows_at(data: dict[str, SequenceFeatures], spec: ProtocolSpec, ratio: float) -> list[Window]:
    """One window per sequence observing the first `ratio` of it (streaming: its last W seconds)."""
    out: list[Window] = []
    for seq_id in sorted(data):
        seq = data[seq_id]
        if spec.protocol == "paper":
            w = paper_window(seq, spec, ratio)
        else:
            idx = timeline(seq, spec)
            end = max(1, int(ratio * len(idx)))
            w = streaming_window(seq, spec, idx, end) if end < len(idx) else None
        if w is not None:
            out.append(w)
    return out


@torch.no_grad()
def token_matrices(
    model: R3D, data: dict[str, SequenceFeatures], windows: list[Window], spec: ProtocolSpec
) -> list[dict[str, np.ndarray]]:
    """Per window: the (T, C) token matrices of KINDS (float64 numpy)."""
    model.eval()
    ds = WindowDataset(data, windows, spec)
    out: list[dict[str, np.ndarray]] = []
    for start in range(0, len(ds), 16):
        batch = collate([ds[i] for i in range(start, min(start + 16, len(ds)))])
        b, t = batch["valid"].shape
        tokens = model.frame_encoder.project(batch["features"].flatten(0, 1), batch["depth"].flatten(0, 1))
        fusion = model.anticipator.fuse(tokens.view(b, t, 2, -1), batch["valid"])  # (B, T, 2, C) in
        mats = dict(
            zip(
                KINDS,
                (fusion.rgb_before, fusion.rgb_after, fusion.depth_before, fusion.depth_after, fusion.fused),
                strict=True,
            )
        )
        for i, n in enumerate(batch["valid"].sum(dim=1).tolist()):
            out.append({k: v[i, :n].double().numpy() for k, v in mats.items()})
    return out


@torch.no_grad()
def dead_channels(model: R3D, data: dict[str, SequenceFeatures], chunk: int = 512) -> dict[str, int]:
    """{"rgb": n, "depth": n}: token channels that are zero on every frame of `data`."""
    model.eval()
    c = model.cfg.hidden
    alive = torch.zeros(2, c, dtype=torch.bool)
    for seq in data.values():
        for start in range(0, len(seq), chunk):
            features = torch.from_numpy(seq.rgb[start : start + chunk]).float()
            depth = torch.from_numpy(seq.depth[start : start + chunk]).float()
            tokens = model.frame_encoder.project(features, depth)  # (N, 2, C)
            alive |= (tokens != 0).any(dim=0)
    dead = (~alive).sum(dim=1).tolist()
    return {"rgb": int(dead[0]), "depth": int(dead[1])}


def _spectrum(m: np.ndarray) -> np.ndarray:
    s = np.linalg.svd(m, compute_uv=False)
    return s / s[0] if len(s) and s[0] > 0 else s


def analyse(
    model: R3D, data: dict[str, SequenceFeatures], spec: ProtocolSpec, ratios: list[float]
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """({ratio: {mean ERank per kind, gain_rgb, gain_depth, harmonic, windows}}, {ratio: {kind: mean spectrum}})."""
    results: dict[str, Any] = {}
    spectra: dict[str, dict[str, np.ndarray]] = {}
    for ratio in ratios:
        mats = token_matrices(model, data, windows_at(data, spec, ratio), spec)
        mats = [m for m in mats if np.abs(m["fused"]).max() > 0]
        if not mats:
            continue
        ranks = {k: [effective_rank(m[k]) for m in mats] for k in KINDS}
        gain = rank_gain(ranks["rgb_before"], ranks["rgb_after"], ranks["depth_before"], ranks["depth_after"])
        key = f"{ratio:g}"
        results[key] = {f"erank_{k}": float(np.mean(v)) for k, v in ranks.items()}
        results[key] |= {
            "gain_rgb": gain.gain_a,
            "gain_depth": gain.gain_b,
            "harmonic": gain.harmonic,
            "windows": len(mats),
        }
        spectra[key] = {}
        for k in KINDS:
            specs = [_spectrum(m[k]) for m in mats]
            width = max(len(s) for s in specs)
            padded = np.full((len(specs), width), np.nan)
            for i, s in enumerate(specs):
                padded[i, : len(s)] = s
            spectra[key][k] = np.nanmean(padded, axis=0)
    return results, spectra


def plot_spectra(path: Path, spectra: dict[str, dict[str, np.ndarray]], title: str = "") -> None:
    """Figure-2-style panels (RGB, depth, fused) of normalised singular values, before vs after the exchange."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    panels = (("RGB", ("rgb_before", "rgb_after")), ("depth", ("depth_before", "depth_after")), ("fused", ("fused",)))
    for ax, (name, kinds) in zip(axes, panels, strict=True):
        for ratio, by_kind in spectra.items():
            for kind in kinds:
                s = by_kind[kind]
                style = "--" if kind.endswith("before") else "-"
                ax.semilogy(np.arange(1, len(s) + 1), np.clip(s, 1e-8, None), style, label=f"o={ratio} {kind}")
        ax.set(title=name, xlabel="singular value index", ylabel="s_i / s_1")
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_bytes_atomic(path, buf.getvalue())


def rank_table(results: dict[str, Any]) -> str:
    """Markdown table of mean ERank before/after and the gains per observation ratio."""
    head = "| ratio | RGB before | RGB after | depth before | depth after | fused | G_rgb | G_depth | H |"
    lines = [head, "|" + "---|" * 9]
    for ratio, r in results.items():
        cols = [r[f"erank_{k}"] for k in KINDS] + [r["gain_rgb"], r["gain_depth"], r["harmonic"]]
        lines.append(f"| {ratio} | " + " | ".join(f"{c:.3f}" for c in cols) + " |")
    return "\n".join(lines)
