"""File-based sources on real files written in tmp_path: MP4 + depth PNGs, image folders, a common-format dataset."""

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
    Intrinsics,
    UnreadableSourceError,
    VideoDepthSource,
)


def write_depth_pngs(folder: Path, n: int, h: int = 48, w: int = 64, start: int = 0) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    depths = []
    for i in range(n):
        depth = np.full((h, w), 500 + 100 * i, np.uint16)
        depth[0, 0] = 0
        assert cv2.imwrite(str(folder / f"frame{start + i}.png"), depth)
        depths.append(depth)
    return depths


def write_mp4(path: Path, n: int, fps: float = 12.0, h: int = 48, w: int = 64) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for i in range(n):
        bgr = np.zeros((h, w, 3), np.uint8)
        bgr[..., 2] = 40 * i  # red grows with the frame index
        writer.write(bgr)
    writer.release()


def test_video_with_depth_folder_yields_frames_in_order(tmp_path: Path) -> None:
    write_mp4(tmp_path / "take.mp4", 5)
    depths = write_depth_pngs(tmp_path / "depth", 5)
    with VideoDepthSource(tmp_path / "take.mp4", tmp_path / "depth") as src:
        assert src.fps == 12.0 and src.num_frames == 5 and src.depth_scale == 0.001
        frames = list(src)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [f.timestamp for f in frames] == pytest.approx([i / 12.0 for i in range(5)])
    for i, f in enumerate(frames):
        np.testing.assert_array_equal(f.depth, depths[i])
        assert f.rgb.shape == (48, 64, 3) and f.depth_aligned
        assert abs(float(f.rgb[..., 0].mean()) - 40 * i) < 6  # RGB order: the red channel carries the ramp
        assert float(f.rgb[..., 2].mean()) < 6


def test_video_fps_and_depth_scale_options_apply(tmp_path: Path) -> None:
    write_mp4(tmp_path / "take.mp4", 3)
    write_depth_pngs(tmp_path / "depth", 3)
    frames = list(VideoDepthSource(tmp_path / "take.mp4", tmp_path / "depth", fps=30, depth_scale=0.0001))
    assert [f.timestamp for f in frames] == pytest.approx([0, 1 / 30, 2 / 30])
    assert {f.depth_scale for f in frames} == {0.0001}


def test_video_and_depth_count_mismatch_names_both_counts(tmp_path: Path) -> None:
    write_mp4(tmp_path / "take.mp4", 5)
    write_depth_pngs(tmp_path / "depth", 4)
    with pytest.raises(UnreadableSourceError, match=r"got 5 frames in .*take\.mp4 and 4 depth images"):
        VideoDepthSource(tmp_path / "take.mp4", tmp_path / "depth").open()


def test_image_folders_pair_in_natural_order(tmp_path: Path) -> None:
    (tmp_path / "rgb").mkdir()
    for i in range(12):
        bgr = np.full((48, 64, 3), (0, 0, 10 * i), np.uint8)
        assert cv2.imwrite(str(tmp_path / "rgb" / f"frame{i}.png"), bgr)  # frame10 sorts after frame9
    depths = write_depth_pngs(tmp_path / "depth", 12, h=24, w=32)
    intr = Intrinsics(64, 48, 60.0, 60.0, 32.0, 24.0)
    with ImageFoldersSource(tmp_path / "rgb", tmp_path / "depth", fps=15, depth_scale=0.0005, intrinsics=intr) as src:
        assert src.num_frames == 12 and src.fps == 15 and src.intrinsics == intr
        frames = list(src)
    assert [int(f.rgb[0, 0, 0]) for f in frames] == [10 * i for i in range(12)]
    assert all(np.array_equal(f.depth, d) for f, d in zip(frames, depths, strict=True))
    assert not frames[0].depth_aligned  # 32x24 depth beside 64x48 colour: not registered
    assert frames[11].timestamp == pytest.approx(11 / 15) and frames[0].depth_scale == 0.0005


def test_image_folders_count_mismatch_names_both_counts(tmp_path: Path) -> None:
    (tmp_path / "color").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "color" / f"{i}.jpg"), np.zeros((8, 8, 3), np.uint8))
    write_depth_pngs(tmp_path / "depth", 2, 8, 8)
    with pytest.raises(UnreadableSourceError, match="got 3 colour images in .* and 2 depth images"):
        ImageFoldersSource(tmp_path / "color", tmp_path / "depth").open()


def test_eight_bit_depth_png_is_rejected_with_its_type(tmp_path: Path) -> None:
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    cv2.imwrite(str(tmp_path / "rgb" / "0.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "depth" / "0.png"), np.zeros((8, 8, 3), np.uint8))
    src = ImageFoldersSource(tmp_path / "rgb", tmp_path / "depth")
    with pytest.raises(UnreadableSourceError, match=r"expected a 16-bit single-channel depth image, got uint8"):
        list(src)


def test_empty_or_missing_folders_raise(tmp_path: Path) -> None:
    (tmp_path / "rgb").mkdir()
    with pytest.raises(UnreadableSourceError, match="holds no"):
        ImageFoldersSource(tmp_path / "rgb", tmp_path / "rgb").open()
    cv2.imwrite(str(tmp_path / "rgb" / "0.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UnreadableSourceError, match="depth folder .*nodepth does not exist"):
        ImageFoldersSource(tmp_path / "rgb", tmp_path / "nodepth").open()


def _write_dataset(root: Path, sequences: list[str]) -> list[Frame]:
    writer = DatasetWriter(root, name="t", classes=["walk", "sit"], fps=10.0, source="test")
    frames = [
        Frame(
            rgb=np.full((24, 32, 3), 20 * i, np.uint8),
            depth=np.full((24, 32), 1000 + i, np.uint16),
            depth_scale=0.001,
            timestamp=i / 10,
            index=i,
            label="walk" if i < 2 else "sit",
        )
        for i in range(4)
    ]
    for seq in sequences:
        writer.add_sequence(seq, frames, fps=10.0)
    return frames


def test_dataset_source_reads_one_sequence_with_labels(tmp_path: Path) -> None:
    written = _write_dataset(tmp_path / "ds", ["s1"])
    with DatasetSource(tmp_path / "ds") as src:
        assert src.num_frames == 4 and src.fps == 10.0 and src.name == "ds/s1"
        frames = list(src)
    assert [f.label for f in frames] == ["walk", "walk", "sit", "sit"]
    assert all(np.array_equal(a.depth, b.depth) for a, b in zip(written, frames, strict=True))


def test_dataset_source_with_several_sequences_needs_a_choice(tmp_path: Path) -> None:
    _write_dataset(tmp_path / "ds", ["a", "b"])
    with pytest.raises(UnreadableSourceError, match=r"holds 2 sequences; pass sequence= one of \['a', 'b'\]"):
        DatasetSource(tmp_path / "ds").open()
    with pytest.raises(UnreadableSourceError, match="has no sequence 'c'"):
        DatasetSource(tmp_path / "ds", "c").open()
    assert len(list(DatasetSource(tmp_path / "ds", "b"))) == 4
