from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from model import effective_rank
from model.decoding import decode_frames
from rgbd.dataset import Dataset, DatasetWriter
from rgbd.files import write_json_atomic
from tests.training.train_fixtures import one_thread, shared_tiny_dataset, tiny_config
from training import eval_cli, rank_analysis
from training.evaluate import (
    evaluate_checkpoint,
    evaluate_paper,
    evaluation_split,
    iterate_outputs,
    load_for_eval,
    protocol_spec,
)
from training.features import ensure_features
from training.metrics import MoC
from training.sampler import evaluation_windows
from training.train import train


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_dataset(tmp_path_factory)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def checkpoints(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("eval")
    over = {"optim.epochs": 1, "optim.warmup_epochs": 0}
    return [train(tiny_config(tiny_dataset, root / f"s{s}", **over, **{"run.seed": s})).best for s in (1, 10)]


def test_paper_moc_equals_decode_frames_over_the_clipped_horizon(checkpoints: list[Path], tiny_dataset: Path) -> None:
    model, cfg, _ = load_for_eval(checkpoints[0])
    ds = Dataset(tiny_dataset)
    _, data = ensure_features(ds, model.cfg.backbone, model.cfg.preprocessing, ds.split("test"), progress=False)
    spec = protocol_spec(cfg, model.cfg, "paper")
    got = evaluate_paper(model, data, spec, [0.3], [0.1, 0.5])
    want = {0.1: MoC(3), 0.5: MoC(3)}
    windows = evaluation_windows(data, spec, 0.3)
    for ws, out, _ in iterate_outputs(model, data, windows, spec):
        for i, w in enumerate(ws):
            assert (w.position, w.horizon) == (9, 15)  # int(0.3 * 30) observed, int(0.5 * 30) predicted
            pred = decode_frames(out.action_logits[i], out.duration_logits[i], 3, 15)
            gt = data[w.seq].labels[9:]
            want[0.1].update(pred[:3], gt[:3])  # int(0.4 * 30) - 9 frames
            want[0.5].update(pred[:15], gt[:15])
    assert got["moc"]["0.3"] == {"0.1": pytest.approx(want[0.1].value), "0.5": pytest.approx(want[0.5].value)}


def test_streaming_evaluation_reports_the_service_metrics(checkpoints: list[Path], tiny_dataset: Path) -> None:
    res = evaluate_checkpoint(checkpoints[0], tiny_dataset)
    s = res["streaming"]
    assert res["split"] == "test" and res["protocol"] == "streaming"
    assert 0 <= s["next_action_acc"] <= 1 and 0 <= s["moc_horizon"] <= 1
    assert s["windows"] == 8  # 2 test sequences x ends at 5, 10, 15, 20 frames


def test_streaming_windows_end_every_stride_s_when_asked(checkpoints: list[Path], tiny_dataset: Path) -> None:
    dense = evaluate_checkpoint(checkpoints[0], tiny_dataset, stride_s=0.2)
    assert dense["stride_s"] == 0.2
    assert dense["streaming"]["windows"] == 16  # 2 test sequences x ends at 5, 7, ..., 19 frames (2 frames at 10 fps)
    assert evaluate_checkpoint(checkpoints[0], tiny_dataset)["stride_s"] == 0.5  # the recipe's data.val_stride_s


@pytest.mark.parametrize(("extra", "why"), [(["0"], "a positive number"), (["0.2", "--summary"], "no --summary")])
def test_r3d_eval_refuses_a_stride_it_cannot_honour(
    checkpoints: list[Path], tiny_dataset: Path, extra: list[str], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert eval_cli.main([str(checkpoints[0]), str(tiny_dataset), "--stride-s", *extra]) == 2
    assert why in caplog.text


def test_r3d_eval_aggregates_seeds_into_json_and_markdown(
    checkpoints: list[Path], tiny_dataset: Path, tmp_path: Path
) -> None:
    argv = [
        *map(str, checkpoints),
        str(tiny_dataset),
        "--protocol",
        "paper",
        "--ratios",
        "0.2",
        "0.3",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    assert eval_cli.main(argv) == 0
    report = json.loads((tmp_path / "results.json").read_text())
    cell = report["aggregate"]["clean"]["paper"]["moc"]["0.2"]["0.1"]
    values = [r["clean"]["paper"]["moc"]["0.2"]["0.1"] for r in report["results"]]
    assert cell["n"] == 2 and cell["mean"] == pytest.approx(np.mean(values))
    assert cell["std"] == pytest.approx(np.std(values, ddof=1))
    md = (tmp_path / "results.md").read_text()
    assert "| alpha | beta 0.1 | beta 0.2 | beta 0.3 | beta 0.5 |" in md and "±" in md
    # given absolute paths, the report records them relative to the working directory (no machine's folders)
    recorded = [report["dataset_root"], *report["checkpoints"], *(r["clean"]["checkpoint"] for r in report["results"])]
    assert not [p for p in recorded if Path(p).is_absolute()]
    assert Path(report["dataset_root"]).resolve() == tiny_dataset.resolve()


def test_r3d_eval_rank_analysis_and_robustness(checkpoints: list[Path], tiny_dataset: Path, tmp_path: Path) -> None:
    argv = [str(checkpoints[0]), str(tiny_dataset), "--rank", "--ratios", "0.5", "--robustness", "--degradations"]
    argv += ["rgb_dark", "depth_holes", "--severities", "3", "--out", str(tmp_path), "--no-progress"]
    assert eval_cli.main(argv) == 0
    report = json.loads((tmp_path / "results.json").read_text())
    (result,) = report["results"]
    assert set(result["robustness"]) == {"clean", "rgb_dark-s3", "depth_holes-s3"}
    rank = result["rank"]["0.5"]
    for kind in rank_analysis.KINDS:
        assert 1.0 <= rank[f"erank_{kind}"] <= 32
    assert (tmp_path / "spectra-0.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "results.md").read_text()
    assert "## Robustness" in md and "## Effective rank" in md


def test_rank_analysis_means_and_gain_follow_the_definitions(checkpoints: list[Path], tiny_dataset: Path) -> None:
    model, cfg, _ = load_for_eval(checkpoints[0])
    ds = Dataset(tiny_dataset)
    _, data = ensure_features(ds, model.cfg.backbone, model.cfg.preprocessing, ds.split("test"), progress=False)
    spec = protocol_spec(cfg, model.cfg, "paper")
    results, spectra = rank_analysis.analyse(model, data, spec, [0.5])
    mats = rank_analysis.token_matrices(model, data, rank_analysis.windows_at(data, spec, 0.5), spec)
    before = np.mean([effective_rank(m["rgb_before"]) for m in mats])
    after = np.mean([effective_rank(m["rgb_after"]) for m in mats])
    assert results["0.5"]["gain_rgb"] == pytest.approx(after - before)
    g_r, g_d = results["0.5"]["gain_rgb"], results["0.5"]["gain_depth"]
    h = 0.0 if min(g_r, g_d) <= 0 else 2 * g_r * g_d / (g_r + g_d)
    assert results["0.5"]["harmonic"] == pytest.approx(h)
    assert spectra["0.5"]["fused"][0] == pytest.approx(1.0)  # normalised by the largest singular value


def test_evaluation_refuses_a_test_split_that_overlaps_selection(tmp_path: Path) -> None:
    DatasetWriter(tmp_path, name="x", classes=["a"], fps=10.0, source="test")
    write_json_atomic(tmp_path / "splits.json", {"seed": 0, "train": ["s1"], "val": ["s2"], "test": ["s2", "s3"]})
    with pytest.raises(ValueError, match="shares 1 sequences with the checkpoint-selection split"):
        evaluation_split(Dataset(tmp_path))


def test_r3d_eval_needs_a_checkpoint_and_a_dataset(tmp_path: Path) -> None:
    assert eval_cli.main([str(tmp_path)]) == 2
