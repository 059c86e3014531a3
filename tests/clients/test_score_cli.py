"""r3d-score: a batch job on the real service (recording upload, dataset folder zipped with ground truth, colour +
depth image folders read with --fps / --depth-scale), local scoring from the model file (`python -m server.batch` in
a child process) writing the same tables as the server's job, byte for byte, and refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import pytest

from clients.folders import depth_scale_warning
from clients.score_cli import main
from rgbd.dataset import DatasetWriter
from rgbd.frame import Frame
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
    assert len(rows) == 45 and rows[0]["sequence"] == seq["id"] and rows[-1]["frame"] == "44"
    with (server_scored / "ticks.csv").open() as f:
        ticks = list(csv.DictReader(f))
    assert len(ticks) == sum(max(1, len(t["future"])) for t in seq["ticks"])  # a row per anticipated action
    assert sorted({int(t["frame"]) for t in ticks}) == [t["frame_index"] for t in seq["ticks"]]
    assert {t["current"] for t in ticks} <= set(CLASSES)
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


def test_score_cli_local_model_writes_the_server_jobs_tables(
    server_scored: Path, tiny_checkpoint: Path, recording: tuple[Path, Path], tmp_path: Path
) -> None:
    """The same recording and model, scored by a server job and locally: identical frames.csv and ticks.csv (they
    have no timing columns; results.json differs only in the job's id and times)."""
    rc = main([str(recording[0]), "--bundle", str(tiny_checkpoint), "--backend", "pytorch", "--out", str(tmp_path),
               "--no-progress"])  # fmt: skip
    assert rc == 0
    for table in ("frames.csv", "ticks.csv"):
        assert (tmp_path / table).read_bytes() == (server_scored / table).read_bytes(), table
    local, remote = (json.loads((d / "results.json").read_text()) for d in (tmp_path, server_scored))
    assert local["sequences"] == remote["sequences"]
    # the same model; backend_info is the process's runtime (thread counts differ between this test process, where
    # other tests set torch's threads, and the local scorer's child process), not the model
    local_model, remote_model = ({k: v for k, v in d["model"].items() if k != "backend_info"} for d in (local, remote))
    assert local_model == remote_model and local_model["model_id"]
    assert local["job"]["id"] == "local" and local["job"]["state"] == "succeeded"
    assert cv2.imread(str(tmp_path / "timeline.png")) is not None


def test_score_cli_server_path_outside_the_data_root_is_refused(
    live_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["../outside", "--server-path", "--server", live_url, "--token", API_KEY, "--out", str(tmp_path)])
    assert rc == 1
    assert "path_not_allowed" in capsys.readouterr().err


def test_score_cli_missing_local_model_is_refused(
    recording: tuple[Path, Path], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    rc = main([str(recording[0]), "--bundle", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert rc == 1
    err = capfd.readouterr().err  # written by the child process
    assert "expected an export bundle folder or a checkpoint file" in err and "Traceback" not in err


def test_score_cli_image_folder_is_scored_with_the_given_fps_and_depth_scale(
    live_url: str, capture: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rc = main([str(capture), "--server", live_url, "--token", API_KEY, "--fps", "15", "--depth-scale", "0.0001",
               "--out", str(tmp_path), "--no-progress"])  # fmt: skip
    assert rc == 0
    [seq] = json.loads((tmp_path / "results.json").read_text())["sequences"]
    assert [f["ts"] for f in seq["frames"]] == pytest.approx([i / 15 for i in range(20)], abs=1e-6)
    assert len(seq["ticks"]) >= 15 and all(t["current"]["label"] in CLASSES for t in seq["ticks"])
    assert "implausible depth scale" not in caplog.text


def test_score_cli_image_folder_with_a_depth_scale_11x_off_warns_with_what_was_measured(
    live_url: str, capture: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rc = main([str(capture), "--server", live_url, "--token", API_KEY, "--fps", "15", "--depth-scale", "0.0011",
               "--out", str(tmp_path), "--no-progress"])  # fmt: skip
    assert rc == 0  # a warning, not a refusal: the user may know better
    assert "implausible depth scale: 0.0011 m per unit puts the median depth of the first 10 frames at 16.5 m" in (
        caplog.text
    )
    assert "expected 0.3-8 m for an indoor RGB-D camera. Check --depth-scale" in caplog.text


@pytest.mark.parametrize("where", ["server", "bundle"])
def test_score_cli_depth_only_folder_fails_with_a_clear_message(
    where: str, live_url: str, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "depth_only"
    (folder / "depth").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(folder / "depth" / f"{i}.png"), pattern_frame(i).depth)
    target = ["--server", live_url, "--token", API_KEY] if where == "server" else ["--bundle", str(tiny_checkpoint)]
    rc = main([str(folder), *target, "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "unrecognised folder layout (subfolders: ['depth']" in err and "rgb|color|colour|image|images + depth" in err
    assert "Traceback" not in err


def test_score_cli_fps_and_depth_scale_on_a_recording_are_refused(
    recording: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main([str(recording[0]), "--fps", "15", "--depth-scale", "0.001", "--server", "http://127.0.0.1:9"])
    assert rc == 1
    assert "--fps and --depth-scale apply to colour + depth image folders" in capsys.readouterr().err


def test_depth_scale_warning_accepts_a_plausible_scene_and_flags_missing_depth() -> None:
    frames = [pattern_frame(i) for i in range(3)]
    assert depth_scale_warning(frames) is None  # about 1.5 m
    blank = [Frame(f.rgb, f.depth * 0, 0.001, f.timestamp) for f in frames]
    assert depth_scale_warning(blank) == (
        "the first 3 depth images hold no depth (every pixel is 0): is this a depth image folder?"
    )
