"""Intel RealSense recordings: playback of .bag / .db3 files without dropping frames (`RealSensePlayback`), and
`record_db3`, which writes frames to a .db3 recording through a software device. The live camera is
`RealSenseCamera` (clients.sources.realsense_live, re-exported here).

Playback follows the recipe of ENVIRONMENT.md (load the device from the file, real-time off, pause, open and
start the sensor, resume) with one change: each stream gets its own playback device. With both sensors of one
device, the reader sometimes starts reading the first stream before the second is enabled and then skips the
second stream's frames that are older than what it has read (measured: the colour frame of the D435 fixture
bag was lost in 7 of 40 playbacks; 0 of 100 with a device per stream). Frames reach a Python callback that
copies them into a bounded queue and blocks while it is full, so a slow consumer slows the non-real-time
playback down instead of losing frames. The two streams are merged by timestamp and paired one-to-one by
nearest timestamp (`NearestPairer`).
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from clients.sources.base import FrameSource, Pacer, TimestampGuard, UnreadableSourceError
from clients.sources.frame import Frame, Intrinsics
from clients.sources.pairing import NearestPairer, Stamped
from clients.sources.realsense_live import RealSenseCamera
from clients.sources.rs_common import (
    FILTERS,
    check_filters,
    clean_scale,
    color_to_rgb,
    import_pyrealsense2,
    make_filters,
    to_intrinsics,
)

__all__ = ["FILTERS", "RECORDING_SUFFIXES", "RealSenseCamera", "RealSensePlayback", "default_intrinsics", "record_db3"]

logger = logging.getLogger(__name__)

RECORDING_SUFFIXES = (".bag", ".db3")
UNALIGNED_MARK = "(not aligned to colour)"


def _find_streams(rs: ModuleType, device: Any, path: Path) -> tuple[Any, Any, Any, Any]:
    """(depth sensor, depth z16 profile, colour sensor, colour profile) of a playback device."""
    depth: tuple[Any, Any] | None = None
    color: tuple[Any, Any] | None = None
    found = []
    for sensor in device.query_sensors():
        for p in sensor.get_stream_profiles():
            found.append(f"{p.stream_type()} {p.format()}")
            if depth is None and p.stream_type() == rs.stream.depth and p.format() == rs.format.z16:
                depth = (sensor, p.as_video_stream_profile())
            elif color is None and p.stream_type() == rs.stream.color:
                color = (sensor, p.as_video_stream_profile())
    if depth is None or color is None:
        raise UnreadableSourceError(
            f"{path}: expected a depth (z16) stream and a colour stream, found {found or 'no streams'}"
        )
    return depth[0], depth[1], color[0], color[1]


def _load_device(rs: ModuleType, path: Path) -> tuple[Any, Any]:
    """(context, playback device) of a recording; the context must outlive the device."""
    if not path.is_file():
        raise UnreadableSourceError(f"RealSense recording {path} does not exist")
    if path.suffix.lower() not in RECORDING_SUFFIXES:
        raise UnreadableSourceError(f"expected a RealSense recording ending in .bag or .db3, got {path}")
    ctx = rs.context()
    try:
        return ctx, ctx.load_device(str(path))
    except RuntimeError as e:
        raise UnreadableSourceError(f"cannot play back {path}: {e}") from e


class _StreamReader:
    """Plays one stream (depth or colour) of a recording into a bounded queue of `Stamped` arrays."""

    def __init__(self, rs: ModuleType, path: Path, kind: str, filters: Sequence[str], queue_size: int) -> None:
        self.rs, self.kind = rs, kind
        self.ctx, self.device = _load_device(rs, path)
        depth_sensor, depth_profile, color_sensor, color_profile = _find_streams(rs, self.device, path)
        self.sensor, self.profile = (depth_sensor, depth_profile) if kind == "depth" else (color_sensor, color_profile)
        self.filters = make_filters(rs, filters) if kind == "depth" else []
        self.items: queue.Queue[Stamped[np.ndarray] | Exception] = queue.Queue(maxsize=queue_size)
        self.cancel = threading.Event()
        self.stopped = threading.Event()
        self.started = False
        self.ended = False
        self.playback = self.device.as_playback()
        self.playback.set_real_time(False)
        self.playback.set_status_changed_callback(self._on_status)

    def _on_status(self, status: Any) -> None:
        if status == self.rs.playback_status.stopped and self.started:
            self.stopped.set()

    def _put(self, item: Stamped[np.ndarray] | Exception) -> None:
        while not self.cancel.is_set():
            try:
                self.items.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _on_frame(self, f: Any) -> None:  # runs on librealsense's thread: never raise there
        try:
            if self.cancel.is_set():
                return
            if self.kind == "depth":
                for block in self.filters:
                    f = block.process(f)
                data = np.array(np.asanyarray(f.get_data()), dtype=np.uint16, copy=True)
            else:
                data = color_to_rgb(self.rs, np.asanyarray(f.get_data()), f.get_profile().format())
            self._put(Stamped(f.get_timestamp() / 1000.0, f.get_frame_number(), data))
        except Exception as e:  # handed to the consumer, which raises it
            self._put(e)

    def start(self) -> None:
        self.playback.pause()
        self.sensor.open(self.profile)
        self.started = True
        self.sensor.start(self._on_frame)
        self.playback.resume()

    def next(self) -> Stamped[np.ndarray] | None:
        """The next frame, or None at the end of the recording. Raises what the callback caught."""
        while True:
            # Once "stopped" is reported, every frame callback has returned: the queue holds all that is left.
            done = self.stopped.is_set()
            try:
                item = self.items.get(timeout=0.05)
            except queue.Empty:
                if done:
                    self.ended = True
                    return None
                continue
            if isinstance(item, Exception):
                raise item
            return item

    def close(self) -> None:
        self.cancel.set()
        if self.started:
            self.started = False
            self.sensor.stop()
            self.sensor.close()


class RealSensePlayback(FrameSource):
    """A RealSense recording (.bag from any librealsense version, .db3 from 2.55+) as a stream of frames.

    realtime: pace frames by their timestamps (True) or deliver them as fast as they are read (False).
    filters: post-processing applied to depth, by name, in order (decimation changes the depth size).
    pair_tolerance_s: depth and colour farther apart than this are not paired (default: one frame period).
    queue_size: frames buffered per stream ahead of the consumer.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        realtime: bool = False,
        filters: Sequence[str] = (),
        pair_tolerance_s: float | None = None,
        queue_size: int = 16,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.realtime = realtime
        self.filters = check_filters(filters)
        self.pair_tolerance_s = pair_tolerance_s
        self.queue_size = queue_size
        self.unpaired_depth = 0
        self.unpaired_color = 0
        self.dropped = 0
        self._depth_aligned = False
        self._tolerance = 0.1

    @property
    def name(self) -> str:
        return self.path.name

    def _open(self) -> None:
        rs = import_pyrealsense2()
        ctx, device = _load_device(rs, self.path)
        depth_sensor, depth_profile, _, color_profile = _find_streams(rs, device, self.path)
        self._depth_scale = clean_scale(depth_sensor.as_depth_sensor().get_depth_scale())
        self._intrinsics = to_intrinsics(color_profile.get_intrinsics())
        self._fps = float(color_profile.fps())
        self._num_frames = None
        depth_intr = to_intrinsics(depth_profile.get_intrinsics())
        try:
            ext = depth_profile.get_extrinsics_to(color_profile)
            identity = np.allclose(ext.rotation, np.eye(3).ravel()) and np.allclose(ext.translation, 0)
        except RuntimeError:  # no extrinsics recorded: equal intrinsics decide
            identity = True
        marked = UNALIGNED_MARK in depth_sensor.get_info(rs.camera_info.name)
        self._depth_aligned = depth_intr == self._intrinsics and identity and not marked and not self.filters
        slowest = min(depth_profile.fps(), color_profile.fps())
        self._tolerance = self.pair_tolerance_s or (1.0 / slowest if slowest > 0 else 0.1)
        del device, ctx

    def _frames(self) -> Iterator[Frame]:
        rs = import_pyrealsense2()
        readers = {k: _StreamReader(rs, self.path, k, self.filters, self.queue_size) for k in ("depth", "color")}
        pairer: NearestPairer[np.ndarray] = NearestPairer(self._tolerance)
        guard = TimestampGuard(self.name)
        pacer = Pacer(self.realtime)
        heads: dict[str, Stamped[np.ndarray] | None] = {"depth": None, "color": None}
        index = 0
        try:
            for reader in readers.values():
                reader.start()
            while True:
                for kind, reader in readers.items():
                    if heads[kind] is None and not reader.ended:
                        try:
                            heads[kind] = reader.next()
                        except Exception as e:
                            raise UnreadableSourceError(f"{self.path}: cannot decode a {kind} frame: {e}") from e
                waiting = [k for k, h in heads.items() if h is not None]
                if not waiting:
                    break
                kind = min(waiting, key=lambda k: heads[k].timestamp)  # type: ignore[union-attr]
                item, heads[kind] = heads[kind], None
                assert item is not None
                (pairer.push_depth if kind == "depth" else pairer.push_color)(item)
                for depth, color in pairer.pop_pairs(final=False):
                    frame = self._frame(depth, color, guard, index)
                    if frame is not None:
                        pacer.wait(frame.timestamp)
                        yield frame
                        index += 1
            for depth, color in pairer.pop_pairs(final=True):
                frame = self._frame(depth, color, guard, index)
                if frame is not None:
                    pacer.wait(frame.timestamp)
                    yield frame
                    index += 1
        finally:
            for reader in readers.values():
                reader.close()
            self.unpaired_depth, self.unpaired_color = pairer.unpaired_depth, pairer.unpaired_color
            self.dropped = guard.dropped
            if self.unpaired_depth or self.unpaired_color:
                logger.info(
                    "%s: %s frames paired; %s depth and %s colour frames had no partner within %.3f s",
                    self.name,
                    index,
                    self.unpaired_depth,
                    self.unpaired_color,
                    self._tolerance,
                )

    def _frame(
        self, depth: Stamped[np.ndarray], color: Stamped[np.ndarray], guard: TimestampGuard, index: int
    ) -> Frame | None:
        t = guard.rebase(color.timestamp)
        if t is None:
            return None
        return Frame(
            rgb=color.data,
            depth=depth.data,
            depth_scale=self._depth_scale,
            timestamp=t,
            index=index,
            intrinsics=self._intrinsics,
            depth_aligned=self._depth_aligned,
        )


