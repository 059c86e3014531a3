"""The service-model recipe's parts end to end on the tiny dataset: modality dropout, calibration after training,
baselines with intervals in the streaming evaluation, and the contract summary of `r3d-eval --summary`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from model import load_checkpoint
from tests.training.train_fixtures import one_thread, shared_tiny_dataset, tiny_config
from training import eval_cli
from training.evaluate import evaluate_checkpoint
from training.features import SequenceFeatures
from training.sampler import Window
from training.summary import SUMMARY_KEYS
from training.train import TrainResult, drop_rgb, train


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_dataset(tmp_path_factory)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def service_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    over = {
        "optim.epochs": 1,
        "optim.warmup_epochs": 0,
        "model.depth_encoder": "conv",
        "model.depth_input": "metric",
        "model.decoder_value_positions": True,
        "model.position_init_std": 0.02,
        "optim.rgb_dropout": 0.5,
        "optim.rgb_dropout_mode": "dark",
    }
    return train(tiny_config(tiny_dataset, tmp_path_factory.mktemp("service") / "run", **over))


def _batch(rows: int) -> dict[str, torch.Tensor]:
    return {"features": torch.ones(rows, 3, 4), "index": torch.arange(rows), "valid": torch.ones(rows, 3).bool()}


def test_drop_rgb_zeroes_the_chosen_windows_and_leaves_the_others() -> None:
    batch = _batch(200)
    n = drop_rgb(batch, [], 0.25, torch.Generator().manual_seed(0), dark=None)
    zeroed = (batch["features"] == 0).all(dim=(1, 2))
    assert int(zeroed.sum()) == n and 30 < n < 70
    assert (batch["features"][~zeroed] == 1).all()


def test_drop_rgb_puts_in_the_same_frames_features_from_the_dark_cache() -> None:
    dark_rgb = np.arange(10 * 4, dtype=np.float16).reshape(10, 4)
    dark = {"a": SequenceFeatures("a", dark_rgb, np.zeros((10, 1, 1, 1)), np.zeros(10, dtype=np.int64), np.arange(10))}
    windows = [Window("a", np.array([2, 3]), np.array([4]), 1, 0.0, 4, 10)]
    batch = {
        "features": torch.ones(1, 3, 4),
        "index": torch.zeros(1, dtype=torch.long),
        "valid": torch.ones(1, 3).bool(),
    }
    assert drop_rgb(batch, windows, 1.0, torch.Generator().manual_seed(0), dark) == 1
    torch.testing.assert_close(batch["features"][0, :2], torch.from_numpy(dark_rgb[[2, 3]]).float())
    assert (batch["features"][0, 2] == 1).all()  # padding untouched


def test_training_ends_by_installing_temperatures_fitted_on_validation(service_run: TrainResult) -> None:
    summary = json.loads((service_run.out / "summary.json").read_text())
    cal = summary["calibration"]
    model, meta = load_checkpoint(service_run.best, with_backbone=False)
    assert model.cfg.segment_temperature == cal["segment_temperature"] != 1.0
    assert model.cfg.action_temperature == cal["action_temperature"]
    assert meta["metrics"]["calibration"] == cal
    assert model.cfg.depth_encoder == "conv" and model.cfg.decoder_value_positions
    assert model.cfg.preprocessing.depth_channels == 2  # metric depth + validity into the conv encoder


def test_streaming_evaluation_scores_the_baselines_on_the_same_windows(
    service_run: TrainResult, tiny_dataset: Path
) -> None:
    res = evaluate_checkpoint(service_run.best, tiny_dataset)
    s, windows = res["streaming"], res["windows"]
    assert len(windows) == s["windows"] == 8
    assert s["next_action_acc"] == pytest.approx(np.mean([w["hit"] for w in windows]))
    assert set(s["baselines"]) == {"majority", "oracle_follower", "oracle_prev_current", "predicted_follower"}
    lo, hi = s["ci95"]["next_action_acc"]
    assert lo <= s["next_action_acc"] <= hi
    for name, d in s["model_minus_baseline"].items():
        assert d["difference"] == pytest.approx(s["next_action_acc"] - s["baselines"][name], abs=1e-9)


def test_r3d_eval_summary_writes_the_contract_at_the_top_level(
    service_run: TrainResult, tiny_dataset: Path, tmp_path: Path
) -> None:
    assert eval_cli.main([str(service_run.best), str(tiny_dataset), "--summary", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "results.json").read_text())
    summary = report["summary"]
    assert list(summary)[: len(SUMMARY_KEYS)] == list(SUMMARY_KEYS)
    assert (summary["test_sequences"], summary["test_windows"]) == (2, 8)
    assert summary["dead_depth_channels"] == 0  # the conv encoder has no unit dead by construction
    assert summary["next_action_acc"] == report["results"][0]["clean"]["streaming"]["next_action_acc"]
    assert 0 <= summary["ece_after"] <= 1 and 0 <= summary["dark_s3_next_action_acc"] <= 1
    for name, (lo, hi) in summary["calibration_ci95"].items():
        assert lo <= summary["calibration"][f"ece_{name}"] <= hi, name
    markdown = (tmp_path / "results.md").read_text()
    assert "| oracle_follower |" in markdown and "| dead_depth_channels | 0 |" in markdown
