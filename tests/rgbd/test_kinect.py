"""Azure Kinect sources: playback of a real k4arecorder .mkv with PyAV, intrinsics from the calibration, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rgbd import KinectCamera, KinectRecording, MissingDependencyError, UnreadableSourceError
from rgbd.kinect import k4a_intrinsics
from tests.real_fixtures import REAL_FIXTURES, real_fixture

pytest.importorskip("av", reason="PyAV is not installed (pip install av)")

REAL = REAL_FIXTURES / "azure_kinect"
MKV = REAL / "recording.mkv"


@pytest.fixture
def mkv() -> Path:
    return real_fixture("azure_kinect/recording.mkv")


def test_recording_yields_colour_and_raw_depth_of_one_capture(mkv: Path) -> None:
    with KinectRecording(mkv) as src:
        assert src.depth_scale == 0.001 and src.fps == 5.0
        frames = list(src)
    assert len(frames) == 1
    f = frames[0]
    assert f.rgb.shape == (720, 1280, 3) and f.rgb.dtype == np.uint8
    assert f.depth.shape == (576, 640) and f.depth.dtype == np.uint16
    assert f.depth_aligned is False and f.timestamp == 0.0 and f.index == 0
    valid = f.depth[f.depth > 0]
    assert 0.6 < valid.size / f.depth.size < 0.95  # NFOV: the corners of the hexagonal field are invalid
    # a mug on a desk, in millimetres (read little-endian, the median would be about 22800)
    assert 100 < valid.min() and valid.max() < 5000
    assert 1000 < float(np.median(valid)) < 2000 and 1800 < np.percentile(valid, 95) < 2500
    assert f.rgb.std() > 10.0


def test_recording_intrinsics_follow_the_sdk_mode_calibration(mkv: Path) -> None:
    src = KinectRecording(mkv).open()
    color, depth = src.intrinsics, src.depth_intrinsics
    assert color is not None and depth is not None
    assert (color.width, color.height) == (1280, 720)
    # 720P: unitised parameters x (1280, 960), crop (0, 120), minus half a pixel (SDK mode_specific_calibration)
    assert color.fx == pytest.approx(0.4779651165008545 * 1280, rel=1e-9)
    assert color.fy == pytest.approx(0.6374239325523376 * 960, rel=1e-9)
    assert color.cx == pytest.approx(0.4998471438884735 * 1280 - 0.5, rel=1e-9)
    assert color.cy == pytest.approx(0.5066176056861877 * 960 - 120 - 0.5, rel=1e-9)
    assert (depth.width, depth.height) == (640, 576)
    assert depth.fx == pytest.approx(504.6, abs=0.1) and depth.cy == pytest.approx(0.5169235467910767 * 1024 - 180.5)


def test_attachment_calibration_matches_the_fixture_json(mkv: Path) -> None:
    calibration = json.loads((REAL / "calibration.json").read_text())
    src = KinectRecording(mkv).open()
    assert src.calibration == calibration
    assert src.intrinsics == k4a_intrinsics(calibration, "color", "720P")


def test_legacy_16_9_calibration_is_converted_to_4_3() -> None:
    calibration = json.loads(real_fixture("azure_kinect/calibration.json").read_text())
    cam = next(c for c in calibration["CalibrationInformation"]["Cameras"] if "PhotoVideo" in c["Purpose"])
    cx, cy, fx, fy = cam["Intrinsics"]["ModelParameters"][:4]
    legacy = json.loads(json.dumps(calibration))
    lcam = next(c for c in legacy["CalibrationInformation"]["Cameras"] if "PhotoVideo" in c["Purpose"])
    lcam["SensorHeight"] = 2304  # the same camera described over the 16:9 crop of the sensor
    lcam["Intrinsics"]["ModelParameters"][1] = (cy * 3072 - 384) / 2304
    lcam["Intrinsics"]["ModelParameters"][3] = fy * 3072 / 2304
    a, b = k4a_intrinsics(calibration, "color", "1080P"), k4a_intrinsics(legacy, "color", "1080P")
    assert b.fy == pytest.approx(a.fy, rel=1e-9) and b.cy == pytest.approx(a.cy, rel=1e-9)


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown Azure Kinect color mode '900P'"):
        k4a_intrinsics({"CalibrationInformation": {"Cameras": []}}, "color", "900P")


def test_non_kinect_mkv_is_rejected(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "plain.mkv"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (32, 24))
    for i in range(3):
        writer.write(np.full((24, 32, 3), i * 40, np.uint8))
    writer.release()
    with pytest.raises(UnreadableSourceError, match="no COLOR or DEPTH track"):
        KinectRecording(path).open()


def test_missing_and_corrupt_recordings_raise(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSourceError, match="does not exist"):
        KinectRecording(tmp_path / "none.mkv").open()
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(UnreadableSourceError, match="cannot read .* as Matroska"):
        KinectRecording(bad).open()


def test_calibration_json_beside_the_file_is_used_when_named(mkv: Path, tmp_path: Path) -> None:
    shutil.copy(REAL / "calibration.json", tmp_path / "cal.json")
    src = KinectRecording(mkv, calibration=tmp_path / "cal.json").open()
    assert src.intrinsics is not None and src.intrinsics.width == 1280


def test_live_camera_without_pyk4a_names_what_to_install() -> None:
    try:
        import pyk4a  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="pip install pyk4a"):
            KinectCamera().open()
    else:
        pytest.skip("pyk4a is installed; the missing-dependency message cannot be shown")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"color_resolution": "900P"}, "colour resolution"), ({"depth_mode": "X"}, "depth mode"), ({"fps": 60}, "5, 15")],
)
def test_live_camera_bad_settings_are_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        KinectCamera(**kwargs)
