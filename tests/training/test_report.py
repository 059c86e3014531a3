from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.report import (
    ABLATIONS,
    STREAMING_ABLATIONS,
    STREAMING_CANDIDATES,
    VARIANTS,
    comparison_lines,
    curve_flattened,
    paired_comparisons,
    plan,
    verdicts,
)


def test_plan_covers_every_comparison_and_ablation_once() -> None:
    runs = plan([1, 10, 13452], [1])
    names = [r.name for r in runs]
    expected = (2 * len(VARIANTS) + len(STREAMING_CANDIDATES)) * 3 + len(ABLATIONS) + len(STREAMING_ABLATIONS)
    assert len(names) == len(set(names)) == expected
    assert "streaming-cen-s13452" in names and "paper-rtf-variance-s1" in names
    assert "streaming-rtf-linear-depth-s1" in names and "streaming-rtf-rgb-dropout-dark-s1" in names
    assert "streaming-rtf-person-color-s13452" in names and "paper-rtf-person-color-s1" not in names
    ratio = next(r for r in runs if r.variant == "rtf-ratio0.3")
    assert ratio.overrides == {"model.fusion": "rtf", "model.exchange_ratio": 0.3}


def test_plan_keeps_only_the_protocols_asked_for() -> None:
    runs = plan([1, 10, 13452], [1], ("streaming",))
    assert {r.protocol for r in runs} == {"streaming"}
    assert len(runs) == (len(VARIANTS) + len(STREAMING_CANDIDATES)) * 3 + len(STREAMING_ABLATIONS)
    assert [r.variant for r in runs[: len(VARIANTS)]] == list(VARIANTS)  # every method's first seed comes first


def _stat(mean: float, std: float = 0.0) -> dict[str, float]:
    return {"mean": mean, "std": std, "n": 3}


def test_verdicts_compare_r3d_with_the_best_baseline_in_points() -> None:
    summary = {
        "streaming": {
            "rtf": {"headline": {"next_action_acc": _stat(0.60), "time_to_next_mae_s": _stat(1.0)}},
            "rgb": {"headline": {"next_action_acc": _stat(0.55), "time_to_next_mae_s": _stat(0.8)}},
            "depth": {"headline": {"next_action_acc": _stat(0.40), "time_to_next_mae_s": _stat(1.5)}},
        }
    }
    lines = verdicts(summary)
    assert any("next_action_acc: R3D wins" in x and "RGB only (FUTR)" in x and "by 5.00 points" in x for x in lines)
    assert any("time_to_next_mae_s: R3D loses" in x and "by 0.20 s" in x for x in lines)
    assert not any("not a clear difference" in x for x in lines)


def test_verdicts_call_a_gap_inside_the_seed_spread_unclear() -> None:
    summary = {
        "paper": {
            "rtf": {"headline": {"moc_standard": _stat(0.30, 0.05)}},
            "concat": {"headline": {"moc_standard": _stat(0.28, 0.01)}},
        }
    }
    (line,) = verdicts(summary)
    assert "R3D wins" in line and "by 2.00 points" in line and "not a clear difference" in line


def test_curve_flattened_compares_the_last_epochs() -> None:
    flat = [
        {"val_loss": v, "train_loss": 9.0 - i} for i, v in enumerate((5.0, 3.0, 2.0, 1.02, 1.01, 1.0, 1.0, 1.0, 0.99))
    ]
    assert curve_flattened(flat) is True
    assert curve_flattened(flat, "train_loss") is False  # still falling: overfitting, not undertraining
    assert curve_flattened(flat[:3]) is None


def _record(
    variant: str, seed: int, hits: list[int], baseline: list[int] | None = None, current: list[int] | None = None
) -> dict[str, object]:
    """Six windows over three sequences; `current`: whether each window's current action was named (default: all)."""
    seqs = ["a", "a", "b", "b", "c", "c"]
    windows = [
        {"seq": q, "hit": h, "current": 1, "current_pred": 1 if c else 0,
         **({"hit_majority": b} if baseline else {})}
        for q, h, b, c in zip(seqs, hits, baseline or hits, current or [1] * 6, strict=True)
    ]  # fmt: skip
    return {"run": f"streaming-{variant}-s{seed}", "protocol": "streaming", "variant": variant,
            "evaluation": {"windows": windows}}  # fmt: skip


