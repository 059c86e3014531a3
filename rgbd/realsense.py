"""Intel RealSense recordings: playback of .bag / .db3 files without dropping frames (`RealSensePlayback`), and
`record_db3`, which writes frames to a .db3 recording through a software device. The live camera is
`RealSenseCamera` (rgbd.realsense_live, re-exported here).

Playback follows the usual recipe (load the device from the file, real-time off, pause, open and start the sensor,
resume; docs/sources.md, "RealSense playback without losing frames") with one change: each stream gets its own
playback device. With both sensors of one
device, the reader sometimes starts reading the first stream before the second is enabled and then skips the
second stream's frames that are older than what it has read (measured: the colour frame of the D435 fixture
bag was lost in 7 of 40 playbacks; 0 of 100 with a device per stream). Frames reach a Python callback that
copies them into a bounded queue and blocks while it is full, so a slow consumer slows the non-real-time
playback down instead of losing frames. The two streams are merged by timestamp and paired one-to-one by
nearest timestamp (`NearestPairer`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from rgbd.base import FrameSource, Pacer, TimestampGuard, UnreadableSourceError
from rgbd.frame import Frame, Intrinsics
from rgbd.pairing import NearestPairer, Stamped
from rgbd.realsense_live import RealSenseCamera
from rgbd.realsense_record import default_intrinsics, record_db3
from rgbd.registration import register_depth, scale_intrinsics
from rgbd.rs_common import (
    FILTERS,
    UNALIGNED_MARK,
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
        self._resumer: threading.Thread | None = None
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
        # resume() waits for the reader thread, which blocks once our queue is full: call it off this thread,
        # or the consumer cannot drain the queue and resume() gives up only after librealsense's 10 s timeout.
        self._resumer = threading.Thread(target=self.playback.resume, name=f"rs-resume-{self.kind}", daemon=True)
        self._resumer.start()

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
        self.cancel.set()  # frame callbacks now return at once, so the reader and resume() finish
        if self._resumer is not None:
            self._resumer.join()
            self._resumer = None
        if self.started:
            self.started = False
            self.sensor.stop()
            self.sensor.close()
        # release the playback device now rather than at interpreter exit
        self.sensor = self.profile = self.playback = self.device = self.ctx = None


class RealSensePlayback(FrameSource):
    """A RealSense recording (.bag from any librealsense version, .db3 from 2.55+) as a stream of frames.

    realtime: pace frames by their timestamps (True) or deliver them as fast as they are read (False).
    filters: post-processing applied to depth, by name, in order (decimation changes the depth size).
    pair_tolerance_s: depth and colour farther apart than this are not paired (default: one frame period).
    align: register depth onto the colour image (numpy, `register_depth`; parity with rs.align measured on the
    D435 fixture: same valid pixels, 99.95% equal values, all within 1%); default: depth as recorded.
    queue_size: frames buffered per stream ahead of the consumer.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        realtime: bool = False,
        filters: Sequence[str] = (),
        pair_tolerance_s: float | None = None,
        align: bool = False,
        queue_size: int = 16,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.realtime = realtime
        self.filters = check_filters(filters)
        self.pair_tolerance_s = pair_tolerance_s
        self.queue_size = queue_size
        self.align = align
        self.unpaired_depth = 0
        self.unpaired_color = 0
        self.dropped = 0
        self._depth_aligned = False
        self._tolerance = 0.1
        self._depth_intrinsics: Intrinsics | None = None
        self._extrinsics = (np.eye(3), np.zeros(3))

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
            rotation = np.array(ext.rotation, dtype=np.float64).reshape(3, 3).T  # librealsense: column-major
            self._extrinsics = (rotation, np.array(ext.translation, dtype=np.float64))
        except RuntimeError:  # no extrinsics recorded: equal intrinsics decide
            self._extrinsics = (np.eye(3), np.zeros(3))
        identity = np.allclose(self._extrinsics[0], np.eye(3)) and np.allclose(self._extrinsics[1], 0)
        marked = UNALIGNED_MARK in depth_sensor.get_info(rs.camera_info.name)
        if self.align and marked:
            raise UnreadableSourceError(
                f"{self.path}: cannot align depth to colour: it was recorded unaligned without the depth camera's "
                "calibration (record_db3 of frames with depth_aligned=False); open it with align=False"
            )
        self._depth_intrinsics = depth_intr
        self._depth_aligned = depth_intr == self._intrinsics and identity and not marked
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
        data = depth.data
        assert self._intrinsics is not None and self._depth_intrinsics is not None
        color_shape = (self._intrinsics.height, self._intrinsics.width)
        aligned = self._depth_aligned and data.shape == color_shape
        if self.align and not aligned:
            rotation, translation = self._extrinsics
            depth_intr = scale_intrinsics(self._depth_intrinsics, data.shape)
            data = register_depth(data, depth_intr, self._intrinsics, rotation, translation, self._depth_scale)
            aligned = True
        return Frame(
            rgb=color.data,
            depth=data,
            depth_scale=self._depth_scale,
            timestamp=t,
            index=index,
            intrinsics=self._intrinsics,
            depth_aligned=aligned,
        )
