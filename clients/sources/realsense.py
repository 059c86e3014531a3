"""Intel RealSense sources: a live camera (pyrealsense2 pipeline), playback of .bag / .db3 recordings without
dropping frames, and `record_db3`, which writes frames to a .db3 recording through a software device.

Playback follows the recipe of ENVIRONMENT.md: load the device from the file, turn real-time off, pause, open
and start the depth and colour sensors, resume. Frames reach a Python callback that copies them into a bounded
queue and blocks while it is full, so a slow consumer slows the (non-real-time) playback instead of losing
frames. Depth and colour are paired one-to-one by nearest timestamp (`NearestPairer`).
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

import cv2
import numpy as np

from clients.sources.base import (
    DeviceNotFoundError,
    FrameSource,
    MissingDependencyError,
    Pacer,
    SourceError,
    TimestampGuard,
    UnreadableSourceError,
)
from clients.sources.frame import Frame, Intrinsics
from clients.sources.pairing import NearestPairer, Stamped

logger = logging.getLogger(__name__)

FILTERS = ("decimation", "spatial", "temporal", "hole_filling")
RECORDING_SUFFIXES = (".bag", ".db3")
UNALIGNED_MARK = "(not aligned to colour)"
_END = object()


def import_pyrealsense2() -> ModuleType:
    """Import pyrealsense2 or raise `MissingDependencyError` naming what to install."""
    try:
        import pyrealsense2 as rs
    except ImportError as e:
        if "libusb" in str(e):
            raise MissingDependencyError(f"pyrealsense2 needs libusb: apt-get install -y libusb-1.0-0 ({e})") from e
        raise MissingDependencyError(f"RealSense sources need pyrealsense2: pip install pyrealsense2 ({e})") from e
    return rs


def check_filters(names: Sequence[str]) -> list[str]:
    """Normalise post-processing filter names ('hole-filling' -> 'hole_filling') and reject unknown ones."""
    out = [n.strip().lower().replace("-", "_") for n in names]
    unknown = [n for n in out if n not in FILTERS]
    if unknown:
        raise ValueError(f"unknown RealSense filter(s) {unknown!r}; expected names from {list(FILTERS)!r}")
    return out


def make_filters(rs: ModuleType, names: Sequence[str]) -> list[Any]:
    """pyrealsense2 processing blocks in the given order."""
    factories = {
        "decimation": rs.decimation_filter,
        "spatial": rs.spatial_filter,
        "temporal": rs.temporal_filter,
        "hole_filling": rs.hole_filling_filter,
    }
    return [factories[n]() for n in check_filters(names)]


def to_intrinsics(rs_intr: Any) -> Intrinsics:
    return Intrinsics(int(rs_intr.width), int(rs_intr.height), rs_intr.fx, rs_intr.fy, rs_intr.ppx, rs_intr.ppy)


def clean_scale(scale: float) -> float:
    """librealsense stores depth units as float32: 0.0010000000474974513 -> 0.001."""
    return float(f"{scale:.7g}")


def color_to_rgb(rs: ModuleType, data: np.ndarray, fmt: Any) -> np.ndarray:
    """A colour frame's pixels (rgb8, bgr8, rgba8, bgra8, yuyv or uyvy) as a new uint8 (H, W, 3) RGB array."""
    if fmt == rs.format.rgb8:
        return np.array(data, dtype=np.uint8, copy=True)
    conversions = {
        rs.format.bgr8: cv2.COLOR_BGR2RGB,
        rs.format.rgba8: cv2.COLOR_RGBA2RGB,
        rs.format.bgra8: cv2.COLOR_BGRA2RGB,
        rs.format.yuyv: cv2.COLOR_YUV2RGB_YUYV,
        rs.format.uyvy: cv2.COLOR_YUV2RGB_UYVY,
    }
    if fmt not in conversions:
        raise UnreadableSourceError(f"unsupported colour format {fmt}; expected rgb8, bgr8, rgba8, bgra8, yuyv or uyvy")
    return np.ascontiguousarray(cv2.cvtColor(np.asarray(data), conversions[fmt]))


