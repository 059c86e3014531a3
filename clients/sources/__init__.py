"""Frame sources: cameras, recordings and datasets, all yielding `Frame` records. Torch-free."""

from __future__ import annotations

from clients.sources.base import (
    DeviceNotFoundError,
    FrameSource,
    MissingDependencyError,
    SourceError,
    UnreadableSourceError,
    UnsupportedSourceError,
)
from clients.sources.dataset import Dataset, DatasetFormatError, DatasetWriter, SequenceMeta
from clients.sources.folders import DatasetSource, ImageFoldersSource, VideoDepthSource
from clients.sources.frame import Frame, Intrinsics
from clients.sources.kinect import KinectCamera, KinectRecording
from clients.sources.open import open_source
from clients.sources.realsense import RealSenseCamera, RealSensePlayback, record_db3

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
