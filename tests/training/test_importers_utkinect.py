"""UTKinect-Action3D importer: original layout (JPEG, FileStorage XML, actionLabel.txt) into the common format."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from rgbd.dataset import Dataset
from tests.training.fixtures.original_layouts import make_utkinect, utkinect_depth_value
from training.importers import cli
from training.importers.utkinect import BACKGROUND, CLASSES, import_utkinect

# non-contiguous frame numbers, as in the real dataset
NUMBERS = [190, 191, 192, 195, 196, 197, 198, 200]
LABELS = [("walk", "191", "192"), ("sitDown", "196", "198")]
EXPECTED = [BACKGROUND, "walk", "walk", BACKGROUND, "sitDown", "sitDown", "sitDown", BACKGROUND]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="r3d-data")
    cli.register(parser.add_subparsers(dest="verb", required=True))
    return parser


def provenance(out: Path) -> dict:
    return json.loads((out / "dataset.json").read_text())["provenance"]["import"]


def test_utkinect_import_maps_labels_by_frame_number_with_undefined_background(tmp_path: Path) -> None:
    root = make_utkinect(tmp_path / "utk", {"s01_e01": NUMBERS}, {"s01_e01": LABELS})
    import_utkinect(root, tmp_path / "out", progress=False)
    ds = Dataset(tmp_path / "out")
    times, labels = ds.labels("s01_e01")
    assert ds.classes == list(CLASSES) and ds.background_class == "UNDEFINED"
    assert labels == EXPECTED
    np.testing.assert_allclose(times, [(n - 190) / 30.0 for n in NUMBERS], atol=1e-6)
    meta = ds.meta("s01_e01")
    assert (meta.num_frames, meta.fps, meta.depth_scale, meta.depth_aligned) == (8, 30.0, 0.001, False)
    assert meta.provenance["first_frame_number"] == 190 and meta.provenance["last_frame_number"] == 200


def test_utkinect_import_keeps_depth_in_millimetres_and_both_resolutions(tmp_path: Path) -> None:
    root = make_utkinect(tmp_path / "utk", {"s01_e01": NUMBERS[:3]}, {"s01_e01": LABELS})
    import_utkinect(root, tmp_path / "out", progress=False)
    frame = Dataset(tmp_path / "out").frame("s01_e01", 2)
    assert frame.rgb.shape == (480, 640, 3) and frame.depth.shape == (240, 320)
    assert frame.depth.dtype == np.uint16
    assert int(frame.depth[100, 0]) == utkinect_depth_value(192) and int(frame.depth[0, 0]) == 0
    assert abs(float(frame.rgb.mean()) - 192) < 3


def test_utkinect_import_writes_subject_grouped_splits_fixed_by_seed(tmp_path: Path) -> None:
    seqs = [f"s{s:02d}_e{e:02d}" for s in range(1, 6) for e in (1, 2)]
    root = make_utkinect(
        tmp_path / "utk",
        {s: [5, 6] for s in seqs},
        {s: [("walk", "5", "6")] for s in seqs},
        rgb_size=(64, 48),
        depth_size=(32, 24),
    )
    import_utkinect(root, tmp_path / "a", seed=7, progress=False)
    import_utkinect(root, tmp_path / "b", seed=7, progress=False)
    splits = json.loads((tmp_path / "a" / "splits.json").read_text())
    assert splits == json.loads((tmp_path / "b" / "splits.json").read_text())
    assert splits["seed"] == 7 and splits["group_by"] == "subject"
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == seqs
    for name in ("train", "val", "test"):
        for seq in splits[name]:
            partner = seq[:-2] + ("02" if seq.endswith("01") else "01")
            assert partner in splits[name]  # both episodes of a subject stay together
    assert [len(splits[n]) for n in ("train", "val", "test")] == [6, 2, 2]


def test_utkinect_missing_depth_file_skips_that_frame_and_reports_count_mismatch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_utkinect(tmp_path / "utk", {"s01_e01": NUMBERS}, {"s01_e01": LABELS})
    (root / "depth" / "s01_e01" / "depthImg196.xml").unlink()
    with caplog.at_level(logging.WARNING):
        report = import_utkinect(root, tmp_path / "out", progress=False)
    _, labels = Dataset(tmp_path / "out").labels("s01_e01")
    assert labels == EXPECTED[:4] + EXPECTED[5:]
    assert "sequence s01_e01 frame 196: depthImg196.xml is missing" in caplog.text
    assert "RGB has 8 frames and depth has 7" in caplog.text
    assert report.counts_by_kind() == {"count_mismatch": 1, "missing_file": 1}
    prov = provenance(tmp_path / "out")
    assert (prov["frames_written"], prov["frames_skipped"], prov["sequences_skipped"]) == (7, 1, 0)


@pytest.mark.parametrize(
    ("path", "data", "kind"),
    [
        ("RGB/s01_e01/colorImg195.jpg", b"\xff\xd8\xff\xe0 not a jpeg", "corrupt_file"),
        ("depth/s01_e01/depthImg195.xml", b'<?xml version="1.0"?>\n<opencv_storage>\n<depthImg195>', "corrupt_file"),
    ],
)
def test_utkinect_corrupt_file_skips_only_that_frame(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, path: str, data: bytes, kind: str
) -> None:
    root = make_utkinect(tmp_path / "utk", {"s01_e01": NUMBERS}, {"s01_e01": LABELS})
    (root / path).write_bytes(data)
    with caplog.at_level(logging.WARNING):
        report = import_utkinect(root, tmp_path / "out", progress=False)
    assert Dataset(tmp_path / "out").meta("s01_e01").num_frames == 7
    assert report.counts_by_kind() == {kind: 1}
    assert "sequence s01_e01 frame 195:" in caplog.text
    assert provenance(tmp_path / "out")["frames_skipped"] == 1


def test_utkinect_label_outside_class_list_keeps_frames_unlabelled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    labels = [("walk", "191", "192"), ("jump", "196", "198")]
    root = make_utkinect(tmp_path / "utk", {"s01_e01": NUMBERS}, {"s01_e01": labels})
    with caplog.at_level(logging.WARNING):
        report = import_utkinect(root, tmp_path / "out", progress=False)
    _, got = Dataset(tmp_path / "out").labels("s01_e01")
    assert got == [BACKGROUND, "walk", "walk", BACKGROUND, None, None, None, BACKGROUND]
    assert "sequence s01_e01 frame 196..198: action 'jump' is not one of" in caplog.text
    assert report.counts_by_kind() == {"unknown_label": 1}
    assert provenance(tmp_path / "out")["labels_dropped"] == 3


def test_utkinect_nan_range_and_bad_line_do_not_stop_the_import(tmp_path: Path) -> None:
    labels = [("walk", "191", "192"), ("carry", "NaN", "NaN"), ("push", "198", "196")]
    root = make_utkinect(tmp_path / "utk", {"s01_e01": NUMBERS}, {"s01_e01": labels})
    report = import_utkinect(root, tmp_path / "out", progress=False)
    _, got = Dataset(tmp_path / "out").labels("s01_e01")
    assert got == [BACKGROUND, "walk", "walk"] + [BACKGROUND] * 5
    assert report.counts_by_kind() == {"bad_annotation": 1}  # the backwards range; NaN is the dataset's "absent"


def test_utkinect_sequence_with_nothing_usable_is_skipped_and_counted(tmp_path: Path) -> None:
    root = make_utkinect(
        tmp_path / "utk", {"s01_e01": NUMBERS[:3], "s02_e01": [7, 8]}, {"s01_e01": LABELS, "s02_e01": LABELS}
    )
    for n in (7, 8):
        (root / "RGB" / "s02_e01" / f"colorImg{n}.jpg").write_bytes(b"broken")
    report = import_utkinect(root, tmp_path / "out", progress=False)
    assert Dataset(tmp_path / "out").sequence_ids == ["s01_e01"]
    prov = provenance(tmp_path / "out")
    assert prov["skipped_sequences"] == ["s02_e01"] and prov["frames_skipped"] == 2
    assert report.sequences_seen == 2 and report.sequences_written == 1


def test_utkinect_cli_imports_and_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_utkinect(tmp_path / "utk", {"s01_e01": NUMBERS[:3]}, {"s01_e01": LABELS})
    args = build_parser().parse_args(["import", "utkinect", str(root), str(tmp_path / "out"), "--no-progress"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "utkinect import: 1 of 1 sequences written, 0 skipped; 3 frames written, 0 frames skipped" in out


def test_utkinect_cli_help_describes_the_original_layout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["import", "utkinect", "--help"])
    text = capsys.readouterr().out
    for needle in ("actionLabel.txt", "RGB/s01_e01/colorImg252.jpg", "depthImg252.xml", "UNDEFINED"):
        assert needle in text


def test_utkinect_import_refuses_a_non_empty_output_folder(tmp_path: Path) -> None:
    root = make_utkinect(tmp_path / "utk", {"s01_e01": NUMBERS[:2]}, {"s01_e01": LABELS})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("x")
    with pytest.raises(ValueError, match="is not empty"):
        import_utkinect(root, tmp_path / "out", progress=False)


def test_utkinect_import_without_layout_says_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="expected UTKinect's original layout"):
        import_utkinect(tmp_path, tmp_path / "out", progress=False)
