"""The viewer's preview images of a session's latest used frame (GET /viewer/api/sessions/{id}/color.jpg and
depth.jpg), rendered where the session lives: in the process (one r3d-serve) or on its session replica (a cluster)."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from server.errors import ServerError
from server.protocol import ColorCodec, FrameIn, ProtocolError, decode_color, decode_depth

PreviewKind = Literal["color", "depth"]


def depth_colormap(depth: np.ndarray, depth_scale: float, near_m: float = 0.3, far_m: float = 8.0) -> np.ndarray:
    """uint16 depth in sensor units -> BGR uint8 image: near = red, far = blue (TURBO), no reading = black.

    The colour range spans the frame's own valid depths (its 2nd to 98th percentile within [near_m, far_m])."""
    metres = depth.astype(np.float32) * depth_scale
    valid = (metres >= near_m) & (metres <= far_m)
    out = np.zeros((*depth.shape, 3), np.uint8)
    if not valid.any():
        return out
    lo, hi = np.percentile(metres[valid], [2, 98])
    scaled = np.clip((metres - lo) / max(float(hi - lo), 1e-3), 0.0, 1.0)
    levels = (255 * (1.0 - scaled)).astype(np.uint8)  # TURBO maps 255 to red: near
    coloured = cv2.applyColorMap(levels, cv2.COLORMAP_TURBO)
    out[valid] = coloured[valid]
    return out


def _jpeg(bgr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ServerError("could not encode the preview as JPEG")
    return bytes(buf.tobytes())


def render_preview(
    msg: FrameIn | None, kind: PreviewKind, shapes: tuple[tuple[int, int], tuple[int, int]], depth_scale: float
) -> bytes | None:
    """A frame as received -> the preview JPEG: its colour (sent through as is when the client sent JPEG) or its
    depth colour-mapped; None before any frame, for a frame without colour, or one that does not decode."""
    if msg is None:
        return None
    try:
        if kind == "color":
            if msg.color is None:  # a frame without colour (depth-only, or colour missing)
                return None
            if msg.color_codec is ColorCodec.JPEG:
                return msg.color
            return _jpeg(cv2.cvtColor(decode_color(msg, shapes[0]), cv2.COLOR_RGB2BGR))
        scale = msg.depth_scale or depth_scale
        return _jpeg(depth_colormap(decode_depth(msg, shapes[1], scale), scale))
    except ProtocolError:
        return None
