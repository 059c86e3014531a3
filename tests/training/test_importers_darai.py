"""DARai importer: frames cut into clips at numbering gaps, L2 targets, per-activity 70/20/10 split, subsampling."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from rgbd.dataset import Dataset
from tests.training.fixtures.original_layouts import make_darai_recording
from training.importers import cli
from training.importers.darai import cut_at_gaps, import_darai

PANCAKE = "Making pancake"
TINY = {"rgb_size": (32, 24), "depth_size": (32, 24)}


def labels_for(numbers: list[int], l2: str = "Pour", l1: str = PANCAKE) -> dict[int, tuple[str, str, str]]:
    return {n: (l1, l2, "Tilt") for n in numbers}


def test_darai_cut_at_gaps_starts_a_clip_at_every_jump() -> None:
    assert cut_at_gaps([3, 4, 5, 9, 10, 12]) == [[3, 4, 5], [9, 10], [12]]
    assert cut_at_gaps([]) == []


def test_darai_import_cuts_clips_where_frame_numbers_jump_and_maps_l2(tmp_path: Path) -> None:
    numbers = [0, 1, 2, 3, 10, 11, 12]
    labels = {**labels_for([0, 1], "Pour"), **labels_for([2, 3, 10, 11, 12], "Stir")}
    root = make_darai_recording(tmp_path / "darai", PANCAKE, 1, "01", "3", numbers, labels)
    import_darai(root, tmp_path / "out", progress=False)
    ds = Dataset(tmp_path / "out")
    assert ds.sequence_ids == ["making-pancake_cam1_01_3_1", "making-pancake_cam1_01_3_2"]
    assert ds.classes == ["Pour", "Stir"] and ds.fps == 15.0
    times, got = ds.labels("making-pancake_cam1_01_3_1")
    assert got == ["Pour", "Pour", "Stir", "Stir"]
    np.testing.assert_allclose(times, [0, 1 / 15, 2 / 15, 3 / 15], atol=1e-6)
    meta = ds.meta("making-pancake_cam1_01_3_2")
    assert (meta.num_frames, meta.activity, meta.provenance["first_frame_number"]) == (3, PANCAKE, 10)
    frame = ds.frame("making-pancake_cam1_01_3_2", 0)
    assert frame.depth.dtype == np.uint16 and int(frame.depth[10, 0]) == 1010


def test_darai_subsample_15_keeps_every_15th_frame_at_1_fps(tmp_path: Path) -> None:
    numbers = list(range(100, 131))
    root = make_darai_recording(tmp_path / "darai", PANCAKE, 2, "04", "1", numbers, labels_for(numbers), **TINY)
    import_darai(root, tmp_path / "out", subsample=15, progress=False)
    ds = Dataset(tmp_path / "out")
    times, labels = ds.labels("making-pancake_cam2_04_1_1")
    assert ds.fps == 1.0 and ds.meta("making-pancake_cam2_04_1_1").fps == 1.0
    np.testing.assert_allclose(times, [0.0, 1.0, 2.0], atol=1e-6)
    assert [int(f.depth[10, 0]) for f in ds.frames("making-pancake_cam2_04_1_1")] == [1100, 1115, 1130]


def test_darai_split_is_70_20_10_per_activity_with_recordings_whole(tmp_path: Path) -> None:
    root = tmp_path / "darai"
    for activity in (PANCAKE, "Reading"):
        for subject in ("01", "02", "03", "04", "05", "06", "07", "08", "09", "10"):
            numbers = [0, 1, 5, 6]  # two clips per recording
            make_darai_recording(root, activity, 1, subject, "1", numbers, labels_for(numbers, l1=activity), **TINY)
    import_darai(root, tmp_path / "a", seed=3, progress=False)
    import_darai(root, tmp_path / "b", seed=3, progress=False)
    splits = json.loads((tmp_path / "a" / "splits.json").read_text())
    assert splits == json.loads((tmp_path / "b" / "splits.json").read_text())
    assert splits["fractions"] == [0.7, 0.2, 0.1]
    for name, expected in (("train", 7), ("val", 2), ("test", 1)):
        for activity in ("making-pancake", "reading"):
            ids = [s for s in splits[name] if s.startswith(activity)]
            assert len(ids) == 2 * expected  # 70/20/10 of each activity's 10 recordings, both clips together
            assert {s[:-2] for s in ids} == {s[:-2] for s in ids if s.endswith("_1")}


def test_darai_label_outside_class_list_keeps_frames_unlabelled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    numbers = [0, 1, 2]
    labels = {**labels_for([0], "Pour"), **labels_for([1, 2], "Juggle")}
    root = make_darai_recording(tmp_path / "darai", PANCAKE, 1, "01", "1", numbers, labels, **TINY)
    with caplog.at_level(logging.WARNING):
        report = import_darai(root, tmp_path / "out", classes=["Pour", "Stir"], progress=False)
    _, got = Dataset(tmp_path / "out").labels("making-pancake_cam1_01_1_1")
    assert got == ["Pour", None, None]
    assert "sequence making-pancake_cam1_01_1_1 frame 1..2: L2 label 'Juggle' is not in the class list" in caplog.text
    assert report.counts_by_kind() == {"unknown_label": 1} and report.labels_dropped == 2


def test_darai_missing_depth_and_corrupt_colour_skip_single_frames(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    numbers = [0, 1, 2, 3]
    root = make_darai_recording(tmp_path / "darai", PANCAKE, 1, "01", "1", numbers, labels_for(numbers), **TINY)
    (root / "Depth" / PANCAKE / "depth_1" / "01_1_00001.png").unlink()
    (root / "RGB" / PANCAKE / "camera_1_fps_15" / "01_1_00002.png").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        report = import_darai(root, tmp_path / "out", progress=False)
    times, _ = Dataset(tmp_path / "out").labels("making-pancake_cam1_01_1_1")
    np.testing.assert_allclose(times, [0, 3 / 15], atol=1e-6)
    assert "sequence making-pancake_cam1_01_1_1 frame 1: no depth frame 1" in caplog.text
    assert "sequence making-pancake_cam1_01_1_1 frame 2: colour image" in caplog.text
    assert report.counts_by_kind() == {"corrupt_file": 1, "missing_file": 1} and report.frames_skipped == 2


def test_darai_missing_label_file_skips_that_recording_only(tmp_path: Path) -> None:
    root = tmp_path / "darai"
    make_darai_recording(root, PANCAKE, 1, "01", "1", [0, 1], labels_for([0, 1]), **TINY)
    make_darai_recording(root, PANCAKE, 1, "02", "1", [0, 1, 7, 8], None, **TINY)
    report = import_darai(root, tmp_path / "out", progress=False)
    assert Dataset(tmp_path / "out").sequence_ids == ["making-pancake_cam1_01_1_1"]
    prov = json.loads((tmp_path / "out" / "dataset.json").read_text())["provenance"]["import"]
    assert prov["skipped_sequences"] == ["making-pancake_cam1_02_1_1", "making-pancake_cam1_02_1_2"]
    assert prov["frames_skipped"] == 4 and report.sequences_seen == 3


def test_darai_cli_selects_camera_and_subsample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "darai"
    numbers = list(range(6))
    for camera in (1, 2):
        make_darai_recording(root, PANCAKE, camera, "01", "1", numbers, labels_for(numbers), ext="jpg", **TINY)
    parser = argparse.ArgumentParser(prog="r3d-data")
    cli.register(parser.add_subparsers(dest="verb", required=True))
    argv = ["import", "darai", str(root), str(tmp_path / "out"), "--camera", "2", "--subsample", "3", "--no-progress"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    ds = Dataset(tmp_path / "out")
    assert ds.sequence_ids == ["making-pancake_cam2_01_1_1"] and ds.meta(ds.sequence_ids[0]).num_frames == 2
    assert "darai import: 1 of 1 sequences written" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["import", "darai", "--help"])
    text = capsys.readouterr().out
    assert "RGB/<Activity>/camera_<c>_fps_15/<SS>_<ss>_<frame>.png" in text and "frame,L1,L2,L3" in text
