"""Recording importer: real RealSense .bag and Azure Kinect .mkv files with label CSVs written here."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from rgbd.dataset import Dataset
from tests.real_fixtures import REAL_FIXTURES, real_fixture
from training.importers import cli
from training.importers.recordings import estimate_fps, import_recordings, read_label_csv
from training.importers.report import ImportReport

REAL = REAL_FIXTURES
BAG = REAL / "realsense_d435" / "single_depth_color_640x480.bag"
MKV = REAL / "azure_kinect" / "recording.mkv"


def needs(path: Path) -> None:
    real_fixture(str(path.relative_to(REAL)))


def test_label_csv_reads_time_ranges_and_reports_bad_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    csv_path = tmp_path / "rec.csv"
    csv_path.write_text("start,end,label\n0.0,1.5,walk\n1.5,2.0,sit\n2.0,1.0,oops\n,3,\n1.8,2.5,stand\n")
    report = ImportReport(source="recording")
    with caplog.at_level(logging.WARNING):
        track = read_label_csv(csv_path, report, "rec")
    assert track.ranges == [(0.0, 1.5, "walk"), (1.5, 2.0, "sit"), (1.8, 2.5, "stand")]
    assert [track.label(0, t) for t in (0.0, 1.49, 1.5, 1.9, 2.2, 2.5)] == ["walk", "walk", "sit", "sit", "stand", None]
    assert "rec.csv line 4: expected 0 <= start < end in seconds" in caplog.text
    assert "rec.csv line 5: empty label" in caplog.text
    assert report.counts_by_kind() == {"bad_annotation": 3}  # backwards range, empty label, overlap


def test_label_csv_reads_frame_labels_and_rejects_unknown_headers(tmp_path: Path) -> None:
    path = tmp_path / "rec.csv"
    path.write_text("frame,label\n0,walk\n2,sit\n")
    track = read_label_csv(path, ImportReport(source="recording"), "rec")
    assert [track.label(i, 0.0) for i in range(3)] == ["walk", None, "sit"]
    path.write_text("begin,finish,action\n0,1,walk\n")
    with pytest.raises(ValueError, match="expected a header 'start,end,label' or 'frame,label'"):
        read_label_csv(path, ImportReport(source="recording"), "rec")


def test_estimate_fps_uses_the_median_interval() -> None:
    assert estimate_fps([0.0, 0.2, 0.4, 0.9]) == pytest.approx(5.0)
    assert estimate_fps([0.0]) is None


def test_recording_import_reads_a_realsense_bag_with_its_labels(tmp_path: Path) -> None:
    needs(BAG)
    labels = tmp_path / "bag.csv"
    labels.write_text("start,end,label\n0,10,wall\n")
    import_recordings([BAG], tmp_path / "out", labels=[labels], fps=30.0, progress=False)
    ds = Dataset(tmp_path / "out")
    (seq,) = ds.sequence_ids
    meta = ds.meta(seq)
    assert seq == "single_depth_color_640x480" and ds.classes == ["wall"]
    assert meta.depth_scale == pytest.approx(0.001) and meta.fps == 30.0
    frame = ds.frame(seq, 0)
    assert frame.rgb.shape == (480, 640, 3) and frame.depth.dtype == np.uint16 and frame.label == "wall"
    assert int(np.count_nonzero(frame.depth)) > 0


def test_recording_import_reads_an_azure_kinect_mkv_with_frame_labels(tmp_path: Path) -> None:
    needs(MKV)
    labels = tmp_path / "mkv.csv"
    labels.write_text("frame,label\n0,mug\n1,desk\n")
    report = import_recordings([MKV], tmp_path / "out", labels=[labels], background="other", progress=False)
    ds = Dataset(tmp_path / "out")
    (seq,) = ds.sequence_ids
    times, got = ds.labels(seq)
    assert ds.classes == ["desk", "mug", "other"] and ds.background_class == "other"
    assert got[0] == "mug" and all(label == "other" for label in got[2:])
    assert times[0] == 0.0 and ds.meta(seq).depth_scale == pytest.approx(0.001)
    assert report.sequences_written == 1


def test_recording_label_outside_class_list_is_reported_and_left_unlabelled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    needs(MKV)
    labels = tmp_path / "mkv.csv"
    labels.write_text("start,end,label\n0,10,ceiling\n")
    with caplog.at_level(logging.WARNING):
        report = import_recordings([MKV], tmp_path / "out", labels=[labels], classes=["mug"], progress=False)
    _, got = Dataset(tmp_path / "out").labels("recording")
    assert got == [None]
    assert "sequence recording: label 'ceiling' is not in the class list" in caplog.text
    assert report.labels_dropped == 1 and report.counts_by_kind() == {"unknown_label": 1}


def test_recording_corrupt_file_is_skipped_and_the_others_imported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    needs(MKV)
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(b"\x1a\x45\xdf\xa3 not really matroska")
    (tmp_path / "labels.csv").write_text("frame,label\n0,mug\n")
    with caplog.at_level(logging.WARNING):
        report = import_recordings(
            [MKV, broken], tmp_path / "out", labels=[tmp_path / "labels.csv"] * 2, progress=False
        )
    assert Dataset(tmp_path / "out").sequence_ids == ["recording"]
    assert "sequence broken frame 0: reading broken.mkv failed" in caplog.text
    prov = json.loads((tmp_path / "out" / "dataset.json").read_text())["provenance"]["import"]
    assert prov["skipped_sequences"] == ["broken"]
    assert report.counts_by_kind() == {"corrupt_file": 1, "empty_sequence": 1}


def test_recording_cli_imports_with_the_sibling_label_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    needs(MKV)
    rec = tmp_path / "desk.mkv"
    rec.write_bytes(MKV.read_bytes())
    (tmp_path / "desk.csv").write_text("start,end,label\n0,5,mug\n")
    parser = argparse.ArgumentParser(prog="r3d-data")
    cli.register(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["import", "recording", str(tmp_path / "out"), str(rec), "--no-progress"])
    assert args.func(args) == 0
    ds = Dataset(tmp_path / "out")
    assert ds.labels("desk")[1] == ["mug"] and ds.meta("desk").fps == 5.0
    assert "recording import: 1 of 1 sequences written" in capsys.readouterr().out


def test_recording_cli_help_names_the_label_csv_forms(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="r3d-data")
    cli.register(parser.add_subparsers(dest="verb", required=True))
    with pytest.raises(SystemExit):
        parser.parse_args(["import", "recording", "--help"])
    text = capsys.readouterr().out
    assert "start,end,label" in text and "frame,label" in text and ".db3" in text and ".mkv" in text
