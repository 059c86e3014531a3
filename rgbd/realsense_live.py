"""A live Intel RealSense camera through a pyrealsense2 pipeline (needs a connected camera)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from rgbd.base import DeviceNotFoundError, FrameSource, SourceError, TimestampGuard
from rgbd.frame import Frame
from rgbd.rs_common import check_filters, clean_scale, import_pyrealsense2, make_filters, to_intrinsics

logger = logging.getLogger(__name__)


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
