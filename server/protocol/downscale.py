"""Client-side downscaling for ``send_size = "model"``: resize a camera frame to the model's input size (announced
in ``welcome.model.image_size`` / ``depth_size``) before encoding it, so a stream sends ~1/16 of the pixels.

Colour: OpenCV ``INTER_AREA`` on uint8 (a box filter when shrinking: every camera pixel counts once).
Depth: a validity-aware box filter on the uint16 sensor units: each model pixel is the mean of the non-zero (valid)
readings under it, 0 where there is none, so holes neither pull a mean towards 0 nor invent near readings.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["downscale_depth", "downscale_frame", "downscale_rgb"]


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"expected a positive (H, W) target size, got {size!r}")
    return h, w


def downscale_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (h, w, 3) with INTER_AREA; returned unchanged when already (h, w)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected rgb uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    h, w = _check_size(size)
    if rgb.shape[:2] == (h, w):
        return rgb
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


def downscale_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint16 (H, W) sensor units -> uint16 (h, w): per output pixel the mean of the valid (non-zero) readings
    under it (INTER_AREA weights), 0 where none is valid. Returned unchanged when already (h, w)."""
    if depth.dtype != np.uint16 or depth.ndim != 2:
        raise ValueError(f"expected depth uint16 (H, W), got {depth.dtype} {depth.shape}")
    h, w = _check_size(size)
    if depth.shape == (h, w):
        return depth
    valid = (depth > 0).astype(np.float32)
    total = cv2.resize(depth.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)  # mean with holes as 0
    coverage = cv2.resize(valid, (w, h), interpolation=cv2.INTER_AREA)  # fraction of valid readings
    out = np.divide(total, coverage, out=np.zeros_like(total), where=coverage > 1e-6)
    return np.clip(np.rint(out), 0, 65535).astype(np.uint16)


def downscale_frame(
    rgb: np.ndarray, depth: np.ndarray, image_size: tuple[int, int], depth_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """A camera frame -> the frame a ``send_size = "model"`` stream sends (colour image_size, depth depth_size)."""
    return downscale_rgb(rgb, image_size), downscale_depth(depth, depth_size)
