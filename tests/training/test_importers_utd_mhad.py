"""UTD-MHAD importer: .mat files in the original layout (written here with scipy.io.savemat, never the real data)
into depth-only sequences of the common format, with skeleton and inertial streams and the cross-subject split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from rgbd.dataset import Dataset, DatasetFormatError
from rgbd.frame import MissingColorError
from training import inspect
from training.importers import cli
from training.importers.utd_mhad import ACTIONS, import_utd_mhad


def depth_clip(frames: int, action: int) -> np.ndarray:
    """(240, 320, T) uint16 mm: a 'person' block whose depth encodes action and frame, background 0."""
    d = np.zeros((240, 320, frames), np.uint16)
    for t in range(frames):
        d[60:200, 100:220, t] = 2000 + 10 * action + t
    return d


def write_clip(root: Path, action: int, subject: int, trial: int, frames: int, *, modalities: str = "dsi",
               skeleton_frames: int | None = None) -> str:  # fmt: skip
    name = f"a{action}_s{subject}_t{trial}"
    if "d" in modalities:
        (root / "Depth").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(root / "Depth" / f"{name}_depth.mat", {"d_depth": depth_clip(frames, action)})
    if "s" in modalities:
        (root / "Skeleton").mkdir(parents=True, exist_ok=True)
        n = skeleton_frames or frames
        skel = np.arange(20 * 3 * n, dtype=np.float64).reshape(20, 3, n) / 1000.0
        scipy.io.savemat(root / "Skeleton" / f"{name}_skeleton.mat", {"d_skel": skel})
    if "i" in modalities:
        (root / "Inertial").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(root / "Inertial" / f"{name}_inertial.mat", {"d_iner": np.ones((frames * 5 // 3, 6))})
    return f"a{action:02d}_s{subject}_t{trial}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="r3d-data")
    cli.register(p.add_subparsers(dest="verb", required=True))
    return p


def test_a_clip_becomes_a_depth_only_sequence_labelled_with_its_action(tmp_path: Path) -> None:
    seq = write_clip(tmp_path / "raw", 5, 2, 3, 4)
    import_utd_mhad(tmp_path / "raw", tmp_path / "out", progress=False)
    ds = Dataset(tmp_path / "out")
    assert ds.classes == list(ACTIONS) and len(ACTIONS) == 27 and ds.info["modalities"] == ["depth"]
    meta = ds.meta(seq)
    assert (meta.num_frames, meta.fps, meta.depth_scale, meta.has_color) == (4, 30.0, 0.001, False)
    assert meta.activity == "right arm throw" and meta.streams == ("inertial", "skeleton")
    assert (meta.provenance["action"], meta.provenance["subject"], meta.provenance["trial"]) == (5, 2, 3)
    times, labels = ds.labels(seq)
    assert labels == ["right arm throw"] * 4
    np.testing.assert_allclose(times, [0, 1 / 30, 2 / 30, 3 / 30], atol=1e-6)
    frames = list(ds.frames(seq))
    assert [f.rgb for f in frames] == [None] * 4  # no fake colour frames
    assert not (tmp_path / "out" / "sequences" / seq / "rgb").exists()
    assert frames[2].depth.shape == (240, 320) and int(frames[2].depth[100, 150]) == 2000 + 50 + 2
    assert int(frames[2].depth[0, 0]) == 0
    with pytest.raises(MissingColorError, match="no colour image"):
        frames[0].color()
    skeleton = ds.stream(seq, "skeleton")
    assert skeleton.shape == (4, 20, 3) and skeleton.dtype == np.float32
    assert skeleton[1, 0, 2] == pytest.approx((2 * 4 + 1) / 1000.0)  # joint 0, z, frame 1 of (20, 3, T)
    assert ds.stream(seq, "inertial").shape == (6, 6)


def test_problems_are_reported_by_clip_and_the_rest_imported(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    good = write_clip(raw, 1, 1, 1, 3)
    mismatch = write_clip(raw, 2, 1, 1, 3, skeleton_frames=5)
    depth_only = write_clip(raw, 3, 1, 1, 3, modalities="d")
    no_depth = write_clip(raw, 4, 1, 1, 3, modalities="si")
    truncated = write_clip(raw, 6, 1, 1, 3)
    data = (raw / "Depth" / "a6_s1_t1_depth.mat").read_bytes()
    (raw / "Depth" / "a6_s1_t1_depth.mat").write_bytes(data[: len(data) // 2])
    report = import_utd_mhad(raw, tmp_path / "out", progress=False)
    ds = Dataset(tmp_path / "out")
    assert ds.sequence_ids == sorted([good, mismatch, depth_only])
    assert sorted(report.skipped_sequences) == sorted([no_depth, truncated])
    kinds = {(p.sequence, p.kind) for p in report.problems}
    assert (mismatch, "count_mismatch") in kinds and (no_depth, "missing_file") in kinds
    assert (depth_only, "missing_file") in kinds and (truncated, "corrupt_file") in kinds
    assert ds.meta(mismatch).streams == ("inertial",)  # the inconsistent skeleton is dropped, depth kept
    assert ds.meta(depth_only).streams == ()
    with pytest.raises(DatasetFormatError, match="no 'skeleton' stream"):
        ds.stream(depth_only, "skeleton")
    imported = json.loads((tmp_path / "out" / "dataset.json").read_text())["provenance"]["import"]
    assert imported["sequences_written"] == 3 and imported["problem_counts"]["count_mismatch"] == 1


def test_cross_subject_split_tests_the_even_subjects_and_validates_on_train_subjects(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    ids = {s: [write_clip(raw, a, s, t, 2, modalities="d") for a in (1, 2) for t in (1, 2, 3, 4)] for s in range(1, 9)}
    import_utd_mhad(raw, tmp_path / "out", progress=False, val_fraction=0.25, seed=3)
    ds = Dataset(tmp_path / "out")
    assert sorted(ds.split("test")) == sorted(i for s in (2, 4, 6, 8) for i in ids[s])
    train_pool = sorted(i for s in (1, 3, 5, 7) for i in ids[s])
    assert sorted(ds.split("train") + ds.split("val")) == train_pool
    assert len(ds.split("val")) == 8  # a quarter of each action's 16 training clips
    assert {i[:3] for i in ds.split("val")} == {"a01", "a02"}  # every action is validated
    first = ds.split("val")
    import_utd_mhad(raw, tmp_path / "again", progress=False, val_fraction=0.25, seed=3)
    assert Dataset(tmp_path / "again").split("val") == first
    splits = json.loads((tmp_path / "out" / "splits.json").read_text())
    assert splits["protocol"] == "cross-subject" and splits["train_subjects"] == [1, 3, 5, 7]


def test_whole_subject_validation_holds_out_every_clip_of_the_named_training_subjects(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    ids = {s: [write_clip(raw, a, s, t, 2, modalities="d") for a in (1, 2) for t in (1, 2)] for s in range(1, 9)}
    args = parser().parse_args(["import", "utd-mhad", str(raw), str(tmp_path / "out"), "--val-subjects", "7",
                                "--no-progress"])  # fmt: skip
    assert args.func(args) == 0  # --val-fraction defaults to 0 with --val-subjects
    ds = Dataset(tmp_path / "out")
    assert sorted(ds.split("val")) == sorted(ids[7])
    assert sorted(ds.split("train")) == sorted(i for s in (1, 3, 5) for i in ids[s])
    assert sorted(ds.split("test")) == sorted(i for s in (2, 4, 6, 8) for i in ids[s])
    splits = json.loads((tmp_path / "out" / "splits.json").read_text())
    assert splits["val_subjects"] == [7] and splits["val_fraction"] == 0
    import_utd_mhad(raw, tmp_path / "all", progress=False, val_fraction=0)  # the final recipe: every clip trains
    assert Dataset(tmp_path / "all").split("val") == [] and len(Dataset(tmp_path / "all").split("train")) == 16
    with pytest.raises(ValueError, match="either a validation fraction or validation subjects"):
        import_utd_mhad(raw, tmp_path / "both", progress=False, val_fraction=0.25, val_subjects=frozenset({7}))
    with pytest.raises(ValueError, match=r"validation subjects \[2\] must be training subjects"):
        import_utd_mhad(raw, tmp_path / "even", progress=False, val_fraction=0, val_subjects=frozenset({2}))
    assert not (tmp_path / "both").exists() and not (tmp_path / "even").exists()  # refused before writing


def test_cli_imports_from_a_data_folder_and_inspect_shows_subjects_and_modalities(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "repo" / "data"
    for s in (1, 2):
        write_clip(raw, 7, s, 1, 3)
    args = parser().parse_args(["import", "utd-mhad", str(tmp_path / "repo"), str(tmp_path / "out"), "--no-progress"])
    assert args.func(args) == 0
    assert "utd-mhad import: 2 of 2 sequences written" in capsys.readouterr().out
    ns = argparse.Namespace(dataset=str(tmp_path / "out"), split="all", out=str(tmp_path / "plot.png"))
    assert inspect.run(ns) == 0
    out = capsys.readouterr().out
    assert "modalities: RGB-D 0, depth-only 2 sequences, inertial 2, skeleton 2" in out
    assert any(line.startswith("train") and line.endswith("  1") for line in out.splitlines())
    assert any(line.startswith("test") and line.endswith("  2") for line in out.splitlines())
    assert "basketball shoot" in out


def test_a_root_without_depth_is_refused_with_the_expected_layout(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    with pytest.raises(FileNotFoundError, match="no Depth/ folder"):
        import_utd_mhad(tmp_path / "raw", tmp_path / "out", progress=False)
