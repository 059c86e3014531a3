"""open_source: the reader chosen for each spec, and the reasons given when none fits."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from rgbd import (
    DatasetSource,
    DatasetWriter,
    Frame,
    ImageFoldersSource,
    KinectCamera,
    KinectRecording,
    RealSenseCamera,
    RealSensePlayback,
    SourceError,
    UnreadableSourceError,
    UnsupportedSourceError,
    VideoDepthSource,
    open_source,
)
from tests.real_fixtures import real_fixture


def _depth_pngs(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:04d}.png"), np.full((24, 32), 700 + i, np.uint16))


def _mp4(path: Path, n: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (32, 24))
    for i in range(n):
        writer.write(np.full((24, 32, 3), 30 * i, np.uint8))
    writer.release()


@pytest.mark.parametrize(
    ("rel", "cls"),
    [
        ("realsense_d435/single_depth_color_640x480.bag", RealSensePlayback),
        ("azure_kinect/recording.mkv", KinectRecording),
    ],
)
def test_real_recordings_open_with_their_reader(rel: str, cls: type) -> None:
    path = real_fixture(rel)
    with open_source(path) as src:
        assert isinstance(src, cls)
        frames = list(src)
    assert len(frames) == 1 and frames[0].depth.dtype == np.uint16


def test_db3_written_by_record_db3_opens_and_takes_options(tmp_path: Path) -> None:
    pytest.importorskip("pyrealsense2", reason="pyrealsense2 is not installed")
    from rgbd import record_db3

    frames = [Frame(np.zeros((8, 8, 3), np.uint8), np.full((8, 8), i, np.uint16), 0.001, i / 15, i) for i in range(3)]
    record_db3(tmp_path / "a.db3", frames)
    src = open_source(str(tmp_path / "a.db3"), realtime=False, filters=["hole-filling"])
    assert isinstance(src, RealSensePlayback) and src.filters == ["hole_filling"]
    assert len(list(src)) == 3


def test_video_finds_sibling_depth_folder(tmp_path: Path) -> None:
    _mp4(tmp_path / "walk.mp4", 3)
    _depth_pngs(tmp_path / "walk_depth", 3)
    src = open_source(tmp_path / "walk.mp4", fps=20)
    assert isinstance(src, VideoDepthSource) and src.depth_dir == tmp_path / "walk_depth"
    assert [f.timestamp for f in src] == pytest.approx([0, 0.05, 0.1])


def test_video_takes_depth_dir_option(tmp_path: Path) -> None:
    _mp4(tmp_path / "walk.mp4", 2)
    _depth_pngs(tmp_path / "elsewhere", 2)
    src = open_source(tmp_path / "walk.mp4", depth_dir=tmp_path / "elsewhere")
    assert isinstance(src, VideoDepthSource) and src.num_frames == 2


def test_video_without_depth_folder_says_where_to_put_it(tmp_path: Path) -> None:
    _mp4(tmp_path / "walk.mp4", 2)
    with pytest.raises(UnreadableSourceError, match="no depth folder for the colour video .*pass depth_dir="):
        open_source(tmp_path / "walk.mp4")


def test_folder_with_video_and_depth_subfolder(tmp_path: Path) -> None:
    _mp4(tmp_path / "clip.avi", 2)
    _depth_pngs(tmp_path / "depth", 2)
    assert isinstance(open_source(tmp_path), VideoDepthSource)


@pytest.mark.parametrize("color_name", ["rgb", "color", "colour", "Images"])
def test_folder_with_colour_and_depth_subfolders(tmp_path: Path, color_name: str) -> None:
    (tmp_path / color_name).mkdir()
    cv2.imwrite(str(tmp_path / color_name / "0.jpg"), np.zeros((24, 32, 3), np.uint8))
    _depth_pngs(tmp_path / "depth", 1)
    src = open_source(tmp_path, depth_scale=0.0002)
    assert isinstance(src, ImageFoldersSource) and src.depth_scale == 0.0002


def test_dataset_root_and_sequence_folder_open_as_dataset(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "ds", name="d", classes=["a"], fps=5.0, source="test")
    frames = [Frame(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), np.uint16), 0.001, i / 5, i) for i in range(2)]
    writer.add_sequence("one", frames, fps=5.0)
    writer.add_sequence("two", frames, fps=5.0)
    src = open_source(tmp_path / "ds", sequence="two")
    assert isinstance(src, DatasetSource) and src.num_frames == 2
    seq = open_source(tmp_path / "ds" / "sequences" / "one")
    assert isinstance(seq, DatasetSource) and seq.sequence == "one" and len(list(seq)) == 2


def test_camera_specs_build_live_sources_without_opening() -> None:
    src = open_source("realsense:123456", fps=15, filters=["spatial"])
    assert isinstance(src, RealSenseCamera) and src.serial == "123456" and not src.is_open
    kin = open_source("kinect:1", align=False)
    assert isinstance(kin, KinectCamera) and kin.device_id == 1
    with pytest.raises(SourceError, match="expected 'kinect' or 'kinect:INDEX'"):
        open_source("kinect:front")


def test_missing_path_says_so(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSourceError, match="does not exist"):
        open_source(tmp_path / "nothing.bag")


def test_unsupported_extension_lists_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "cloud.pcd").write_bytes(b"x")
    with pytest.raises(UnsupportedSourceError, match=r"unsupported file type '\.pcd'; supported: .*\.bag/\.db3"):
        open_source(tmp_path / "cloud.pcd")


def test_unrecognised_folder_describes_expected_layouts(tmp_path: Path) -> None:
    (tmp_path / "misc").mkdir()
    with pytest.raises(UnsupportedSourceError, match=r"unrecognised folder layout \(subfolders: \['misc'\]"):
        open_source(tmp_path)


def test_unknown_option_names_accepted_ones(tmp_path: Path) -> None:
    _mp4(tmp_path / "walk.mp4", 1)
    _depth_pngs(tmp_path / "depth", 1)
    with pytest.raises(SourceError, match=r"VideoDepthSource does not take option\(s\) \['speed'\]; it takes \["):
        open_source(tmp_path / "walk.mp4", speed=2)


def test_bad_option_value_becomes_source_error() -> None:
    with pytest.raises(SourceError, match="unknown RealSense filter"):
        open_source("realsense", filters=["median"])
