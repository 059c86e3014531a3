"""Synthetic world output: the common dataset format, previews, worker independence, `r3d-data synth`."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from rgbd.dataset import Dataset
from rgbd.realsense import RealSensePlayback
from training.data_cli import main as data_main
from training.synth import ACTIONS, ACTIVITIES, SynthConfig, SynthSequence, generate_dataset
from training.synth.preview import preview_indices


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generate_writes_a_dataset_that_dataset_reads(tmp_path: Path) -> None:
    cfg = SynthConfig(n_sequences=3, frames=12, width=80, height=60, seed=5)
    result = generate_dataset(tmp_path / "ds", cfg, workers=1)
    ds = Dataset(tmp_path / "ds")
    assert ds.classes == list(ACTIONS) and ds.fps == 15.0
    assert sorted(ds.sequence_ids) == ["synth_00000", "synth_00001", "synth_00002"] == sorted(result.sequence_ids)
    assert sorted(sum((ds.split(s) for s in ("train", "val", "test")), [])) == ds.sequence_ids
    for sid in ds.sequence_ids:
        meta = ds.meta(sid)
        assert meta.num_frames == 12 and meta.depth_scale == 0.001 and meta.depth_aligned
        assert meta.intrinsics is not None and (meta.intrinsics.width, meta.intrinsics.height) == (80, 60)
        assert meta.activity in ACTIVITIES and meta.provenance["config"]["seed"] == 5
        frames = list(ds.frames(sid))
        assert [f.index for f in frames] == list(range(12))
        assert all(f.label in ACTIONS for f in frames)
        assert frames[3].rgb is not None and frames[3].rgb.shape == (60, 80, 3) and frames[3].depth.dtype == np.uint16
        assert 500 < np.median(frames[3].depth[frames[3].depth > 0]) < 6000  # millimetres in a room
        sheet = cv2.imread(str(tmp_path / "ds" / "previews" / f"{sid}.png"))
        assert sheet is not None and sheet.shape[1] == 80 * len(preview_indices(12))


def test_generate_output_does_not_depend_on_worker_count(tmp_path: Path) -> None:
    cfg = SynthConfig(n_sequences=3, frames=6, width=48, height=36, seed=2)
    generate_dataset(tmp_path / "one", cfg, workers=1)
    generate_dataset(tmp_path / "two", cfg, workers=2)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert one.keys() == two.keys() and len(one) > 3 * 6 * 2
    assert [k for k in one if one[k] != two[k]] == []


def test_resume_extends_a_smaller_world_file_for_file_with_the_same_splits(tmp_path: Path) -> None:
    small, large = (SynthConfig(n_sequences=n, frames=6, width=16, height=12, seed=4) for n in (3, 6))
    first = generate_dataset(tmp_path / "grown", small, workers=1)
    grown = generate_dataset(tmp_path / "grown", large, workers=1, resume=True)
    fresh = generate_dataset(tmp_path / "fresh", large, workers=1)
    assert grown.splits == fresh.splits and set(first.splits["train"]) <= set(fresh.splits["train"])
    assert _files(tmp_path / "grown") == _files(tmp_path / "fresh")


def _pyrealsense2_works() -> bool:
    try:
        import pyrealsense2  # noqa: F401
    except ImportError:  # not installed, or libusb-1.0 missing
        return False
    return True


def test_cli_synth_tiny_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    argv = ["synth", "--out", str(out), "--sequences", "3", "--frames", "20", "--width", "80", "--height", "60"]
    recordings = 1 if _pyrealsense2_works() else 0  # the recording itself is tested below, skipped with reason
    assert data_main(argv + ["--seed", "3", "--dark-rate", "0", "--recordings", str(recordings)]) == 0
    ds = Dataset(out)
    if recordings:
        sid = ds.split("test")[0]
        assert sorted(p.name for p in (out / "recordings").iterdir()) == [f"{sid}.db3", f"{sid}.labels.csv"]
    assert len(ds.sequence_ids) == 3 and all(ds.meta(s).num_frames == 20 for s in ds.sequence_ids)
    assert (ds.split("train"), ds.split("val"), ds.split("test")) == (["synth_00000"], ["synth_00001"], ["synth_00002"])
    assert all(ds.labels(s)[1][0] in ACTIONS for s in ds.sequence_ids)
    assert sorted(p.name for p in (out / "previews").iterdir()) == [f"synth_0000{i}.png" for i in range(3)]


def test_cli_synth_refuses_an_existing_dataset_unless_overwrite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["synth", "--out", str(tmp_path), "--sequences", "1", "--frames", "3", "--width", "32", "--height", "24"]
    assert data_main(argv + ["--no-previews", "--no-progress"]) == 0
    assert "synth:" not in capsys.readouterr().err  # no progress bar
    with caplog.at_level(logging.ERROR):
        assert data_main(argv) == 2
    assert "already holds a dataset" in caplog.text
    assert data_main(argv + ["--overwrite", "--frames", "4"]) == 0
    assert "synth: 100%" in capsys.readouterr().err  # the bar, by default
    assert Dataset(tmp_path).meta("synth_00000").num_frames == 4


def test_cli_synth_bad_flags_exit_with_a_message(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert data_main(["synth", "--out", str(tmp_path), "--sequences", "-2", "--fps", "0"]) == 2
        assert data_main(["synth", "--out", str(tmp_path), "--sequences", "0"]) == 2
    assert "--sequences must be >= 0, got -2" in caplog.text and "--fps must be > 0" in caplog.text
    assert "--sequences 0 writes no dataset; expected --recordings K > 0 with it" in caplog.text


def test_generate_recordings_play_back_the_test_sequences_bit_exact(tmp_path: Path) -> None:
    pytest.importorskip("pyrealsense2", reason="pyrealsense2 or its system library libusb-1.0 is not installed")

    cfg = SynthConfig(n_sequences=3, frames=8, width=64, height=48, seed=1)
    result = generate_dataset(tmp_path, cfg, workers=1, previews=False, recordings=1)
    sid = result.splits["test"][0]
    assert result.recordings == [tmp_path / "recordings" / f"{sid}.db3"]
    with RealSensePlayback(result.recordings[0]) as src:
        played = list(src)
    truth = list(SynthSequence(cfg, int(sid.split("_")[-1])).frames())
    assert len(played) == len(truth) == 8
    for got, want in zip(played, truth, strict=True):
        np.testing.assert_array_equal(got.depth, want.depth)
        np.testing.assert_array_equal(got.rgb, want.rgb)
        assert got.depth_scale == pytest.approx(0.001)


def test_generate_recordings_only_writes_db3_and_labels_without_a_dataset(tmp_path: Path) -> None:
    pytest.importorskip("pyrealsense2", reason="pyrealsense2 or its system library libusb-1.0 is not installed")
    cfg = SynthConfig(n_sequences=0, frames=6, width=32, height=24, seed=4)
    result = generate_dataset(tmp_path, cfg, recordings=2)
    assert [p.name for p in result.recordings] == ["synth_00000.db3", "synth_00001.db3"]
    assert not (tmp_path / "dataset.json").exists()
    rows = (tmp_path / "recordings" / "synth_00001.labels.csv").read_text().splitlines()
    assert rows[0] == "frame,timestamp,label" and len(rows) == 7
    assert [r.split(",")[2] for r in rows[1:]] == SynthSequence(cfg, 1).labels