class RealSensePlayback(FrameSource):
    """A RealSense recording (.bag from any librealsense version, .db3 from 2.55+) as a stream of frames.

    realtime: pace frames by their timestamps (True) or deliver them as fast as they are read (False).
    filters: post-processing applied to depth, by name, in order (decimation changes the depth size).
    pair_tolerance_s: depth and colour farther apart than this are not paired (default: one frame period).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        realtime: bool = False,
        filters: Sequence[str] = (),
        pair_tolerance_s: float | None = None,
        queue_size: int = 32,
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

    def _load(self, rs: ModuleType) -> tuple[Any, Any, Any, Any, Any]:
        """(playback device, depth sensor, depth profile, colour sensor, colour profile) of the file."""
        if not self.path.is_file():
            raise UnreadableSourceError(f"RealSense recording {self.path} does not exist")
        if self.path.suffix.lower() not in RECORDING_SUFFIXES:
            raise UnreadableSourceError(f"expected a RealSense recording ending in .bag or .db3, got {self.path}")
        try:
            device = rs.context().load_device(str(self.path))
        except RuntimeError as e:
            raise UnreadableSourceError(f"cannot play back {self.path}: {e}") from e
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
                f"{self.path}: expected a depth (z16) stream and a colour stream, found {found or 'no streams'}"
            )
        return device, depth[0], depth[1], color[0], color[1]

    def _open(self) -> None:
        rs = import_pyrealsense2()
        device, depth_sensor, depth_profile, color_sensor, color_profile = self._load(rs)
        self._depth_scale = clean_scale(depth_sensor.as_depth_sensor().get_depth_scale())
        self._intrinsics = to_intrinsics(color_profile.get_intrinsics())
        self._fps = float(color_profile.fps())
        self._num_frames = None
        depth_intr = to_intrinsics(depth_profile.get_intrinsics())
        ext = depth_profile.get_extrinsics_to(color_profile)
        identity = np.allclose(ext.rotation, np.eye(3).ravel()) and np.allclose(ext.translation, 0)
        marked = UNALIGNED_MARK in depth_sensor.get_info(rs.camera_info.name)
        self._depth_aligned = depth_intr == self._intrinsics and identity and not marked and not self.filters
        slowest = min(depth_profile.fps(), color_profile.fps())
        self._tolerance = self.pair_tolerance_s or (1.0 / slowest if slowest > 0 else 0.1)
        del device

    def _frames(self) -> Iterator[Frame]:
        rs = import_pyrealsense2()
        device, depth_sensor, depth_profile, color_sensor, color_profile = self._load(rs)
        playback = device.as_playback()
        playback.set_real_time(False)
        filters = make_filters(rs, self.filters)
        items: queue.Queue[Any] = queue.Queue(maxsize=self.queue_size)
        stop = threading.Event()

        def put(item: Any) -> None:
            while not stop.is_set():
                try:
                    items.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def on_frame(f: Any) -> None:  # runs on librealsense's thread: never raise there
            try:
                if stop.is_set():
                    return
                stream = f.get_profile().stream_type()
                if stream == rs.stream.depth:
                    for block in filters:
                        f = block.process(f)
                    data = np.array(np.asanyarray(f.get_data()), dtype=np.uint16, copy=True)
                    put(("depth", Stamped(f.get_timestamp() / 1000.0, f.get_frame_number(), data)))
                elif stream == rs.stream.color:
                    rgb = color_to_rgb(rs, np.asanyarray(f.get_data()), f.get_profile().format())
                    put(("color", Stamped(f.get_timestamp() / 1000.0, f.get_frame_number(), rgb)))
            except Exception as e:  # handed to the consumer, which raises it
                put(("error", e))

        pairer: NearestPairer[np.ndarray] = NearestPairer(self._tolerance)
        guard = TimestampGuard(self.name)
        pacer = Pacer(self.realtime)
        sensors = [(depth_sensor, depth_profile), (color_sensor, color_profile)]
        started: list[Any] = []
        index = 0
        try:
            playback.pause()
            for sensor, profile in sensors:
                sensor.open(profile)
                sensor.start(on_frame)
                started.append(sensor)
            playback.resume()
            finished = False
            while not finished:
                try:
                    kind, item = items.get(timeout=0.05)
                except queue.Empty:
                    # The playback flushes every sensor's pending frames before it reports "stopped".
                    if playback.current_status() == rs.playback_status.stopped and items.empty():
                        finished = True
                    pairs = pairer.pop_pairs(final=finished)
                else:
                    if kind == "error":
                        raise UnreadableSourceError(f"{self.path}: could not decode a frame: {item}") from item
                    (pairer.push_depth if kind == "depth" else pairer.push_color)(item)
                    pairs = pairer.pop_pairs()
                for depth, color in pairs:
                    t = guard.rebase(color.timestamp)
                    if t is None:
                        continue
                    pacer.wait(t)
                    yield Frame(
                        rgb=color.data,
                        depth=depth.data,
                        depth_scale=self._depth_scale,
                        timestamp=t,
                        index=index,
                        intrinsics=self._intrinsics,
                        depth_aligned=self._depth_aligned,
                    )
                    index += 1
        finally:
            stop.set()
            for sensor in started:
                sensor.stop()
                sensor.close()
            self.unpaired_depth, self.unpaired_color, self.dropped = (
                pairer.unpaired_depth,
                pairer.unpaired_color,
                guard.dropped,
            )
            if self.unpaired_depth or self.unpaired_color:
                logger.info(
                    "%s: %s frames paired; %s depth and %s colour frames had no partner within %.3f s",
                    self.name,
                    index,
                    self.unpaired_depth,
                    self.unpaired_color,
                    self._tolerance,
                )


class RealSenseCamera(FrameSource):
    """A live RealSense camera through a pyrealsense2 pipeline (depth z16 + colour rgb8).

    serial: pick the camera by serial number (default: the first one found).
    align: map depth onto the colour image with rs.align (then depth has the colour size).
    filters: post-processing applied to depth before alignment, by name, in order.
    """

    def __init__(
        self,
        serial: str | None = None,
        *,
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        align: bool = True,
        filters: Sequence[str] = (),
        timeout_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.serial = serial
        self.width, self.height, self.rate = width, height, fps
        self.align = align
        self.filters = check_filters(filters)
        self.timeout_s = timeout_s
        self._label = f"RealSense {serial}" if serial else "RealSense"
        self._pipeline: Any = None
        self._blocks: list[Any] = []

    @property
    def name(self) -> str:
        return self._label

    def _open(self) -> None:
        rs = import_pyrealsense2()
        ctx = rs.context()
        devices = list(ctx.query_devices())
        if not devices:
            raise DeviceNotFoundError(
                "no RealSense camera found (rs.context().query_devices() is empty): connect it to a USB 3 port, "
                "install librealsense's udev rules (99-realsense-libusb.rules) and close other programs using it"
            )
        serials = [d.get_info(rs.camera_info.serial_number) for d in devices]
        if self.serial is not None and self.serial not in serials:
            raise DeviceNotFoundError(f"no RealSense camera with serial {self.serial!r}; connected: {serials!r}")
        device = devices[serials.index(self.serial) if self.serial else 0]
        serial = device.get_info(rs.camera_info.serial_number)
        self._label = f"{device.get_info(rs.camera_info.name)} {serial}"
        config = rs.config()
        config.enable_device(serial)
        config.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, self.rate)
        config.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.rate)
        pipeline = rs.pipeline(ctx)
        try:
            profile = pipeline.start(config)
        except RuntimeError as e:
            raise SourceError(
                f"{self._label}: cannot stream depth and colour at {self.width}x{self.height} {self.rate} fps: {e}"
            ) from e
        self._pipeline = pipeline
        self._depth_scale = clean_scale(profile.get_device().first_depth_sensor().get_depth_scale())
        self._intrinsics = to_intrinsics(profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics())
        self._fps = float(self.rate)
        self._num_frames = None
        self._blocks = make_filters(rs, self.filters)
        if self.align:
            self._blocks.append(rs.align(rs.stream.color))
        logger.info("%s: streaming %sx%s at %s fps", self._label, self.width, self.height, self.rate)

    def _close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.stop()
            self._pipeline = None

    def _frames(self) -> Iterator[Frame]:
        guard = TimestampGuard(self.name)
        index = 0
        while self._pipeline is not None:
            try:
                frames = self._pipeline.wait_for_frames(int(self.timeout_s * 1000))
            except RuntimeError as e:
                raise SourceError(f"{self.name}: no frames within {self.timeout_s} s ({e})") from e
            for block in self._blocks:
                frames = block.process(frames).as_frameset()
            depth, color = frames.get_depth_frame(), frames.get_color_frame()
            if not depth or not color:
                continue
            t = guard.rebase(frames.get_timestamp() / 1000.0)
            if t is None:
                continue
            yield Frame(
                rgb=np.array(np.asanyarray(color.get_data()), copy=True),
                depth=np.array(np.asanyarray(depth.get_data()), copy=True),
                depth_scale=self._depth_scale,
                timestamp=t,
                index=index,
                intrinsics=self._intrinsics,
                depth_aligned=self.align,
            )
            index += 1


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
