"""r3d-score: a batch job on the real service (recording upload, dataset folder zipped with ground truth), local
scoring from the model file giving the same results as the server, and refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import pytest

from clients.score_cli import main
from rgbd.dataset import DatasetWriter
from tests.clients.conftest import API_KEY, CLASSES, FPS, pattern_frame


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A common-format dataset with one labelled 45-frame sequence."""
    root = tmp_path_factory.mktemp("dataset") / "tiny"
    writer = DatasetWriter(root, name="tiny", classes=CLASSES, fps=FPS, source="pattern")
    writer.add_sequence("seq0", (pattern_frame(i) for i in range(45)), fps=FPS)
    return root


@pytest.fixture(scope="module")
def server_scored(live_url: str, recording: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("server-scored")
    rc = main([str(recording[0]), "--server", live_url, "--token", API_KEY, "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


def test_score_cli_server_job_writes_json_csv_and_timeline(server_scored: Path) -> None:
    results = json.loads((server_scored / "results.json").read_text())
    assert results["job"]["state"] == "succeeded" and results["model"]["classes"] == CLASSES
    [seq] = results["sequences"]
    assert len(seq["frames"]) == 45 and all(f["accepted"] for f in seq["frames"])
    assert len(seq["ticks"]) >= 40 and all(t["current"]["label"] in CLASSES for t in seq["ticks"])
    with (server_scored / "frames.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 45 and rows[0]["sequence"] == seq["id"] and rows[-1]["index"] == "44"
    with (server_scored / "ticks.csv").open() as f:
        ticks = list(csv.DictReader(f))
    assert len(ticks) == len(seq["ticks"]) and {t["current"] for t in ticks} <= set(CLASSES)
    image = cv2.imread(str(server_scored / "timeline.png"))
    assert image is not None and image.shape[1] >= 600


def test_score_cli_dataset_folder_is_uploaded_with_its_ground_truth(
    live_url: str, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main([str(dataset), "--server", live_url, "--token", API_KEY, "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    [seq] = json.loads((tmp_path / "results.json").read_text())["sequences"]
    assert [f["label"] for f in seq["frames"]] == [pattern_frame(i).label for i in range(45)]
    assert "current-action accuracy" in capsys.readouterr().out
    assert cv2.imread(str(tmp_path / "timeline.png")) is not None


def test_score_cli_local_model_gives_the_servers_results(
    server_scored: Path, tiny_checkpoint: Path, recording: tuple[Path, Path], tmp_path: Path
) -> None:
    rc = main([str(recording[0]), "--bundle", str(tiny_checkpoint), "--backend", "pytorch", "--out", str(tmp_path),
               "--no-progress"])  # fmt: skip
    assert rc == 0
    [local] = json.loads((tmp_path / "results.json").read_text())["sequences"]
    [remote] = json.loads((server_scored / "results.json").read_text())["sequences"]
    assert [t["frame_index"] for t in local["ticks"]] == [t["frame_index"] for t in remote["ticks"]]
    assert [t["current"]["label"] for t in local["ticks"]] == [t["current"]["label"] for t in remote["ticks"]]
    for a, b in zip(local["ticks"], remote["ticks"], strict=True):
        assert a["current"]["probability"] == pytest.approx(b["current"]["probability"], abs=1e-4)


def test_score_cli_server_path_outside_the_data_root_is_refused(
    live_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["../outside", "--server-path", "--server", live_url, "--token", API_KEY, "--out", str(tmp_path)])
    assert rc == 1
    assert "path_not_allowed" in capsys.readouterr().err


def test_score_cli_missing_local_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main([str(tmp_path), "--bundle", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert rc == 1
    assert "expected an export bundle folder or a checkpoint file" in capsys.readouterr().err
