"""Frame sources: cameras, recordings and datasets, all yielding `Frame` records. Torch-free."""

from __future__ import annotations

from rgbd.base import (
    DeviceNotFoundError,
    FrameSource,
    MissingDependencyError,
    SourceError,
    UnreadableSourceError,
    UnsupportedSourceError,
)
from rgbd.dataset import Dataset, DatasetFormatError, DatasetWriter, SequenceMeta
from rgbd.folders import DatasetSource, ImageFoldersSource, VideoDepthSource
from rgbd.frame import Frame, Intrinsics, MissingColorError
from rgbd.kinect import KinectCamera, KinectRecording
from rgbd.open import open_source
from rgbd.realsense import RealSenseCamera, RealSensePlayback, record_db3

__all__ = [
    "Dataset",
    "DatasetFormatError",
    "DatasetSource",
    "DatasetWriter",
    "DeviceNotFoundError",
    "Frame",
    "FrameSource",
    "ImageFoldersSource",
    "Intrinsics",
    "KinectCamera",
    "KinectRecording",
    "MissingColorError",
    "MissingDependencyError",
    "RealSenseCamera",
    "RealSensePlayback",
    "SequenceMeta",
    "SourceError",
    "UnreadableSourceError",
    "UnsupportedSourceError",
    "VideoDepthSource",
    "open_source",
    "record_db3",
]
