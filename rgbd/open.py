"""`open_source`: pick the frame source for a camera name, a recording file or a folder.

Specs::

    realsense | realsense:SERIAL        live RealSense camera (pyrealsense2)
    kinect | kinect:INDEX               live Azure Kinect (pyk4a + Azure Kinect SDK)
    FILE.bag | FILE.db3                 RealSense recording
    FILE.mkv                            Azure Kinect recording (k4arecorder tracks), else a colour video
    VIDEO.mp4|.avi|.mov|.mkv|.m4v|.webm colour video + depth folder (depth_dir=, else a sibling 'depth' or
                                        'VIDEO_depth' folder) of 16-bit PNGs
    FOLDER with dataset.json            dataset in the common format (sequence= when it holds several)
    FOLDER sequences/<id>               one sequence of such a dataset
    FOLDER with rgb|color|colour|image(s) and depth subfolders       colour images + 16-bit depth images
    FOLDER with one video and a depth subfolder                      colour video + depth PNGs

Options are passed to the source's constructor; an option it does not take raises `SourceError`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from rgbd.base import FrameSource, SourceError, UnreadableSourceError, UnsupportedSourceError
from rgbd.folders import VIDEO_SUFFIXES, DatasetSource, ImageFoldersSource, VideoDepthSource
from rgbd.kinect import KinectCamera, KinectRecording
from rgbd.realsense import RECORDING_SUFFIXES, RealSenseCamera, RealSensePlayback

COLOR_FOLDERS = ("rgb", "color", "colour", "image", "images")
DEPTH_FOLDERS = ("depth",)
SUPPORTED = (
    "'realsense[:SERIAL]', 'kinect[:INDEX]', .bag/.db3 (RealSense), .mkv (Azure Kinect), "
    f"{'/'.join(VIDEO_SUFFIXES)} with a depth folder of 16-bit PNGs, a dataset folder (dataset.json), "
    f"or a folder with {'|'.join(COLOR_FOLDERS)} and depth subfolders"
)


def _build(cls: type[FrameSource], *args: Any, **options: Any) -> FrameSource:
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        accepted = [n for n, p in params.items() if n != "self" and p.kind == p.KEYWORD_ONLY]
        raise SourceError(f"{cls.__name__} does not take option(s) {unknown!r}; it takes {accepted!r}")
    try:
        return cls(*args, **options)
    except ValueError as e:
        raise SourceError(f"{cls.__name__}: {e}") from e


def _is_k4a_mkv(path: Path) -> bool:
    try:
        import av
    except ImportError:
        return True  # let KinectRecording say that PyAV is missing
    try:
        with av.open(str(path)) as container:
            return any(k.startswith("K4A_") for s in container.streams for k in (s.metadata or {}))
    except av.FFmpegError as e:
        raise UnreadableSourceError(f"cannot read {path} as Matroska: {e}") from e


def _find_depth_dir(video: Path, options: dict[str, Any]) -> Path:
    if "depth_dir" in options:
        return Path(options.pop("depth_dir"))
    for candidate in (video.parent / f"{video.stem}_depth", video.parent / "depth"):
        if candidate.is_dir():
            return candidate
    raise UnreadableSourceError(
        f"no depth folder for the colour video {video}: pass depth_dir=, or put its 16-bit depth PNGs in "
        f"{video.parent / 'depth'} or {video.parent / (video.stem + '_depth')}"
    )


def _open_folder(folder: Path, options: dict[str, Any]) -> FrameSource:
    if (folder / "dataset.json").is_file():
        return _build(DatasetSource, folder, **options)
    if (folder / "meta.json").is_file() and folder.parent.name == "sequences":
        return _build(DatasetSource, folder.parent.parent, folder.name, **options)
    subdirs = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    depth = next((subdirs[n] for n in DEPTH_FOLDERS if n in subdirs), None)
    color = next((subdirs[n] for n in COLOR_FOLDERS if n in subdirs), None)
    if depth is not None and color is not None:
        return _build(ImageFoldersSource, color, depth, **options)
    videos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if depth is not None and len(videos) == 1:
        return _build(VideoDepthSource, videos[0], depth, **options)
    found = sorted(subdirs) or "no subfolders"
    raise UnsupportedSourceError(
        f"{folder}: unrecognised folder layout (subfolders: {found}, videos: {[v.name for v in videos]}); "
        f"expected a dataset.json, a sequences/<id> folder, {'|'.join(COLOR_FOLDERS)} + depth subfolders, "
        "or one colour video + a depth subfolder"
    )


def open_source(spec: str | Path, **options: Any) -> FrameSource:
    """The frame source for `spec` (see the module docstring), not yet opened.

    Raises `SourceError` (or a subclass) saying why when nothing fits: missing path, unsupported extension
    (listing the supported ones), unrecognised folder layout, or an option the source does not take.
    """
    text = str(spec)
    kind, _, arg = text.partition(":")
    if not isinstance(spec, Path) and kind.lower() in ("realsense", "kinect") and not Path(text).exists():
        if kind.lower() == "realsense":
            return _build(RealSenseCamera, arg or None, **options)
        if arg and not arg.isdigit():
            raise SourceError(f"expected 'kinect' or 'kinect:INDEX' with a device index, got {text!r}")
        return _build(KinectCamera, int(arg or 0), **options)
    path = Path(spec).expanduser()
    if not path.exists():
        raise UnreadableSourceError(f"{path} does not exist (expected a recording, a folder, or one of {SUPPORTED})")
    if path.is_dir():
        return _open_folder(path, dict(options))
    suffix = path.suffix.lower()
    if suffix in RECORDING_SUFFIXES:
        return _build(RealSensePlayback, path, **options)
    if suffix == ".mkv" and _is_k4a_mkv(path):
        return _build(KinectRecording, path, **options)
    if suffix in VIDEO_SUFFIXES:
        opts = dict(options)
        depth_dir = _find_depth_dir(path, opts)
        return _build(VideoDepthSource, path, depth_dir, **opts)
    kind = suffix or "(no extension)"
    raise UnsupportedSourceError(f"{path}: unsupported file type {kind!r}; supported: {SUPPORTED}")
