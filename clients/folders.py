"""Recordings a batch job cannot read itself, read on the client, and a plausibility check of depth scales.

A batch job reads datasets in the common format, their sequence folders, archives of either, and camera recordings
(.bag / .db3 / .mkv). Folders of colour + 16-bit depth images and colour videos with depth PNGs carry no frame rate
or depth scale, so the user gives them (--fps, --depth-scale): `as_dataset` reads such a source with rgbd.open and
writes it as a one-sequence dataset, which the job (or local scoring) then reads. Anything else is left as it is.

A wrong depth scale is silent downstream (the model just sees a scene 10x too near or too far), so
`depth_scale_warning` measures the median depth of the first frames in metres and says when it is outside what an
indoor RGB-D camera sees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from rgbd.frame import Frame

__all__ = ["PLAUSIBLE_MEDIAN_DEPTH_M", "as_dataset", "depth_scale_warning", "needs_client_reading", "warn_on_depth"]

logger = logging.getLogger(__name__)

PLAUSIBLE_MEDIAN_DEPTH_M = (0.3, 8.0)  # median valid depth of an indoor scene seen by a RealSense / Kinect, metres
CHECKED_FRAMES = 10  # the depth check looks at this many frames from the start
_SERVER_READABLE_FILES = (".bag", ".db3", ".mkv", ".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz")


def needs_client_reading(path: Path) -> bool:
    """True for a folder that is neither a dataset nor a sequence of one, or a colour video: a batch job cannot read
    those, the client reads them with rgbd.open and uploads a dataset."""
    from rgbd.folders import VIDEO_SUFFIXES

    if path.is_dir():
        return not (path / "dataset.json").is_file() and not (path / "meta.json").is_file()
    suffix = path.suffix.lower()
    return suffix in VIDEO_SUFFIXES and suffix not in _SERVER_READABLE_FILES


def depth_scale_warning(frames: Iterable[Frame]) -> str | None:
    """What is wrong with the frames' depth scale (measured vs expected), or None when it looks plausible."""
    valid: list[np.ndarray] = []
    scale, count = 0.001, 0
    for frame in frames:
        sample = frame.depth[::4, ::4]
        valid.append(sample[sample > 0].ravel())
        scale, count = frame.depth_scale, count + 1
    if count == 0:
        return None
    units = np.concatenate(valid)
    if units.size == 0:
        return f"the first {count} depth images hold no depth (every pixel is 0): is this a depth image folder?"
    median_units = float(np.median(units))
    median_m = median_units * scale
    low, high = PLAUSIBLE_MEDIAN_DEPTH_M
    if low <= median_m <= high:
        return None
    return (
        f"implausible depth scale: {scale:g} m per unit puts the median depth of the first {count} frames at "
        f"{median_m:.3g} m ({median_units:.0f} units); expected {low:g}-{high:g} m for an indoor RGB-D camera. "
        f"Check --depth-scale (metres per depth unit; RealSense and Kinect 0.001): {2.0 / median_units:.2g} would put "
        "the median at 2 m"
    )


def warn_on_depth(frames: Iterator[Frame]) -> Iterator[Frame]:
    """Pass frames through, logging depth_scale_warning's message once the first CHECKED_FRAMES have gone by."""
    checked: list[Frame] = []
    for frame in frames:
        if len(checked) < CHECKED_FRAMES:
            checked.append(frame)
            if len(checked) == CHECKED_FRAMES:
                _log_depth_warning(checked)
        yield frame
    if 0 < len(checked) < CHECKED_FRAMES:
        _log_depth_warning(checked)


def _log_depth_warning(frames: list[Frame]) -> None:
    message = depth_scale_warning(frames)
    if message is not None:
        logger.warning("%s", message)


def as_dataset(
    source: Path, work_dir: Path, *, fps: float | None = None, depth_scale: float | None = None, progress: bool = True
) -> Path:
    """Read `source` (a colour + depth image folder, a colour video with depth PNGs) with rgbd.open and write it to
    `work_dir/<name>` as a one-sequence dataset in the common format; returns that folder.

    Raises rgbd's SourceError when `source` is not something rgbd.open reads (a folder of depth images alone, say).
    """
    from tqdm import tqdm

    from rgbd.dataset import DatasetWriter
    from rgbd.open import open_source

    options = {name: value for name, value in (("fps", fps), ("depth_scale", depth_scale)) if value is not None}
    name = source.stem or "recording"
    with open_source(source, **options) as frames:
        rate = frames.fps or 30.0
        writer = DatasetWriter(work_dir / name, name=name, classes=["unlabelled"], fps=rate, source=f"r3d-score {name}")
        bar = tqdm(total=frames.num_frames, desc=f"reading {source.name}", unit="frame", disable=not progress)
        try:
            writer.add_sequence(name, warn_on_depth(_counted(frames, bar.update)), fps=rate)
        finally:
            bar.close()
    return writer.root


def _counted(frames: Iterable[Frame], advance: Callable[[int], object]) -> Iterator[Frame]:
    for frame in frames:
        yield frame
        advance(1)
