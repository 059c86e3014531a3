"""Helpers shared by the RealSense sources: importing pyrealsense2, filters by name, intrinsics, colour formats."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from rgbd.base import MissingDependencyError, UnreadableSourceError
from rgbd.frame import Intrinsics

FILTERS = ("decimation", "spatial", "temporal", "hole_filling")
UNALIGNED_MARK = "(not aligned to colour)"  # in the depth sensor name of record_db3 files with unaligned depth


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
