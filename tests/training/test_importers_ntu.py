"""NTU RGB+D importer: MJPG AVI + masked depth PNGs, colour subsampled to the depth count, 60/25/15 split."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from rgbd.dataset import Dataset
from tests.training.fixtures.original_layouts import make_ntu_clip, ntu_clip_name, ntu_rgb_value
from training.importers import cli
from training.importers.ntu import import_ntu, pair_indices
from training.importers.ntu_classes import NTU60_ACTIONS, action_name

SMALL = {"rgb_size": (192, 108), "depth_size": (64, 53)}


def test_ntu_class_table_has_the_60_official_names_in_order() -> None:
    assert len(NTU60_ACTIONS) == 60 and len(set(NTU60_ACTIONS)) == 60
    assert action_name(1) == "drink water" and action_name(43) == "falling"
    assert action_name(60) == "walking apart from each other"
    with pytest.raises(ValueError, match="expected an NTU RGB\\+D 60 action number in 1..60"):
        action_name(61)


def test_ntu_pair_indices_spreads_colour_evenly_over_depth() -> None:
    assert pair_indices(10, [1, 2, 3, 4]) == [(1, 0), (2, 3), (3, 6), (4, 9)]
    assert pair_indices(4, [1, 2, 3, 4]) == [(1, 0), (2, 1), (3, 2), (4, 3)]
    assert pair_indices(3, [1, 2, 3, 4, 5]) == [(1, 0), (3, 1), (5, 2)]  # fewer colour frames: depth thinned


def test_ntu_import_subsamples_full_hd_colour_to_the_depth_count(tmp_path: Path) -> None:
    clip = ntu_clip_name(1, 2, 3, 1, 43)
    root = make_ntu_clip(tmp_path / "ntu", clip, n_rgb=10, n_depth=4)
    import_ntu(root, tmp_path / "out", progress=False)
    ds = Dataset(tmp_path / "out")
    times, labels = ds.labels(clip)
    assert labels == ["falling"] * 4 and ds.classes == list(NTU60_ACTIONS)
    np.testing.assert_allclose(times, [0, 1 / 30, 2 / 30, 3 / 30], atol=1e-6)
    frames = list(ds.frames(clip))
    assert frames[0].rgb.shape == (1080, 1920, 3) and frames[0].depth.shape == (424, 512)
    means = [float(f.rgb.mean()) for f in frames]
    np.testing.assert_allclose(means, [ntu_rgb_value(i) for i in (0, 3, 6, 9)], atol=3)
    assert [int(f.depth[100, 0]) for f in frames] == [1001, 1002, 1003, 1004]
    meta = ds.meta(clip)
    assert (meta.activity, meta.depth_aligned, meta.depth_scale) == ("falling", False, 0.001)
    assert meta.provenance["performer"] == 3 and meta.provenance["rgb_frames"] == 10


def test_ntu_split_is_60_25_15_and_fixed_by_seed(tmp_path: Path) -> None:
    root = tmp_path / "ntu"
    clips = [ntu_clip_name(1, 1, p, 1, 1 + p) for p in range(1, 9)]
    for clip in clips:
        make_ntu_clip(root, clip, n_rgb=2, n_depth=2, **SMALL)
    import_ntu(root, tmp_path / "a", seed=5, progress=False)
    import_ntu(root, tmp_path / "b", seed=5, progress=False)
    a = json.loads((tmp_path / "a" / "splits.json").read_text())
    assert a == json.loads((tmp_path / "b" / "splits.json").read_text())
    assert a["fractions"] == [0.6, 0.25, 0.15] and a["seed"] == 5
    assert [len(a[s]) for s in ("train", "val", "test")] == [5, 2, 1]
    assert sorted(a["train"] + a["val"] + a["test"]) == clips


def test_ntu_fewer_colour_than_depth_frames_thins_depth_and_reports_mismatch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clip = ntu_clip_name(1, 1, 1, 1, 1)
    root = make_ntu_clip(tmp_path / "ntu", clip, n_rgb=3, n_depth=5, **SMALL)
    with caplog.at_level(logging.WARNING):
        report = import_ntu(root, tmp_path / "out", progress=False)
    ds = Dataset(tmp_path / "out")
    assert [int(f.depth[10, 0]) for f in ds.frames(clip)] == [1001, 1003, 1005]
    assert f"sequence {clip}: colour has 3 frames, fewer than depth's 5" in caplog.text
    assert report.counts_by_kind() == {"count_mismatch": 1} and report.frames_skipped == 2


def test_ntu_corrupt_and_missing_depth_frames_are_skipped_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clip = ntu_clip_name(1, 1, 1, 1, 7)
    root = make_ntu_clip(tmp_path / "ntu", clip, n_rgb=5, n_depth=5, **SMALL)
    (root / "nturgb+d_depth_masked" / clip / "MDepth-00000002.png").write_bytes(b"\x89PNG broken")
    (root / "nturgb+d_depth_masked" / clip / "MDepth-00000004.png").unlink()
    with caplog.at_level(logging.WARNING):
        report = import_ntu(root, tmp_path / "out", progress=False)
    times, labels = Dataset(tmp_path / "out").labels(clip)
    np.testing.assert_allclose(times, [0, 2 / 30, 4 / 30], atol=1e-6)
    assert labels == ["throw"] * 3
    assert f"sequence {clip} frame 2: depth image" in caplog.text
    assert f"sequence {clip} frame 4: MDepth-00000004.png is missing" in caplog.text
    assert report.counts_by_kind() == {"corrupt_file": 1, "missing_file": 1} and report.frames_skipped == 2


def test_ntu_action_outside_the_60_classes_and_missing_video_skip_their_clips(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "ntu"
    good, unknown, novideo = (ntu_clip_name(1, 1, 1, 1, a) for a in (1, 61, 2))
    for clip in (good, unknown, novideo):
        make_ntu_clip(root, clip, n_rgb=2, n_depth=2, **SMALL)
    (root / "nturgb+d_rgb" / f"{novideo}_rgb.avi").unlink()
    with caplog.at_level(logging.WARNING):
        report = import_ntu(root, tmp_path / "out", progress=False)
    assert Dataset(tmp_path / "out").sequence_ids == [good]
    assert f"sequence {unknown}: sequence skipped: action A061 is not one of NTU RGB+D 60's" in caplog.text
    prov = json.loads((tmp_path / "out" / "dataset.json").read_text())["provenance"]["import"]
    assert prov["skipped_sequences"] == [novideo, unknown]
    assert prov["problem_counts"] == {"missing_file": 1, "unknown_label": 1}
    assert report.sequences_seen == 3


def test_ntu_cli_filters_actions_and_help_names_the_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ntu"
    for a in (1, 2, 3):
        make_ntu_clip(root, ntu_clip_name(1, 1, 1, 1, a), n_rgb=2, n_depth=2, **SMALL)
    parser = argparse.ArgumentParser(prog="r3d-data")
    cli.register(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["import", "ntu", str(root), str(tmp_path / "out"), "--actions", "2-3", "--no-progress"])
    assert args.func(args) == 0
    assert Dataset(tmp_path / "out").sequence_ids == ["S001C001P001R001A002", "S001C001P001R001A003"]
    assert "ntu import: 2 of 2 sequences written" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["import", "ntu", "--help"])
    text = capsys.readouterr().out
    assert "nturgb+d_rgb/S001C001P001R001A001_rgb.avi" in text and "MDepth-00000001.png" in text
