"""Depth-to-colour registration in numpy, for recordings whose depth is in the depth camera's geometry.

It follows librealsense's rs.align (src/proc/align.cpp, align_images): each valid depth pixel's two opposite
corners are back-projected with the depth intrinsics, moved by the depth-to-colour extrinsics and projected
with the colour intrinsics, and the depth value fills every colour pixel of that rectangle (clipped to the
image); where rectangles overlap, the nearest depth wins (rs.align's z-buffer). Lens distortion is ignored
(RealSense depth and colour streams report zero coefficients). On the D435 fixture bag the output equals
rs.align's (pyrealsense2 2.59) pixel for pixel (tests/clients/test_sources_realsense.py).
"""

from __future__ import annotations

import numpy as np

from rgbd.frame import Intrinsics

MAX_SPAN = 8  # colour pixels a depth pixel may cover along each axis (rs.align: unbounded); larger are skipped


def register_depth(
    depth: np.ndarray,
    depth_intr: Intrinsics,
    color_intr: Intrinsics,
    rotation: np.ndarray,
    translation: np.ndarray,
    depth_scale: float,
) -> np.ndarray:
    """Depth (Hd, Wd) uint16 re-sampled onto the colour image grid (Hc, Wc) uint16; 0 where nothing projects.

    rotation (3, 3) and translation (3,) in metres map depth-camera points to colour-camera points.
    """
    if depth.dtype != np.uint16 or depth.shape != (depth_intr.height, depth_intr.width):
        raise ValueError(
            f"expected depth uint16 {(depth_intr.height, depth_intr.width)}, got {depth.dtype} {depth.shape}"
        )
    f32 = np.float32  # single precision throughout, as librealsense computes, so results match it bit for bit
    v, u = np.nonzero(depth)
    z = depth[v, u].astype(f32) * f32(depth_scale)
    rot, trans = rotation.astype(f32), translation.astype(f32)
    w, h = color_intr.width, color_intr.height
    corners = []
    for off in (-0.5, 0.5):
        x = ((u + off).astype(f32) - f32(depth_intr.cx)) / f32(depth_intr.fx) * z
        y = ((v + off).astype(f32) - f32(depth_intr.cy)) / f32(depth_intr.fy) * z
        p = rot @ np.stack([x, y, z]) + trans[:, None]  # (3, N) in the colour camera
        with np.errstate(divide="ignore", invalid="ignore"):
            cu = np.trunc(p[0] / p[2] * f32(color_intr.fx) + f32(color_intr.cx) + f32(0.5))  # static_cast<int>
            cv = np.trunc(p[1] / p[2] * f32(color_intr.fy) + f32(color_intr.cy) + f32(0.5))
        corners.append((cu, cv))
    (x0, y0), (x1, y1) = corners
    with np.errstate(invalid="ignore"):
        ok = (x1 >= 0) & (y1 >= 0) & (x0 < w) & (y0 < h) & (x1 - x0 < MAX_SPAN) & (y1 - y0 < MAX_SPAN)
    raw = depth[v, u][ok].astype(np.uint32)  # the dtype of `out`: np.minimum.at is slow when it must cast
    x0, y0 = np.maximum(x0[ok], 0).astype(np.int64), np.maximum(y0[ok], 0).astype(np.int64)
    x1, y1 = np.minimum(x1[ok], w - 1).astype(np.int64), np.minimum(y1[ok], h - 1).astype(np.int64)
    empty = np.iinfo(np.uint32).max  # a sentinel no uint16 depth reaches
    out = np.full(h * w, empty, np.uint32)
    span_x, span_y = x1 - x0, y1 - y0
    base = y0 * w + x0
    for dy in range(int(span_y.max(initial=0)) + 1):
        for dx in range(int(span_x.max(initial=0)) + 1):
            sel = (span_x >= dx) & (span_y >= dy)
            np.minimum.at(out, base[sel] + (dy * w + dx), raw[sel])
    out[out == empty] = 0
    return out.astype(np.uint16).reshape(h, w)


def scale_intrinsics(intr: Intrinsics, shape: tuple[int, ...]) -> Intrinsics:
    """Intrinsics of an image resized (e.g. decimated) from intr's size to `shape` (H, W)."""
    h, w = shape[:2]
    if (h, w) == (intr.height, intr.width):
        return intr
    sx, sy = w / intr.width, h / intr.height
    return Intrinsics(w, h, intr.fx * sx, intr.fy * sy, (intr.cx + 0.5) * sx - 0.5, (intr.cy + 0.5) * sy - 0.5)
