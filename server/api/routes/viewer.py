"""The web viewer: its static page (open, it holds no data) and the preview images it shows (behind the API key).

    GET /viewer/                                   the page (server/viewer/index.html, viewer.js, viewer.css)
    GET /viewer/api/sessions/{id}/color.jpg        the session's latest used colour frame, JPEG (204 before one, and
                                                   when that frame has no colour)
    GET /viewer/api/sessions/{id}/depth.jpg        its depth frame colour-mapped (near = red, far = blue, no reading
                                                   = black), JPEG (204 before one)

Everything else the page needs comes from the REST API (sessions, long-polled predictions, model info).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import FileResponse, RedirectResponse

from server.deps import AuthGuard, RuntimeDep, SessionDep
from server.errors import ServerError
from server.protocol import ColorCodec, FrameIn, ProtocolError, decode_color, decode_depth

__all__ = ["STATIC_DIR", "depth_colormap", "router"]

STATIC_DIR = Path(__file__).resolve().parents[2] / "viewer"
_ASSETS = {"index.html": "text/html", "viewer.js": "text/javascript", "viewer.css": "text/css"}
_NO_STORE = {"Cache-Control": "no-store"}

router = APIRouter(prefix="/viewer", tags=["viewer"])


@router.get("", include_in_schema=False)
def viewer_redirect() -> RedirectResponse:
    return RedirectResponse("/viewer/")


@router.get("/", include_in_schema=False)
def viewer_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_NO_STORE)


@router.get("/{name}", include_in_schema=False)
def viewer_asset(name: str) -> FileResponse:
    if name not in _ASSETS:
        raise HTTPException(404, f"no viewer file {name!r}; expected one of {sorted(_ASSETS)}")
    return FileResponse(STATIC_DIR / name, media_type=_ASSETS[name], headers=_NO_STORE)


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


def _jpeg(bgr: np.ndarray) -> Response:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ServerError("could not encode the preview as JPEG")
    return Response(buf.tobytes(), media_type="image/jpeg", headers=_NO_STORE)


def _last_frame(session: SessionDep) -> FrameIn | None:
    frame: FrameIn | None = session.last_frame
    return frame


@router.get("/api/sessions/{session_id}/color.jpg", dependencies=[AuthGuard], response_class=Response)
def color_preview(session: SessionDep, runtime: RuntimeDep) -> Response:
    """The latest used colour frame as JPEG (sent through as is when the client sent JPEG); 204 before any."""
    msg = _last_frame(session)
    if msg is None or msg.color is None:  # none yet, or a frame without colour (depth-only or colour missing)
        return Response(status_code=204, headers=_NO_STORE)
    if msg.color_codec is ColorCodec.JPEG:
        return Response(msg.color, media_type="image/jpeg", headers=_NO_STORE)
    try:
        rgb = decode_color(msg, runtime.engine.frame_shapes(session.stream)[0])
    except ProtocolError:
        return Response(status_code=204, headers=_NO_STORE)
    return _jpeg(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@router.get("/api/sessions/{session_id}/depth.jpg", dependencies=[AuthGuard], response_class=Response)
def depth_preview(session: SessionDep, runtime: RuntimeDep) -> Response:
    """The latest used depth frame, colour-mapped, as JPEG; 204 before any."""
    msg = _last_frame(session)
    if msg is None:
        return Response(status_code=204, headers=_NO_STORE)
    scale = msg.depth_scale or session.stream.depth_scale
    try:
        depth = decode_depth(msg, runtime.engine.frame_shapes(session.stream)[1], scale)
    except ProtocolError:
        return Response(status_code=204, headers=_NO_STORE)
    return _jpeg(depth_colormap(depth, scale))
