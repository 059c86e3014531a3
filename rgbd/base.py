"""The `FrameSource` interface every camera, recording and dataset reader implements, and its errors.

Errors::

    SourceError (RuntimeError)          a source cannot be opened or read; the message says why
    ├── DeviceNotFoundError             no camera connected, or none with the requested serial / index
    ├── MissingDependencyError          a Python package or system library is missing; names what to install
    ├── UnreadableSourceError           a file or folder is missing, corrupt or inconsistent
    └── UnsupportedSourceError          a path whose kind (extension, folder layout) no reader handles

A source is a context manager and an iterable of `Frame`::

    with open_source("walk.db3") as src:
        for frame in src:
            ...

Opening reads the metadata (`depth_scale`, `intrinsics`, `fps`, `num_frames`) or starts the camera; iterating
a recording starts over from its first frame each time, iterating a live camera continues its stream. Camera
and recording timestamps are seconds from the first frame of the iteration, strictly increasing (a frame
whose time does not increase is dropped, counted and logged); a dataset keeps its stored timestamps.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from types import TracebackType
from typing import Self

from rgbd.frame import Frame, Intrinsics

logger = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """A frame source cannot be opened or read; the message says what was wrong and what to do."""


class DeviceNotFoundError(SourceError):
    """No camera is connected, or none matches the requested serial number / index."""


class MissingDependencyError(SourceError):
    """A Python package or a system library a source needs is not installed (the message names it)."""


class UnreadableSourceError(SourceError):
    """A recording or folder is missing, corrupt, or internally inconsistent."""


class UnsupportedSourceError(SourceError):
    """No reader handles this kind of path (extension or folder layout); the message lists supported kinds."""


class FrameSource(ABC):
    """A stream of RGB-D `Frame` records from a camera, a recording or a dataset.

    Subclasses implement `_open` (read metadata, start a device), `_close` and `_frames` (the frame iterator).
    `__iter__` opens the source if needed; the properties are valid once the source is open.
    """

    def __init__(self) -> None:
        self._is_open = False
        self._depth_scale = 0.001
        self._intrinsics: Intrinsics | None = None
        self._fps: float | None = None
        self._num_frames: int | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def open(self) -> Self:
        """Open the source (idempotent) and return it."""
        if not self._is_open:
            self._open()
            self._is_open = True
        return self

    def close(self) -> None:
        """Release the device or file handles (idempotent)."""
        if self._is_open:
            self._is_open = False
            self._close()

    @property
    def is_open(self) -> bool:
        return self._is_open

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        self.open()
        return self._frames()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # -- metadata --------------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def name(self) -> str:
        """A short human-readable name: the file or folder, or the camera model and serial."""

    @property
    def depth_scale(self) -> float:
        """Metres per depth unit."""
        self.open()
        return self._depth_scale

    @property
    def intrinsics(self) -> Intrinsics | None:
        """Intrinsics of the colour image (which aligned depth shares), or None when unknown."""
        self.open()
        return self._intrinsics

    @property
    def fps(self) -> float | None:
        """Nominal frame rate, or None when unknown."""
        self.open()
        return self._fps

    @property
    def num_frames(self) -> int | None:
        """Number of frames of a recording, or None for a live camera or when unknown before reading."""
        self.open()
        return self._num_frames

    # -- to implement ----------------------------------------------------------------------------------------
    @abstractmethod
    def _open(self) -> None:
        """Read metadata / start the device; set `_depth_scale`, `_intrinsics`, `_fps`, `_num_frames`."""

    def _close(self) -> None:  # noqa: B027 - optional hook, most file sources hold nothing open
        """Release what `_open` acquired."""

    @abstractmethod
    def _frames(self) -> Iterator[Frame]:
        """Yield the frames in order."""


class Pacer:
    """Sleeps so that frames come out no faster than their timestamps say (real-time playback)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._start: float | None = None

    def wait(self, timestamp: float) -> None:
        """Block until `timestamp` seconds have passed since the first call."""
        if not self.enabled:
            return
        now = time.monotonic()
        if self._start is None:
            self._start = now - timestamp
            return
        delay = self._start + timestamp - now
        if delay > 0:
            time.sleep(delay)


class TimestampGuard:
    """Rebases timestamps to the first frame and drops (counting) frames whose time does not increase."""

    def __init__(self, source_name: str) -> None:
        self.source_name = source_name
        self.first: float | None = None
        self.last: float | None = None
        self.dropped = 0

    def rebase(self, absolute_s: float) -> float | None:
        """Seconds since the first frame, or None (and counted) when not strictly after the previous one."""
        if self.first is None:
            self.first = absolute_s
        t = absolute_s - self.first
        if self.last is not None and t <= self.last:
            self.dropped += 1
            logger.warning(
                "%s: dropped a frame at %.6f s, not after the previous one at %.6f s", self.source_name, t, self.last
            )
            return None
        self.last = t
        return t
