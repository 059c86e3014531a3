"""`record_db3`: write frames to a RealSense .db3 recording through a pyrealsense2 software device and recorder
(docs/sources.md, the record_db3 paragraph). `RealSensePlayback` reads such files back bit-exactly."""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from rgbd.frame import Frame, Intrinsics
from rgbd.registration import scale_intrinsics
from rgbd.rs_common import UNALIGNED_MARK, import_pyrealsense2

logger = logging.getLogger(__name__)


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
    (h, w), (dh, dw) = first.color().shape[:2], first.depth.shape  # .db3 recordings carry a colour stream
    color_intr = first.intrinsics or default_intrinsics(w, h)
    depth_intr = scale_intrinsics(color_intr, (dh, dw))
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
            if frame.color().shape != first.color().shape or frame.depth.shape != first.depth.shape:
                raise ValueError(
                    f"frame {count}: expected rgb {first.color().shape} and depth {first.depth.shape} like the first "
                    f"frame, got rgb {frame.color().shape} and depth {frame.depth.shape}"
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
