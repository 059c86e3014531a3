"""Client-side downscaling for ``send_size = "model"``: resize a camera frame to the model's input size (announced
in ``welcome.model.image_size`` / ``depth_size``) before encoding it, so a stream sends ~1/16 of the pixels.

Colour: OpenCV ``INTER_AREA`` on uint8 (a box filter when shrinking: every camera pixel counts once).
Depth: the validity-aware ``INTER_AREA`` resize of the model's own input path (model.preprocess.prepare_depth; this
module cannot import it, tests/server/test_send_size.py holds the two to the same output): a reading is valid when
non-zero and, given the depth scale and the model's valid range (``welcome.model.depth_range_m``), inside it; each
model pixel is the mean of the valid metres under it, and a hole (0) where fewer than half of them are valid.
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


def downscale_depth(
    depth: np.ndarray,
    size: tuple[int, int],
    depth_scale: float = 1.0,
    valid_range_m: tuple[float, float] | None = None,
) -> np.ndarray:
    """uint16 (H, W) sensor units -> uint16 (h, w): per output pixel the mean of the valid readings under it
    (INTER_AREA weights), 0 where fewer than half are valid. Valid: non-zero, and within ``valid_range_m`` metres
    (readings times ``depth_scale``) when given. Returned unchanged when already (h, w)."""
    if depth.dtype != np.uint16 or depth.ndim != 2:
        raise ValueError(f"expected depth uint16 (H, W), got {depth.dtype} {depth.shape}")
    if not depth_scale > 0:
        raise ValueError(f"expected a positive depth scale (metres per unit), got {depth_scale!r}")
    h, w = _check_size(size)
    if depth.shape == (h, w):
        return depth
    metres = depth.astype(np.float32) * np.float32(depth_scale)
    valid = depth > 0
    if valid_range_m is not None:
        valid &= (metres >= valid_range_m[0]) & (metres <= valid_range_m[1])
    valid_f = valid.astype(np.float32)
    fraction = cv2.resize(valid_f, (w, h), interpolation=cv2.INTER_AREA)
    total = cv2.resize(metres * valid_f, (w, h), interpolation=cv2.INTER_AREA)
    mean = np.divide(total, fraction, out=np.zeros_like(total), where=fraction >= 0.5)
    return np.clip(np.rint(mean / np.float32(depth_scale)), 0, 65535).astype(np.uint16)


def downscale_frame(
    rgb: np.ndarray | None,
    depth: np.ndarray,
    image_size: tuple[int, int],
    depth_size: tuple[int, int],
    depth_scale: float = 1.0,
    valid_range_m: tuple[float, float] | None = None,
) -> tuple[np.ndarray | None, np.ndarray]:
    """A camera frame -> the frame a ``send_size = "model"`` stream sends (colour image_size, depth depth_size);
    rgb None (a depth-only camera) stays None."""
    rgb_out = None if rgb is None else downscale_rgb(rgb, image_size)
    return rgb_out, downscale_depth(depth, depth_size, depth_scale, valid_range_m)
