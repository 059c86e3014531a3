"""Evaluation of a model on cached features: the paper's MoC, the streaming metrics, validation for training, and
whole checkpoints on a dataset split (clean or degraded), as used by `r3d-eval`.

Checkpoint selection during training uses the val split; `r3d-eval` uses the test split and refuses a test split
that overlaps the selection split (the UTKinect defect of the reference code).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import R3D, AnticipatorOutput, R3DConfig, load_checkpoint
from model.decoding import decode_frames
from rgbd.dataset import Dataset
from training.baselines import (
    FollowerTables,
    baseline_hits,
    bootstrap_ci,
    paired_difference,
    training_tables,
    window_facts,
)
from training.config import STANDARD_HORIZONS, TrainConfig, config_from_dict
from training.features import SequenceFeatures, ensure_features
from training.losses import r3d_loss
from training.metrics import MoC, StreamingMetrics, next_change
from training.paths import recorded_path
from training.sampler import ProtocolSpec, Window, WindowDataset, collate, evaluation_windows, frames_of

logger = logging.getLogger(__name__)
PAPER_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def protocol_spec(
    cfg: TrainConfig, model_cfg: R3DConfig, protocol: str | None = None, stride_s: float | None = None
) -> ProtocolSpec:
    """How a model trained with `cfg` is sampled and scored; streaming windows end every `stride_s` seconds (default:
    the recipe's data.val_stride_s)."""
    d = cfg.data
    return ProtocolSpec(
        protocol=protocol or d.protocol,
        n_queries=model_cfg.n_queries,
        none_index=model_cfg.none_index,
        max_len=model_cfg.max_len,
        future_fraction=d.future_fraction,
        frame_step=d.frame_step,
        fps=model_cfg.fps,
        window_s=model_cfg.window_s,
        horizon_s=model_cfg.horizon_s,
        min_observed_s=d.min_observed_s,
        stride_s=stride_s or d.val_stride_s,
        speed_jitter=d.speed_jitter,
    )


def resolve_device(device: str) -> torch.device:
    """ "auto" -> CUDA when available, else CPU; anything else as torch names it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; expected cpu or auto")
    return dev


def amp_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def iterate_outputs(
    model: R3D,
    data: dict[str, SequenceFeatures],
    windows: list[Window],
    spec: ProtocolSpec,
    *,
    batch_size: int = 16,
    device: torch.device | None = None,
    amp_dtype: torch.dtype | None = None,
) -> Iterator[tuple[list[Window], AnticipatorOutput, dict[str, torch.Tensor]]]:
    """Run the model (in eval mode) over windows in batches; yields (windows, float32 outputs on CPU, batch)."""
    device = device or torch.device("cpu")
    ds = WindowDataset(data, windows, spec)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(ds), batch_size):
            batch = collate([ds[i] for i in range(start, min(start + batch_size, len(ds)))])
            with amp_context(device, amp_dtype):
                out = model.forward_features(
                    batch["features"].to(device), batch["depth"].to(device), batch["valid"].to(device)
                )
            out = AnticipatorOutput(*(x.float().cpu() for x in out))
            yield windows[start : start + batch_size], out, batch
    finally:
        model.train(was_training)


def evaluate_paper(
    model: R3D,
    data: dict[str, SequenceFeatures],
    spec: ProtocolSpec,
    ratios: tuple[float, ...] | list[float] = PAPER_RATIOS,
    horizons: tuple[float, ...] | list[float] = STANDARD_HORIZONS,
    **kw: Any,
) -> dict[str, Any]:
    """MoC per observation ratio alpha and horizon beta: {"moc": {"0.2": {"0.1": v, ...}}, "mean": v}."""
    k = model.cfg.n_classes
    table: dict[str, dict[str, float]] = {}
    for alpha in ratios:
        accs = {beta: MoC(k) for beta in horizons}
        windows = evaluation_windows(data, spec, alpha)
        for ws, out, _ in iterate_outputs(model, data, windows, spec, **kw):
            for i, w in enumerate(ws):
                pred = decode_frames(out.action_logits[i], out.duration_logits[i], model.cfg.none_index, w.horizon)
                gt = data[w.seq].labels[w.future]
                for beta, acc in accs.items():
                    n = min(frames_of(alpha + beta, w.length) - w.position, len(gt), len(pred))
                    acc.update(pred[:n], gt[:n])
        table[f"{alpha:g}"] = {f"{beta:g}": acc.value for beta, acc in accs.items()}
    values = [v for row in table.values() for v in row.values() if not math.isnan(v)]
    return {"moc": table, "mean": float(np.mean(values)) if values else float("nan")}


def evaluate_streaming(
    model: R3D,
    data: dict[str, SequenceFeatures],
    spec: ProtocolSpec,
    records: list[dict[str, Any]] | None = None,
    **kw: Any,
) -> dict[str, float]:
    """Next-action accuracy, time-to-next-action MAE (s) and MoC over the horizon, on windows every stride_s.
    With `records`, one record per window is appended to it: its sequence, the true previous / current / next
    actions (training.baselines.window_facts), the model's current and next action and whether the next is right."""
    cfg = model.cfg
    acc = StreamingMetrics(cfg.n_classes, cfg.none_index, spec.fps)
    windows = evaluation_windows(data, spec)
    for ws, out, batch in iterate_outputs(model, data, windows, spec, **kw):
        last = batch["valid"].sum(dim=1) - 1  # (B,)
        current = out.segment_logits[torch.arange(len(ws)), last].argmax(-1)  # (B,)
        for i, w in enumerate(ws):
            labels = data[w.seq].labels
            pred = decode_frames(out.action_logits[i], out.duration_logits[i], cfg.none_index, spec.horizon_frames)
            acc.update(pred, labels[w.future], int(current[i]), int(labels[w.observed[-1]]))
            if records is not None:
                facts = window_facts(data[w.seq], w, cfg.none_index)
                change = next_change(pred, int(current[i]))
                guess = change[0] if change else cfg.none_index
                records.append(
                    {
                        **asdict(facts),
                        "current_pred": int(current[i]),
                        "next_pred": guess,
                        "hit": int(guess == facts.next),
                    }
                )
    return acc.result()


def label_sequences(dataset: Dataset, ids: list[str]) -> dict[str, SequenceFeatures]:
    """Sequences with labels and timestamps only (no features): enough to count the baselines' tables."""
    index = {c: i for i, c in enumerate(dataset.classes)}
    out = {}
    for seq_id in ids:
        times, labels = dataset.labels(seq_id)
        ints = np.array([-1 if lab is None else index[lab] for lab in labels], dtype=np.int64)
        empty = np.zeros((len(ints), 0), dtype=np.float16)
        out[seq_id] = SequenceFeatures(seq_id, empty, empty, ints, np.asarray(times, dtype=np.float64))
    return out


def with_baselines(
    streaming: dict[str, float], records: list[dict[str, Any]], tables: FollowerTables
) -> dict[str, Any]:
    """The streaming result with the current-action accuracy, the baselines on the same windows, 95 % intervals over
    sequences for each, and paired differences model - baseline; each record gains the baselines' hits (hit_NAME)."""
    seqs = [r["seq"] for r in records]
    hits = np.array([r["hit"] for r in records], dtype=np.float64)
    known = [r for r in records if r["current"] >= 0]
    cur_hits = np.array([float(r["current_pred"] == r["current"]) for r in known])
    base = baseline_hits(records, tables)
    for name, name_hits in base.items():  # per window too, so reports can pair any two predictors
        for r, h in zip(records, name_hits.tolist(), strict=True):
            r[f"hit_{name}"] = int(h)
    out: dict[str, Any] = dict(streaming)
    out["sequences"] = len(set(seqs))
    out["current_action_acc"] = float(cur_hits.mean()) if len(cur_hits) else float("nan")
    out["ci95"] = {
        "next_action_acc": bootstrap_ci(seqs, hits),
        "current_action_acc": bootstrap_ci([r["seq"] for r in known], cur_hits),
        **{f"baseline_{k}": bootstrap_ci(seqs, v) for k, v in base.items()},
    }
    out["current_action_acc_by_onset"] = by_onset(known, cur_hits)
    out["baselines"] = {k: float(v.mean()) if len(v) else float("nan") for k, v in base.items()}
    out["model_minus_baseline"] = {k: paired_difference(seqs, hits, v) for k, v in base.items()}
    return out


ONSET_BINS_S = (0.5, 1.0, 2.0)  # bin edges of how long the current action has been going at a window's end


def onset_masks(records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Bin name -> which records fall in it, by how long the current action has been going at the window's end
    (record "current_for_s", binned at ONSET_BINS_S)."""
    edges = [0.0, *ONSET_BINS_S, math.inf]
    since = np.array([r["current_for_s"] for r in records], dtype=np.float64)
    return {
        (f">= {lo:g} s" if math.isinf(hi) else f"{lo:g}-{hi:g} s"): (since >= lo) & (since < hi)
        for lo, hi in itertools.pairwise(edges)
    }


def by_onset(records: list[dict[str, Any]], hits: np.ndarray) -> dict[str, dict[str, Any]]:
    """Current-action accuracy by how long the current action has been going (onset_masks): right after an action
    starts, little of it has been seen."""
    out = {}
    for name, keep in onset_masks(records).items():
        seqs = [r["seq"] for r, k in zip(records, keep.tolist(), strict=True) if k]
        out[name] = {"windows": int(keep.sum()), "accuracy": float(hits[keep].mean()) if keep.any() else math.nan,
                     "ci95": bootstrap_ci(seqs, hits[keep]) if keep.any() else [math.nan, math.nan]}  # fmt: skip
    return out


def validation_loss(
    model: R3D,
    data: dict[str, SequenceFeatures],
    windows: list[Window],
    spec: ProtocolSpec,
    cfg: TrainConfig,
    **kw: Any,
) -> float:
    """The training objective averaged over validation windows (weighted by batch size)."""
    o = cfg.optim
    total, count = 0.0, 0
    for ws, out, batch in iterate_outputs(model, data, windows, spec, **kw):
        parts = r3d_loss(
            out,
            batch,
            none_index=model.cfg.none_index,
            transition_weight=o.transition_weight,
            weights=(o.segmentation_weight, o.anticipation_weight, o.duration_weight),
        )
        total += float(parts.total) * len(ws)
        count += len(ws)
    return total / count if count else float("nan")


def validate(
    model: R3D, data: dict[str, SequenceFeatures], cfg: TrainConfig, spec: ProtocolSpec, **kw: Any
) -> dict[str, float]:
    """Validation metrics; `selection` is the checkpoint-selection metric (higher is better):
    paper protocol: mean val MoC over data.val_ratios x horizons (0.1, 0.2, 0.3, 0.5);
    streaming protocol: (next-action accuracy + MoC over the horizon) / 2."""
    if spec.protocol == "paper":
        res = evaluate_paper(model, data, spec, cfg.data.val_ratios, STANDARD_HORIZONS, **kw)
        windows = [w for r in cfg.data.val_ratios for w in evaluation_windows(data, spec, r)]
        out = {"val_moc": res["mean"], "selection": res["mean"]}
    else:
        res = evaluate_streaming(model, data, spec, **kw)
        windows = evaluation_windows(data, spec)
        score = (res["next_action_acc"] + res["moc_horizon"]) / 2
        out = {
            "val_next_action_acc": res["next_action_acc"],
            "val_moc_horizon": res["moc_horizon"],
            "val_time_to_next_mae_s": res["time_to_next_mae_s"],
            "selection": score,
        }
    out["val_loss"] = validation_loss(model, data, windows, spec, cfg, **kw)
    return out


def evaluation_split(dataset: Dataset, split: str = "test") -> list[str]:
    """The evaluation split's sequences; refuses an empty split or one that overlaps the selection split."""
    ids = dataset.split(split)
    if split == "val":
        logger.warning("evaluating on 'val', the checkpoint-selection split: these figures are optimistic")
    if not ids:
        raise ValueError(f"{dataset.root}: split {split!r} is empty; expected sequences to evaluate on")
    if split != "val" and dataset.splits:
        overlap = sorted(set(ids) & set(dataset.split("val")))
        if overlap:
            raise ValueError(
                f"{dataset.root}: the {split!r} split shares {len(overlap)} sequences with the checkpoint-selection "
                f"split 'val' (e.g. {overlap[0]!r}); expected disjoint splits"
            )
    return ids


def load_for_eval(path: str | Path) -> tuple[R3D, TrainConfig, dict[str, Any]]:
    model, meta = load_checkpoint(path, with_backbone=False)
    saved = meta.get("provenance", {}).get("config")
    cfg = config_from_dict(saved) if saved else TrainConfig()
    return model, cfg, meta


def evaluate_checkpoint(
    path: str | Path,
    dataset_root: str | Path,
    *,
    split: str = "test",
    protocol: str | None = None,
    ratios: list[float] | None = None,
    horizons: list[float] | None = None,
    cache_root: str | Path | None = None,
    degradation: str | None = None,
    severity: int = 0,
    batch_size: int = 16,
    progress: bool = False,
    device: str = "auto",
    stride_s: float | None = None,
) -> dict[str, Any]:
    """One checkpoint on one split of a dataset: the paper's MoC table or the streaming metrics (windows ending every
    `stride_s` seconds, default the recipe's)."""
    dev = resolve_device(device)
    model, cfg, _ = load_for_eval(path)
    model.to(dev)
    dataset = Dataset(dataset_root)
    if dataset.classes != model.cfg.classes:
        raise ValueError(
            f"checkpoint {path} was trained on classes {model.cfg.classes}, dataset {dataset.root} has "
            f"{dataset.classes}; expected the same class list"
        )
    ids = evaluation_split(dataset, split)
    if model.cfg.uses_color:
        dataset.require_color(ids, f"checkpoint {path} (fusion {model.cfg.fusion!r})")
    _, data = ensure_features(
        dataset,
        model.cfg.backbone,
        model.cfg.preprocessing,
        ids,
        expected_sha256=model.cfg.backbone_weights_sha256 or None,
        cache_root=cache_root,
        degradation=degradation,
        severity=severity,
        progress=progress,
        device=str(dev),
    )
    spec = protocol_spec(cfg, model.cfg, protocol, stride_s)
    kw: dict[str, Any] = {"batch_size": batch_size, "device": dev}
    result: dict[str, Any] = {
        "checkpoint": recorded_path(path),
        "split": split,
        "protocol": spec.protocol,
        "sequences": len(ids),
    }
    if spec.protocol == "paper":
        result["paper"] = evaluate_paper(
            model, data, spec, ratios or list(PAPER_RATIOS), horizons or list(STANDARD_HORIZONS), **kw
        )
    else:
        records: list[dict[str, Any]] = []
        streaming = evaluate_streaming(model, data, spec, records=records, **kw)
        tables = training_tables(label_sequences(dataset, dataset.split(cfg.data.train_split)), spec)
        result["streaming"] = with_baselines(streaming, records, tables)
        result["stride_s"] = spec.stride_s
        result["windows"] = records
    return result


def headline(result: dict[str, Any]) -> dict[str, float]:
    """The numbers a robustness table shows for one evaluation result."""
    if "paper" in result:
        moc = result["paper"]["moc"]
        std = [moc[a][b] for a in ("0.2", "0.3") if a in moc for b in moc[a]]
        return {"moc_standard": float(np.nanmean(std)) if std else result["paper"]["mean"]}
    s = result["streaming"]
    keys = ("next_action_acc", "current_action_acc", "moc_horizon", "time_to_next_mae_s")
    return {k: s[k] for k in keys if k in s}
