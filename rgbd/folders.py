"""File-based sources: a colour video plus a folder of 16-bit depth PNGs, folders of colour images plus depth
PNGs (Kinect v1 / v2 style exports), and a sequence of a dataset in the common format (`DatasetSource`).

Files pair by their order under natural sorting (frame2 before frame10); counts must match.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from rgbd.base import FrameSource, Pacer, UnreadableSourceError
from rgbd.dataset import Dataset, DatasetFormatError
from rgbd.frame import Frame, Intrinsics

COLOR_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff")
DEPTH_IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
DEFAULT_FPS = 30.0


def natural_key(path: Path) -> list[int | str]:
    """Sort key that orders 'frame2' before 'frame10'."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", path.name)]


def list_images(folder: Path, suffixes: Sequence[str], what: str) -> list[Path]:
    """The image files of a folder in natural order; raises when the folder is missing or holds none."""
    if not folder.is_dir():
        raise UnreadableSourceError(f"{what} folder {folder} does not exist")
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes), key=natural_key)
    if not files:
        raise UnreadableSourceError(f"{what} folder {folder} holds no {'/'.join(suffixes)} files")
    return files


def read_depth_image(path: Path) -> np.ndarray:
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None:
        raise UnreadableSourceError(f"cannot read depth image {path}: corrupt or not an image")
    if depth.dtype != np.uint16 or depth.ndim != 2:
        raise UnreadableSourceError(
            f"{path}: expected a 16-bit single-channel depth image, got {depth.dtype} {depth.shape}"
        )
    return depth


def read_color_image(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UnreadableSourceError(f"cannot read colour image {path}: corrupt or not an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _as_intrinsics(value: Intrinsics | dict[str, float | int] | None) -> Intrinsics | None:
    if value is None or isinstance(value, Intrinsics):
        return value
    return Intrinsics.from_dict(value)


class _PairedFiles(FrameSource):
    """Shared metadata handling for the colour + depth-folder sources."""

    def __init__(
        self,
        depth_dir: str | Path,
        *,
        fps: float | None,
        depth_scale: float,
        intrinsics: Intrinsics | dict[str, float | int] | None,
        depth_aligned: bool | None,
        realtime: bool,
    ) -> None:
        super().__init__()
        if not depth_scale > 0:
            raise ValueError(f"expected a positive depth scale in metres per unit, got {depth_scale!r}")
        if fps is not None and not fps > 0:
            raise ValueError(f"expected a positive frame rate, got {fps!r}")
        self.depth_dir = Path(depth_dir)
        self.requested_fps = fps
        self._depth_scale = depth_scale
        self._intrinsics = _as_intrinsics(intrinsics)
        self.depth_aligned = depth_aligned
        self.realtime = realtime
        self.depth_files: list[Path] = []

    def _make_frame(self, rgb: np.ndarray, depth: np.ndarray, index: int) -> Frame:
        aligned = self.depth_aligned if self.depth_aligned is not None else rgb.shape[:2] == depth.shape
        assert self._fps is not None
        return Frame(
            rgb=rgb,
            depth=depth,
            depth_scale=self._depth_scale,
            timestamp=index / self._fps,
            index=index,
            intrinsics=self._intrinsics,
            depth_aligned=aligned,
        )


class ImageFoldersSource(_PairedFiles):
    """A folder of colour images and a folder of 16-bit depth images, paired in natural file order.

    fps: frame rate for timestamps (default 30). depth_scale: metres per depth unit (default 0.001).
    depth_aligned: whether depth is registered to colour (default: when both have the same size).
    """

    def __init__(
        self,
        color_dir: str | Path,
        depth_dir: str | Path,
        *,
        fps: float | None = None,
        depth_scale: float = 0.001,
        intrinsics: Intrinsics | dict[str, float | int] | None = None,
        depth_aligned: bool | None = None,
        realtime: bool = False,
    ) -> None:
        super().__init__(
            depth_dir,
            fps=fps,
            depth_scale=depth_scale,
            intrinsics=intrinsics,
            depth_aligned=depth_aligned,
            realtime=realtime,
        )
        self.color_dir = Path(color_dir)
        self.color_files: list[Path] = []

    @property
    def name(self) -> str:
        return f"{self.color_dir.parent.name or self.color_dir.name}"

    def _open(self) -> None:
        self.color_files = list_images(self.color_dir, COLOR_IMAGE_SUFFIXES, "colour")
        self.depth_files = list_images(self.depth_dir, DEPTH_IMAGE_SUFFIXES, "depth")
        if len(self.color_files) != len(self.depth_files):
            raise UnreadableSourceError(
                f"expected as many colour as depth images, got {len(self.color_files)} colour images in "
                f"{self.color_dir} and {len(self.depth_files)} depth images in {self.depth_dir}"
            )
        self._fps = self.requested_fps or DEFAULT_FPS
        self._num_frames = len(self.color_files)

    def _frames(self) -> Iterator[Frame]:
        pacer = Pacer(self.realtime)
        for i, (cpath, dpath) in enumerate(zip(self.color_files, self.depth_files, strict=True)):
            frame = self._make_frame(read_color_image(cpath), read_depth_image(dpath), i)
            pacer.wait(frame.timestamp)
            yield frame


class VideoDepthSource(_PairedFiles):
    """A colour video (anything OpenCV decodes) and a folder of 16-bit depth PNGs, one per video frame.

    fps: frame rate for timestamps (default: the video's, else 30). depth_scale: metres per unit (default 0.001).
    """

    def __init__(
        self,
        video: str | Path,
        depth_dir: str | Path,
        *,
        fps: float | None = None,
        depth_scale: float = 0.001,
        intrinsics: Intrinsics | dict[str, float | int] | None = None,
        depth_aligned: bool | None = None,
        realtime: bool = False,
    ) -> None:
        super().__init__(
            depth_dir,
            fps=fps,
            depth_scale=depth_scale,
            intrinsics=intrinsics,
            depth_aligned=depth_aligned,
            realtime=realtime,
        )
        self.video = Path(video)

    @property
    def name(self) -> str:
        return self.video.name

    def _capture(self) -> cv2.VideoCapture:
        if not self.video.is_file():
            raise UnreadableSourceError(f"video {self.video} does not exist")
        cap = cv2.VideoCapture(str(self.video))
        if not cap.isOpened():
            raise UnreadableSourceError(f"OpenCV cannot decode the video {self.video}")
        return cap

    def _open(self) -> None:
        self.depth_files = list_images(self.depth_dir, DEPTH_IMAGE_SUFFIXES, "depth")
        cap = self._capture()
        try:
            video_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0)
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            if count != len(self.depth_files):  # the container's count can be an estimate: count for real
                count = 0
                while cap.grab():
                    count += 1
        finally:
            cap.release()
        if count != len(self.depth_files):
            raise UnreadableSourceError(
                f"expected one depth image per video frame, got {count} frames in {self.video} and "
                f"{len(self.depth_files)} depth images in {self.depth_dir}"
            )
        self._fps = self.requested_fps or (video_fps if video_fps > 0 else DEFAULT_FPS)
        self._num_frames = count

    def _frames(self) -> Iterator[Frame]:
        pacer = Pacer(self.realtime)
        cap = self._capture()
        try:
            for i, dpath in enumerate(self.depth_files):
                ok, bgr = cap.read()
                if not ok:
                    raise UnreadableSourceError(
                        f"{self.video} ended after {i} frames; {self.depth_dir} has "
                        f"{len(self.depth_files)} depth images"
                    )
                frame = self._make_frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), read_depth_image(dpath), i)
                pacer.wait(frame.timestamp)
                yield frame
        finally:
            cap.release()


