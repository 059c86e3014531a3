"""Stored frames: a dataset's frames with the colour still JPEG-encoded (the model's input path decodes it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rgbd import Dataset, DatasetFormatError, DatasetWriter, Frame


def _dataset(root: Path, color: bool = True, n: int = 4) -> Dataset:
    rng = np.random.default_rng(0)
    frames = [
        Frame(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) if color else None,
              rng.integers(0, 5000, (24, 32)).astype(np.uint16), 0.001, i / 10, index=i,
              label="a" if i < 2 else None)
        for i in range(n)
    ]  # fmt: skip
    writer = DatasetWriter(root, name="t", classes=["a"], fps=10.0, source="test")
    writer.add_sequence("s", frames, fps=10.0)
    return Dataset(root)


def test_stored_frames_hold_the_jpeg_files_bytes_and_the_decoded_frames_depth_and_labels(tmp_path: Path) -> None:
    ds = _dataset(tmp_path)
    stored, decoded = list(ds.stored_frames("s")), list(ds.frames("s"))
    assert [f.jpeg for f in stored] == [(tmp_path / "sequences/s/rgb" / f"{i:06d}.jpg").read_bytes() for i in range(4)]
    assert all(np.array_equal(s.depth, d.depth) for s, d in zip(stored, decoded, strict=True))
    assert [(f.index, f.timestamp, f.label, f.depth_scale) for f in stored] == [
        (d.index, d.timestamp, d.label, d.depth_scale) for d in decoded
    ]


def test_stored_frames_of_a_depth_only_sequence_have_no_jpeg(tmp_path: Path) -> None:
    assert [f.jpeg for f in _dataset(tmp_path, color=False).stored_frames("s")] == [None] * 4


def test_stored_frames_refuse_a_missing_jpeg_and_a_frame_count_mismatch(tmp_path: Path) -> None:
    ds = _dataset(tmp_path)
    (tmp_path / "sequences/s/rgb/000002.jpg").unlink()
    with pytest.raises(DatasetFormatError, match=r"000002\.jpg: missing"):
        list(ds.stored_frames("s"))
    labels = tmp_path / "sequences/s/labels.csv"
    labels.write_text("\n".join(labels.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(DatasetFormatError, match="meta.json says 4 frames, labels.csv has 3"):
        list(ds.stored_frames("s"))
