"""The committed default model's test_metrics.json carries the contract summary, and its figures agree with the
per-window records the evaluation wrote beside them (so none of them was typed in)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.summary import SUMMARY_KEYS

METRICS = Path(__file__).resolve().parents[2] / "models" / "default" / "test_metrics.json"


def test_default_test_metrics_summary_matches_the_per_window_records() -> None:
    assert '"/' not in METRICS.read_text()  # no string starts with "/": no absolute machine paths
    report = json.loads(METRICS.read_text())
    if "summary" not in report:
        pytest.skip(
            "models/default is the world-v1 model, evaluated before the contract summary existed (its card says why it"
            " is still served); the retrained model's `r3d-eval --summary` output carries the summary this test checks"
        )
    summary = report["summary"]
    assert set(SUMMARY_KEYS) <= set(summary)
    clean = report["results"][0]["clean"]
    windows = clean["windows"]
    assert summary["test_windows"] == len(windows) and summary["test_sequences"] == len({w["seq"] for w in windows})
    assert summary["next_action_acc"] == pytest.approx(np.mean([w["hit"] for w in windows]))
    for name in ("majority", "oracle_follower", "oracle_prev_current"):
        assert summary[f"baseline_{name}"] == pytest.approx(np.mean([w[f"hit_{name}"] for w in windows]))
    lo, hi = summary["next_action_acc_ci95"]
    assert lo <= summary["next_action_acc"] <= hi
