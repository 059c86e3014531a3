from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model import ConfigError, load_checkpoint
from tests.training.train_fixtures import shared_tiny_dataset, tiny_config
from training import train_cli
from training.config import load_config
from training.train import TrainResult, lr_at, train
from training.train_state import read_train_state


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_dataset(tmp_path_factory)


@pytest.fixture(scope="module")
def two_epochs(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(tiny_config(tiny_dataset, tmp_path_factory.mktemp("run") / "a"))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_training_writes_checkpoints_state_log_and_curves(two_epochs: TrainResult) -> None:
    out = two_epochs.out
    for name in (
        "best.safetensors",
        "last.safetensors",
        "train_state.safetensors",
        "config.yaml",
        "log.csv",
        "curves.png",
        "summary.json",
        "provenance.json",
    ):
        assert (out / name).is_file(), name
    model, meta = load_checkpoint(out / "last.safetensors", with_backbone=False)
    assert model.cfg.classes == ["walk", "sit", "drink"] and len(model.cfg.backbone_weights_sha256) == 64
    assert meta["provenance"]["epoch"] == 2 and "revision" in meta["provenance"]["git"]
    assert meta["provenance"]["config"]["run"]["seed"] == 1
    assert {"train_loss", "val_loss", "selection", "val_next_action_acc"} <= set(meta["metrics"])
    rows = list(csv.DictReader((out / "log.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dataset = Path(meta["provenance"]["config"]["data"]["dataset"])
    assert load_config(out / "config.yaml").to_dict() == tiny_config(dataset, out).to_dict()


def test_training_uses_batches_smaller_than_the_batch_size(two_epochs: TrainResult) -> None:
    _, meta = read_train_state(two_epochs.out / "train_state.safetensors")
    # 4 training sequences x 3 windows = 12 windows per epoch; batch 4 -> 3 steps; the schedule knows them all
    assert meta["epoch"] == 2 and meta["global_step"] == 6


def test_same_seed_gives_identical_weights_and_another_seed_does_not(
    two_epochs: TrainResult, tiny_dataset: Path, tmp_path: Path
) -> None:
    again = train(tiny_config(tiny_dataset, tmp_path / "b"))
    _assert_same_weights(two_epochs.last, again.last)
    other = train(tiny_config(tiny_dataset, tmp_path / "c", **{"run.seed": 10}))
    wa, wc = _weights(two_epochs.last), _weights(other.last)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_resume_after_a_stop_equals_the_uninterrupted_run(
    two_epochs: TrainResult, tiny_dataset: Path, tmp_path: Path
) -> None:

    out = tmp_path / "stopped"
    first = train(tiny_config(tiny_dataset, out, **{"run.max_epochs": 1}))
    assert first.epochs == 1 and not math.isnan(first.history[0]["train_loss"])
    resumed = train(tiny_config(tiny_dataset, out), resume=True)
    assert resumed.epochs == 2
    _assert_same_weights(two_epochs.last, resumed.last)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in two_epochs.history]


def test_weight_average_is_what_the_checkpoints_hold_and_leaves_training_unchanged(
    two_epochs: TrainResult, tiny_dataset: Path, tmp_path: Path
) -> None:
    averaged = train(tiny_config(tiny_dataset, tmp_path / "ema", **{"optim.ema_decay": 0.5}))
    raw_plain, _ = read_train_state(two_epochs.out / "train_state.safetensors")
    raw_ema, _ = read_train_state(averaged.out / "train_state.safetensors")
    plain_model = {k: v for k, v in raw_plain.items() if k.startswith("model.")}
    assert plain_model and all(torch.equal(v, raw_ema[k]) for k, v in plain_model.items())  # same steps taken
    served = _weights(averaged.last)
    kept = {k.removeprefix("averaged.module."): v for k, v in raw_ema.items() if k.startswith("averaged.module.")}
    assert served.keys() <= kept.keys() and all(torch.equal(v, kept[k]) for k, v in served.items())
    assert any(not torch.equal(v, _weights(two_epochs.last)[k]) for k, v in served.items())
    # a vanishing decay averages nothing: the average is the last step's weights
    latest = train(tiny_config(tiny_dataset, tmp_path / "latest", **{"optim.ema_decay": 1e-12}))
    for k, v in _weights(latest.last).items():
        assert torch.allclose(v.float(), _weights(two_epochs.last)[k].float(), atol=1e-6), k


def test_resume_keeps_the_weight_average(tiny_dataset: Path, tmp_path: Path) -> None:
    whole = train(tiny_config(tiny_dataset, tmp_path / "whole", **{"optim.ema_decay": 0.5}))
    out = tmp_path / "stopped"
    train(tiny_config(tiny_dataset, out, **{"optim.ema_decay": 0.5, "run.max_epochs": 1}))
    resumed = train(tiny_config(tiny_dataset, out, **{"optim.ema_decay": 0.5}), resume=True)
    _assert_same_weights(whole.last, resumed.last)


def test_weight_average_decay_out_of_range_names_the_field(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"optim\.ema_decay"):
        train(tiny_config(tiny_dataset, tmp_path / "bad", **{"optim.ema_decay": 1.0}))


def test_existing_run_folder_needs_resume(two_epochs: TrainResult, tiny_dataset: Path) -> None:
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_config(tiny_dataset, two_epochs.out))


def test_resume_with_a_changed_setting_names_it(two_epochs: TrainResult, tiny_dataset: Path) -> None:
    with pytest.raises(ConfigError, match=r"optim\.lr \(was 0\.001, now 0\.01\)"):
        train(tiny_config(tiny_dataset, two_epochs.out, **{"optim.lr": 0.01}), resume=True)


def test_warmup_starts_above_zero_then_cosine_reaches_min_lr() -> None:
    assert lr_at(0, 100, 10, 1e-3, 0.0) == pytest.approx(1e-4)
    assert lr_at(9, 100, 10, 1e-3, 0.0) == pytest.approx(1e-3)
    assert lr_at(55, 100, 10, 1e-3, 0.0) == pytest.approx(5e-4)
    assert lr_at(100, 100, 10, 1e-3, 1e-5) == pytest.approx(1e-5)
    assert lr_at(0, 100, 0, 1e-3, 0.0) == pytest.approx(1e-3)


def test_first_epoch_trains_with_a_positive_learning_rate(two_epochs: TrainResult) -> None:
    # warm-up of 1 epoch = 3 steps: lr/3, 2 lr/3, lr; the logged lr is the epoch's last
    assert two_epochs.history[0]["lr"] == pytest.approx(1e-3)
    assert lr_at(0, 6, 3, 1e-3, 0.0) == pytest.approx(1e-3 / 3)


def test_paper_protocol_selects_by_validation_moc(tiny_dataset: Path, tmp_path: Path) -> None:
    res = train(
        tiny_config(
            tiny_dataset, tmp_path / "p", **{"data.protocol": "paper", "optim.epochs": 1, "optim.warmup_epochs": 0}
        )
    )
    row = res.history[0]
    assert row["selection"] == row["val_moc"] and 0 <= row["val_moc"] <= 1
    _, meta = load_checkpoint(res.best, with_backbone=False)
    assert meta["metrics"]["val_moc"] == row["val_moc"]
    assert meta["config"]["fps"] == 10.0  # paper protocol: the dataset's fps / frame_step


def test_a_run_sized_down_trains_and_selects_on_the_first_sequences_of_its_splits(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    import json

    from rgbd.dataset import Dataset

    cfg = tiny_config(tiny_dataset, tmp_path / "s", **{"optim.epochs": 1, "optim.warmup_epochs": 0,
                      "data.max_train_sequences": 2, "data.max_val_sequences": 1})  # fmt: skip
    train(cfg)
    used = json.loads((tmp_path / "s" / "provenance.json").read_text())["dataset"]
    splits = Dataset(tiny_dataset)
    assert len(splits.split("train")) > 2 and len(splits.split("val")) > 1  # the caps cut something
    assert (used["train"], used["val"]) == (2, 1)
    with pytest.raises(ConfigError, match="data.max_val_sequences"):
        tiny_config(tiny_dataset, tmp_path / "bad", **{"data.max_val_sequences": -1})


def test_cli_trains_from_a_recipe_with_overrides_then_resumes(tiny_dataset: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "data:\n  protocol: streaming\n  windows_per_sequence: 2\n  min_observed_s: 0.5\n"
        "model:\n  hidden: 32\n  ffn: 64\n  max_len: 64\n  fps: 10\n  window_s: 2\n  horizon_s: 1\n"
        "  depth_size: [30, 40]\n  image_size: [60, 80]\n"
        "optim:\n  epochs: 2\n  warmup_epochs: 1\n  batch_size: 8\n"
        "run:\n  progress: false\n  threads: 1\n"
    )
    out = tmp_path / "cli"
    args = ["--config", str(recipe), "--set", f"data.dataset={tiny_dataset}", "--run.out", str(out)]
    assert train_cli.main([*args, "--run.max_epochs", "1"]) == 0
    assert read_train_state(out / "train_state.safetensors")[1]["epoch"] == 1
    assert train_cli.main(["--resume", "--run.out", str(out), "--run.max_epochs", "2"]) == 0
    assert read_train_state(out / "train_state.safetensors")[1]["epoch"] == 2


def test_cli_reports_bad_configuration_without_a_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert train_cli.main(["--set", "optim.lr=-1", "--optim.batch_size", "0", "--run.out", str(tmp_path)]) == 2
    assert "optim.lr: expected a positive learning rate" in caplog.text
    assert "optim.batch_size: expected an integer >= 1" in caplog.text
    assert "data.dataset" in caplog.text