def default_intrinsics(width: int, height: int) -> Intrinsics:
    """A D435-like colour pinhole (about 55 degrees horizontal field of view) for frames without intrinsics."""
    f = 0.96 * width
    return Intrinsics(width, height, f, f, width / 2.0, height / 2.0)


def _video_stream(rs: ModuleType, kind: Any, uid: int, intr: Intrinsics, fps: int, fmt: Any, bpp: int) -> Any:
    ri = rs.intrinsics()
    ri.width, ri.height = intr.width, intr.height
    ri.fx, ri.fy, ri.ppx, ri.ppy = intr.fx, intr.fy, intr.cx, intr.cy
    ri.model = rs.distortion.none
    ri.coeffs = [0.0] * 5
    vs = rs.video_stream()
    vs.type, vs.index, vs.uid = kind, 0, uid
    vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = intr.width, intr.height, fps, bpp, fmt
    vs.intrinsics = ri
    return vs


def record_db3(path: str | Path, frames: Iterable[Frame], fps: int = 15) -> int:
    """Record frames to a RealSense .db3 file (depth z16 with depth units = frame.depth_scale, colour rgb8).

    Intrinsics come from the first frame (or `default_intrinsics`); depth of another size than colour gets
    them scaled. Every frame must have the shapes and depth scale of the first, and increasing timestamps.
    Labels are not stored. The file is written under a temporary name and renamed when complete.
    Returns the number of frames written. Playing the file back with `RealSensePlayback` gives the frames
    back bit-exactly (timestamps relative to the first frame).
    """
    rs = import_pyrealsense2()
    path = Path(path)
    if path.suffix != ".db3":
        raise ValueError(f"pyrealsense2 records only ROS2 .db3 files; expected a path ending in .db3, got {path}")
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"no frames to record to {path}")
    (h, w), (dh, dw) = first.rgb.shape[:2], first.depth.shape
    color_intr = first.intrinsics or default_intrinsics(w, h)
    sx, sy = dw / w, dh / h
    depth_intr = Intrinsics(dw, dh, color_intr.fx * sx, color_intr.fy * sy, color_intr.cx * sx, color_intr.cy * sy)
    aligned = first.depth_aligned and (dh, dw) == (h, w)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.db3")
    count = 0
    try:
        dev = rs.software_device()
        dev.register_info(rs.camera_info.name, "R3D record_db3")
        depth_sensor = dev.add_sensor("Depth" if aligned else f"Depth {UNALIGNED_MARK}")
        color_sensor = dev.add_sensor("Color")
        depth_profile = depth_sensor.add_video_stream(
            _video_stream(rs, rs.stream.depth, 0, depth_intr, fps, rs.format.z16, 2)
        )
        color_profile = color_sensor.add_video_stream(
            _video_stream(rs, rs.stream.color, 1, color_intr, fps, rs.format.rgb8, 3)
        )
        depth_sensor.add_read_only_option(rs.option.depth_units, first.depth_scale)
        ext = rs.extrinsics()
        ext.rotation, ext.translation = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], [0.0, 0.0, 0.0]
        depth_profile.register_extrinsics_to(color_profile, ext)
        dev.create_matcher(rs.matchers.dlr_c)
        recorder = rs.recorder(str(tmp), dev)
        depth_sensor.open(depth_profile)
        color_sensor.open(color_profile)
        depth_sensor.start(lambda f: None)
        color_sensor.start(lambda f: None)
        last_t: float | None = None
        for frame in _chain(first, frames):
            if frame.rgb.shape != first.rgb.shape or frame.depth.shape != first.depth.shape:
                raise ValueError(
                    f"frame {count}: expected rgb {first.rgb.shape} and depth {first.depth.shape} like the first "
                    f"frame, got rgb {frame.rgb.shape} and depth {frame.depth.shape}"
                )
            if frame.depth_scale != first.depth_scale:
                raise ValueError(f"frame {count}: expected depth scale {first.depth_scale}, got {frame.depth_scale}")
            if last_t is not None and frame.timestamp <= last_t:
                raise ValueError(f"frame {count}: timestamp {frame.timestamp} s is not after {last_t} s")
            last_t = frame.timestamp
            for sensor, profile, pixels, bpp in (
                (depth_sensor, depth_profile, np.ascontiguousarray(frame.depth), 2),
                (color_sensor, color_profile, np.ascontiguousarray(frame.rgb), 3),
            ):
                sf = rs.software_video_frame()
                sf.pixels = pixels
                sf.bpp = bpp
                sf.stride = bpp * pixels.shape[1]
                sf.timestamp = frame.timestamp * 1000.0
                sf.domain = rs.timestamp_domain.hardware_clock
                sf.frame_number = count
                sf.profile = profile.as_video_stream_profile()
                sf.depth_units = frame.depth_scale
                sensor.on_video_frame(sf)
            count += 1
        for sensor in (depth_sensor, color_sensor):
            sensor.stop()
            sensor.close()
        del recorder, dev, depth_sensor, color_sensor, depth_profile, color_profile
        gc.collect()  # the recorder writes the end of the file when it is released
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("recorded %s frames to %s", count, path)
    return count


def _chain(first: Frame, rest: Iterator[Frame]) -> Iterator[Frame]:
    yield first
    yield from rest