class DatasetSource(FrameSource):
    """One sequence of a dataset in the common format (rgbd.dataset) as a frame source.

    sequence: the sequence id; may be omitted when the dataset holds exactly one sequence.
    """

    def __init__(self, root: str | Path, sequence: str | None = None, *, realtime: bool = False) -> None:
        super().__init__()
        self.root = Path(root)
        self.sequence = sequence
        self.realtime = realtime
        self.dataset: Dataset | None = None

    @property
    def name(self) -> str:
        return f"{self.root.name}/{self.sequence}" if self.sequence else self.root.name

    def _open(self) -> None:
        try:
            dataset = Dataset(self.root)
        except (DatasetFormatError, OSError, ValueError, KeyError) as e:
            raise UnreadableSourceError(f"cannot read dataset {self.root}: {e}") from e
        if self.sequence is None:
            if len(dataset.sequence_ids) != 1:
                raise UnreadableSourceError(
                    f"dataset {self.root} holds {len(dataset.sequence_ids)} sequences; pass sequence= one of "
                    f"{dataset.sequence_ids[:20]!r}"
                )
            self.sequence = dataset.sequence_ids[0]
        elif self.sequence not in dataset.sequence_ids:
            raise UnreadableSourceError(
                f"dataset {self.root} has no sequence {self.sequence!r}; it has {dataset.sequence_ids[:20]!r}"
            )
        try:
            meta = dataset.meta(self.sequence)
        except (DatasetFormatError, OSError, ValueError, KeyError) as e:
            raise UnreadableSourceError(f"cannot read sequence {self.sequence!r} of {self.root}: {e}") from e
        self.dataset = dataset
        self._depth_scale = meta.depth_scale
        self._intrinsics = meta.intrinsics
        self._fps = meta.fps
        self._num_frames = meta.num_frames

    def _frames(self) -> Iterator[Frame]:
        assert self.dataset is not None and self.sequence is not None
        pacer = Pacer(self.realtime)
        try:
            for frame in self.dataset.frames(self.sequence):
                pacer.wait(frame.timestamp)
                yield frame
        except DatasetFormatError as e:
            raise UnreadableSourceError(f"dataset {self.root}, sequence {self.sequence!r}: {e}") from e
