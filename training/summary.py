"""The contract summary of a streaming model on a test split: the figures `models/default/test_metrics.json` carries
in its top-level `summary` (written by `r3d-eval --summary`), each computed here, never typed in.

  test_sequences, test_windows      what was evaluated (streaming windows every data.val_stride_s seconds)
  next_action_acc, _ci95            next-action accuracy with its 95 % bootstrap interval over test sequences
  current_action_acc                the last observed frame's action (the model's segmentation there)
  baseline_*                        training.baselines on the same windows (tables counted on the training split)
  dark_s3_next_action_acc           next-action accuracy with every test frame's RGB darkened (rgb_dark, gain 0.1)
  dead_depth_channels / _rgb_       token channels zero on every test frame (training.rank_analysis.dead_channels)
  ece_before, ece_after             expected calibration error (15 bins) on the test windows with temperature 1 and
                                    with the model's fitted temperatures: the worse of the two served distributions
                                    (current action, action queries); both are in `calibration`
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rgbd.dataset import Dataset
from training.calibration import calibration_figures, collect_logits, ece_interval
from training.evaluate import evaluate_checkpoint, evaluation_split, load_for_eval, protocol_spec, resolve_device
from training.features import ensure_features
from training.rank_analysis import dead_channels
from training.sampler import evaluation_windows

SUMMARY_KEYS = (
    "test_sequences",
    "test_windows",
    "next_action_acc",
    "next_action_acc_ci95",
    "current_action_acc",
    "baseline_majority",
    "baseline_oracle_follower",
    "baseline_oracle_prev_current",
    "dark_s3_next_action_acc",
    "dead_depth_channels",
    "dead_rgb_channels",
    "ece_before",
    "ece_after",
)


def contract_summary(
    path: str | Path,
    dataset_root: str | Path,
    clean: dict[str, Any],
    *,
    split: str = "test",
    cache_root: str | Path | None = None,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """The summary of one streaming checkpoint, given its clean evaluate_checkpoint result on `split`."""
    if "streaming" not in clean:
        raise ValueError(f"the contract summary is defined for the streaming protocol, got {clean.get('protocol')!r}")
    s = clean["streaming"]
    common: dict[str, Any] = {"split": split, "cache_root": cache_root, "batch_size": batch_size, "device": device}
    dark = evaluate_checkpoint(path, dataset_root, degradation="rgb_dark", severity=3, progress=progress, **common)
    dev = resolve_device(device)
    model, cfg, _ = load_for_eval(path)
    model.to(dev)
    dataset = Dataset(dataset_root)
    _, data = ensure_features(
        dataset,
        model.cfg.backbone,
        model.cfg.preprocessing,
        evaluation_split(dataset, split),
        expected_sha256=model.cfg.backbone_weights_sha256 or None,
        cache_root=cache_root,
        progress=progress,
        device=str(dev),
    )
    model.cpu()
    dead = dead_channels(model, data)
    spec = protocol_spec(cfg, model.cfg)
    sets = collect_logits(model, data, evaluation_windows(data, spec), spec, batch_size=batch_size)
    t_current, t_action = model.cfg.segment_temperature, model.cfg.action_temperature
    ece = calibration_figures(sets, t_current, t_action)
    ece_ci95 = {
        "current_after": ece_interval(sets.current_logits / t_current, sets.current_labels, sets.current_seqs),
        "action_after": ece_interval(sets.action_logits / t_action, sets.action_labels, sets.action_seqs),
    }
    base = s["baselines"]
    summary: dict[str, Any] = {
        "test_sequences": int(s["sequences"]),
        "test_windows": int(s["windows"]),
        "next_action_acc": s["next_action_acc"],
        "next_action_acc_ci95": s["ci95"]["next_action_acc"],
        "current_action_acc": s["current_action_acc"],
        "baseline_majority": base["majority"],
        "baseline_oracle_follower": base["oracle_follower"],
        "baseline_oracle_prev_current": base["oracle_prev_current"],
        "dark_s3_next_action_acc": dark["streaming"]["next_action_acc"],
        "dead_depth_channels": dead["depth"],
        "dead_rgb_channels": dead["rgb"],
        "ece_before": max(ece["ece_current_before"], ece["ece_action_before"]),
        "ece_after": max(ece["ece_current_after"], ece["ece_action_after"]),
    }
    assert tuple(summary) == SUMMARY_KEYS
    return summary | {
        "baseline_predicted_follower": base["predicted_follower"],
        "current_action_acc_ci95": s["ci95"]["current_action_acc"],
        "dark_s3_next_action_acc_ci95": dark["streaming"]["ci95"]["next_action_acc"],
        "temperatures": {"current": t_current, "action": t_action},
        "calibration": ece,
        "calibration_ci95": ece_ci95,  # bootstrap over test sequences
    }