def test_paired_comparisons_average_seeds_then_pair_r3d_with_each_method_and_baseline() -> None:
    records = [
        _record("rtf", 1, [1, 1, 1, 1, 1, 0], baseline=[0, 0, 0, 0, 0, 0]),
        _record("rtf", 10, [1, 1, 1, 1, 0, 0]),
        _record("rgb", 1, [1, 1, 1, 1, 1, 0]),
    ]
    comp = paired_comparisons(records)
    methods = comp["methods"]
    assert (comp["windows"], comp["sequences"]) == (6, 3)
    assert methods["rtf"]["accuracy"] == pytest.approx(0.75)  # per-window hits averaged over the two seeds
    assert methods["rgb"]["r3d_minus"]["difference"] == pytest.approx(0.75 - 5 / 6)
    assert methods["baseline: majority"]["r3d_minus"]["verdict"] == "first better"
    lines = comparison_lines(comp)
    assert any(line.startswith("| baseline: majority | 0.0 | [0.0, 0.0] | +75.0") for line in lines)


def test_current_action_comparison_pairs_the_last_frame_hits_without_the_next_action_baselines() -> None:
    records = [
        _record("rtf", 1, [0] * 6, baseline=[1] * 6, current=[1, 1, 1, 1, 0, 0]),
        _record("depth", 1, [1] * 6, current=[1, 1, 0, 0, 0, 0]),
    ]
    comp = paired_comparisons(records, "current_action")
    assert set(comp["methods"]) == {"rtf", "depth"}  # the baselines predict the next action, not the current one
    assert comp["methods"]["rtf"]["accuracy"] == pytest.approx(4 / 6)
    assert comp["methods"]["depth"]["r3d_minus"]["difference"] == pytest.approx(2 / 6)
    unknown = _record("rtf", 10, [0] * 6, current=[1, 1, 1, 1, 0, 0])
    unknown["evaluation"]["windows"][5]["current"] = -1  # type: ignore[index]
    assert paired_comparisons([unknown], "current_action")["windows"] == 5  # unlabelled windows are not counted
    lines = comparison_lines(comp, "current-action accuracy")
    assert lines[1].startswith("## Streaming current-action accuracy with 95 % intervals (6 test windows, 3 sequences")


def test_paired_comparisons_refuse_runs_evaluated_on_other_windows() -> None:
    other = _record("rgb", 1, [1, 1, 1, 1, 1, 0])
    other["evaluation"]["windows"] = other["evaluation"]["windows"][:4]  # type: ignore[index]
    with pytest.raises(ValueError, match="evaluated on other windows"):
        paired_comparisons([_record("rtf", 1, [1, 1, 1, 1, 1, 0]), other])


def test_report_only_trains_nothing_and_lists_every_run_as_missing(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from tests.training.train_fixtures import shared_tiny_dataset
    from training.report import main

    dataset = shared_tiny_dataset(tmp_path_factory)
    argv = ["--dataset", str(dataset), "--out", str(tmp_path), "--protocols", "streaming", "--seeds", "1",
            "--train-sequences", "2", "--degradations", "rgb_dark", "--severity", "3", "--report-only"]  # fmt: skip
    assert main(argv) == 0
    assert not (tmp_path / "runs").exists()
    meta = json.loads((tmp_path / "results.json").read_text())["meta"]
    assert meta["runs"].startswith(
        f"0 finished, {len(VARIANTS) + len(STREAMING_CANDIDATES) + len(STREAMING_ABLATIONS)} missing"
    )
    assert meta["sized to fit"].startswith("protocols streaming; train sequences 2, validation sequences all")
    assert meta["robustness"] == "rgb_dark at severity 3"
    assert meta["epochs"] == "streaming 12"  # the protocols run, not the others


def test_every_run_of_the_plan_is_a_valid_configuration_of_its_recipe() -> None:
    from training.config import load_config
    from training.report import RECIPES

    for run in plan([1], [1]):
        cfg = load_config(RECIPES[run.protocol], {"data.dataset": "data/synth", **run.overrides})
        cfg.model.to_r3d(["walk", "sit", "wave"], fps=15.0)  # ConfigError names what does not go together
