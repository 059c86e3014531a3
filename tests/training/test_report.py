from __future__ import annotations

from training.report import ABLATIONS, VARIANTS, curve_flattened, plan, verdicts


def test_plan_covers_every_comparison_and_ablation_once() -> None:
    runs = plan([1, 10, 13452], [1])
    names = [r.name for r in runs]
    assert len(names) == len(set(names)) == 2 * len(VARIANTS) * 3 + len(ABLATIONS)
    assert "streaming-cen-s13452" in names and "paper-rtf-variance-s1" in names
    ratio = next(r for r in runs if r.variant == "rtf-ratio0.3")
    assert ratio.overrides == {"model.fusion": "rtf", "model.exchange_ratio": 0.3}


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
