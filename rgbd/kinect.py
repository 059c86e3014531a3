"""Azure Kinect sources: playback of k4arecorder .mkv files with PyAV (no Azure Kinect SDK needed), and a live
camera through pyk4a when it and the SDK are installed.

A k4arecorder file is Matroska with tracks titled COLOR (MJPEG, or raw NV12 / YUY2 / BGRA), DEPTH and IR
(16-bit big-endian, codec tag b16g, millimetres), IMU, and a calibration.json attachment. Colour and depth of one
capture are paired by presentation time. Depth in a raw recording is in the depth camera's geometry: it is not
aligned to colour (another size, another viewpoint), so frames have depth_aligned=False and the colour camera's
intrinsics. Intrinsics follow the SDK's mode-specific calibration (Azure-Kinect-Sensor-SDK,
src/transformation/mode_specific_calibration.c).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rgbd.base import (
    DeviceNotFoundError,
    FrameSource,
    MissingDependencyError,
    Pacer,
    SourceError,
    TimestampGuard,
    UnreadableSourceError,
)
from rgbd.frame import Frame, Intrinsics
from rgbd.pairing import NearestPairer, Stamped

logger = logging.getLogger(__name__)

KINECT_DEPTH_SCALE = 0.001  # millimetres
# resolution -> (binned width, binned height, crop x, crop y, output width, output height) over the 4:3 sensor
COLOR_MODES = {
    "720P": (1280, 960, 0, 120, 1280, 720),
    "1080P": (1920, 1440, 0, 180, 1920, 1080),
    "1440P": (2560, 1920, 0, 240, 2560, 1440),
    "1536P": (2048, 1536, 0, 0, 2048, 1536),
    "2160P": (3840, 2880, 0, 360, 3840, 2160),
    "3072P": (4096, 3072, 0, 0, 4096, 3072),
}
DEPTH_MODES = {
    "NFOV_2X2BINNED": (512, 512, 96, 90, 320, 288),
    "NFOV_UNBINNED": (1024, 1024, 192, 180, 640, 576),
    "WFOV_2X2BINNED": (512, 512, 0, 0, 512, 512),
    "WFOV_UNBINNED": (1024, 1024, 0, 0, 1024, 1024),
    "PASSIVE_IR": (1024, 1024, 0, 0, 1024, 1024),
}
PURPOSES = {"color": "CALIBRATION_CameraPurposePhotoVideo", "depth": "CALIBRATION_CameraPurposeDepth"}


def k4a_intrinsics(calibration: dict[str, Any], camera: str, mode: str) -> Intrinsics:
    """Pixel intrinsics (OpenCV convention) of `camera` ('color' or 'depth') in `mode` ('720P', 'NFOV_UNBINNED'),
    from the raw calibration.json of a device (unitised, zero-cornered parameters over the full sensor)."""
    modes = COLOR_MODES if camera == "color" else DEPTH_MODES
    if mode not in modes:
        raise ValueError(f"unknown Azure Kinect {camera} mode {mode!r}; expected one of {sorted(modes)!r}")
    cams = [c for c in calibration["CalibrationInformation"]["Cameras"] if c.get("Purpose") == PURPOSES[camera]]
    if not cams:
        raise ValueError(f"the calibration has no {PURPOSES[camera]} camera")
    cam = cams[0]
    cx, cy, fx, fy = (float(v) for v in cam["Intrinsics"]["ModelParameters"][:4])
    sw, sh = int(cam["SensorWidth"]), int(cam["SensorHeight"])
    if camera == "color" and sw * 9 // 16 == sh:  # legacy 16:9 calibration: re-express over the 4:3 sensor
        cy, fy = (cy * 2304 + 384) / 3072, fy * 2304 / 3072
    bw, bh, ox, oy, ow, oh = modes[mode]
    return Intrinsics(ow, oh, fx * bw, fy * bh, cx * bw - ox - 0.5, cy * bh - oy - 0.5)


def _decode_color(fmt: str, payload: bytes, width: int, height: int) -> np.ndarray:
    if fmt == "MJPG":
        bgr = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UnreadableSourceError("a COLOR packet is not a decodable JPEG")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    raw = np.frombuffer(payload, np.uint8)
    shapes = {"BGRA": (height, width, 4), "NV12": (height * 3 // 2, width), "YUY2": (height, width, 2)}
    codes = {"BGRA": cv2.COLOR_BGRA2RGB, "NV12": cv2.COLOR_YUV2RGB_NV12, "YUY2": cv2.COLOR_YUV2RGB_YUY2}
    if fmt not in shapes:
        raise UnreadableSourceError(f"unsupported Azure Kinect colour format {fmt!r}; expected MJPG, BGRA, NV12, YUY2")
    if raw.size != int(np.prod(shapes[fmt])):
        raise UnreadableSourceError(f"expected a {fmt} colour packet of {np.prod(shapes[fmt])} bytes, got {raw.size}")
    return np.ascontiguousarray(cv2.cvtColor(raw.reshape(shapes[fmt]), codes[fmt]))


def _import_av() -> Any:
    try:
        import av
    except ImportError as e:
        raise MissingDependencyError(f"Azure Kinect .mkv playback needs PyAV: pip install av ({e})") from e
    return av


class KinectRecording(FrameSource):
    """A k4arecorder .mkv file as a stream of frames (colour RGB, raw depth in mm, colour intrinsics).

    calibration: a calibration.json to use when the file has no calibration attachment.
    realtime: pace frames by their timestamps instead of delivering them as fast as they decode.
    """

    def __init__(self, path: str | Path, *, calibration: str | Path | None = None, realtime: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.calibration_path = Path(calibration) if calibration else None
        self.realtime = realtime
        self.calibration: dict[str, Any] | None = None
        self.depth_intrinsics: Intrinsics | None = None
        self.color_format = "MJPG"
        self.unpaired_depth = 0
        self.unpaired_color = 0
        self._tracks: dict[str, int] = {}
        self._sizes: dict[str, tuple[int, int]] = {}

    @property
    def name(self) -> str:
        return self.path.name

    def _container(self) -> Any:
        av = _import_av()
        if not self.path.is_file():
            raise UnreadableSourceError(f"Azure Kinect recording {self.path} does not exist")
        try:
            return av.open(str(self.path))
        except av.FFmpegError as e:
            raise UnreadableSourceError(f"cannot read {self.path} as Matroska: {e}") from e

    def _open(self) -> None:
        with self._container() as container:
            modes: dict[str, str] = {}
            for s in container.streams:
                title = (s.metadata or {}).get("title", "")
                if s.type == "video" and title in ("COLOR", "DEPTH"):
                    key = title.lower()
                    self._tracks[key] = s.index
                    self._sizes[key] = (s.codec_context.width, s.codec_context.height)
                    modes[key] = s.metadata.get(f"K4A_{title}_MODE", "")
                    if key == "color":
                        self._fps = float(s.average_rate or s.guessed_rate or 0) or None
                        self._num_frames = s.frames or None
                elif s.type == "attachment" and s.name == "calibration.json":
                    self.calibration = json.loads(bytes(s.data))
        missing = [t.upper() for t in ("color", "depth") if t not in self._tracks]
        if missing:
            raise UnreadableSourceError(
                f"{self.path} is not an Azure Kinect RGB-D recording: no {' or '.join(missing)} track "
                f"(expected k4arecorder tracks titled COLOR and DEPTH)"
            )
        fmt, _, resolution = modes["color"].partition("_")
        self.color_format = fmt or "MJPG"
        self._depth_scale = KINECT_DEPTH_SCALE
        if self.calibration is None:
            self.calibration = self._calibration_file()
        if self.calibration is not None:
            self._intrinsics = self._safe_intrinsics("color", resolution)
            self.depth_intrinsics = self._safe_intrinsics("depth", modes["depth"])
        else:
            logger.warning("%s: no calibration attachment or calibration.json; intrinsics unknown", self.name)

    def _calibration_file(self) -> dict[str, Any] | None:
        candidates = [self.calibration_path] if self.calibration_path else [self.path.parent / "calibration.json"]
        for path in candidates:
            if path is not None and path.is_file():
                return dict(json.loads(path.read_text()))
        if self.calibration_path is not None:
            raise UnreadableSourceError(f"calibration file {self.calibration_path} does not exist")
        return None

    def _safe_intrinsics(self, camera: str, mode: str) -> Intrinsics | None:
        assert self.calibration is not None
        try:
            return k4a_intrinsics(self.calibration, camera, mode)
        except (KeyError, ValueError, TypeError, IndexError) as e:
            logger.warning("%s: cannot compute %s intrinsics for mode %r: %s", self.name, camera, mode, e)
            return None

    def _frames(self) -> Iterator[Frame]:
        period = 1.0 / self._fps if self._fps else 1.0 / 30
        pairer: NearestPairer[bytes] = NearestPairer(0.5 * period)
        guard = TimestampGuard(self.name)
        pacer = Pacer(self.realtime)
        kinds = {v: k for k, v in self._tracks.items()}
        (cw, ch), (dw, dh) = self._sizes["color"], self._sizes["depth"]
        index = 0
        with self._container() as container:
            streams = [container.streams[i] for i in self._tracks.values()]
            packets = container.demux(streams)
            finished = False
            while not finished:
                packet = next(packets, None)
                finished = packet is None
                if packet is not None:
                    if packet.size == 0 or packet.pts is None:
                        continue
                    t = float(packet.pts * packet.time_base)
                    item = Stamped(t, 0, bytes(packet))
                    (pairer.push_color if kinds[packet.stream.index] == "color" else pairer.push_depth)(item)
                for depth, color in pairer.pop_pairs(final=finished):
                    if len(depth.data) != dw * dh * 2:
                        raise UnreadableSourceError(
                            f"{self.path}: expected a DEPTH packet of {dw}x{dh} 16-bit pixels ({dw * dh * 2} bytes), "
                            f"got {len(depth.data)} bytes"
                        )
                    ts = guard.rebase(color.timestamp)
                    if ts is None:
                        continue
                    pacer.wait(ts)
                    yield Frame(
                        rgb=_decode_color(self.color_format, color.data, cw, ch),
                        depth=np.frombuffer(depth.data, ">u2").reshape(dh, dw).astype(np.uint16),
                        depth_scale=self._depth_scale,
                        timestamp=ts,
                        index=index,
                        intrinsics=self._intrinsics,
                        depth_aligned=False,
                    )
                    index += 1
        self.unpaired_depth, self.unpaired_color = pairer.unpaired_depth, pairer.unpaired_color
        if self.unpaired_depth or self.unpaired_color:
            logger.info(
                "%s: %s captures; %s depth and %s colour images without a partner",
                self.name,
                index,
                self.unpaired_depth,
                self.unpaired_color,
            )


class KinectCamera(FrameSource):
    """A live Azure Kinect through pyk4a (needs the Azure Kinect Sensor SDK, libk4a).

    align: use the SDK's depth-to-colour transformation (depth then has the colour size and geometry).
    """

    def __init__(
        self,
        device_id: int = 0,
        *,
        color_resolution: str = "720P",
        depth_mode: str = "NFOV_UNBINNED",
        fps: int = 30,
        align: bool = True,
        timeout_s: float = 5.0,
    ) -> None:
        super().__init__()
        if color_resolution not in COLOR_MODES:
            raise ValueError(f"expected a colour resolution in {sorted(COLOR_MODES)!r}, got {color_resolution!r}")
        if depth_mode not in DEPTH_MODES:
            raise ValueError(f"expected a depth mode in {sorted(DEPTH_MODES)!r}, got {depth_mode!r}")
        if fps not in (5, 15, 30):
            raise ValueError(f"expected an Azure Kinect frame rate of 5, 15 or 30, got {fps!r}")
        self.device_id = device_id
        self.color_resolution, self.depth_mode, self.rate = color_resolution, depth_mode, fps
        self.align = align
        self.timeout_s = timeout_s
        self._device: Any = None

    @property
    def name(self) -> str:
        return f"Azure Kinect {self.device_id}"

    def _open(self) -> None:
        try:
            import pyk4a
        except ImportError as e:
            raise MissingDependencyError(
                "Azure Kinect live capture needs pyk4a and the Azure Kinect Sensor SDK: install libk4a1.4 and "
                f"libk4a1.4-dev from packages.microsoft.com, then pip install pyk4a ({e})"
            ) from e
        count = pyk4a.connected_device_count()
        if count <= self.device_id:
            raise DeviceNotFoundError(f"no Azure Kinect with index {self.device_id}: {count} connected")
        config = pyk4a.Config(
            color_resolution=getattr(pyk4a.ColorResolution, f"RES_{self.color_resolution}"),
            depth_mode=getattr(pyk4a.DepthMode, self.depth_mode),
            camera_fps=getattr(pyk4a.FPS, f"FPS_{self.rate}"),
            color_format=pyk4a.ImageFormat.COLOR_BGRA32,
            synchronized_images_only=True,
        )
        device = pyk4a.PyK4A(config=config, device_id=self.device_id)
        try:
            device.start()
        except Exception as e:  # pyk4a raises its own K4AException
            raise SourceError(f"{self.name}: cannot start capture: {e}") from e
        self._device = device
        k = device.calibration.get_camera_matrix(pyk4a.CalibrationType.COLOR)
        w, h = COLOR_MODES[self.color_resolution][4:]
        self._intrinsics = Intrinsics(w, h, float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))
        self._depth_scale = KINECT_DEPTH_SCALE
        self._fps = float(self.rate)
        self._num_frames = None

    def _close(self) -> None:
        if self._device is not None:
            self._device.stop()
            self._device = None

    def _frames(self) -> Iterator[Frame]:
        guard = TimestampGuard(self.name)
        index = 0
        while self._device is not None:
            try:
                capture = self._device.get_capture(timeout=int(self.timeout_s * 1000))
            except Exception as e:
                raise SourceError(f"{self.name}: no capture within {self.timeout_s} s ({e})") from e
            depth = capture.transformed_depth if self.align else capture.depth
            if capture.color is None or depth is None:
                continue
            t = guard.rebase(capture.color_timestamp_usec / 1e6)
            if t is None:
                continue
            yield Frame(
                rgb=cv2.cvtColor(capture.color, cv2.COLOR_BGRA2RGB),
                depth=np.ascontiguousarray(depth, dtype=np.uint16),
                depth_scale=self._depth_scale,
                timestamp=t,
                index=index,
                intrinsics=self._intrinsics,
                depth_aligned=self.align,
            )
            index += 1
