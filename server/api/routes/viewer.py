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

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import FileResponse, RedirectResponse

from server.deps import AuthGuard, ServiceDep
from server.streaming.preview import PreviewKind, depth_colormap

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


@router.get("/api/sessions/{session_id}/{kind}.jpg", dependencies=[AuthGuard], response_class=Response)
async def preview(session_id: str, kind: PreviewKind, service: ServiceDep) -> Response:
    """The latest used colour frame (sent through as is when the client sent JPEG) or depth frame (colour-mapped)
    as JPEG; 204 before any, and for a frame without colour."""
    jpeg = await service.preview(session_id, kind)
    if jpeg is None:
        return Response(status_code=204, headers=_NO_STORE)
    return Response(jpeg, media_type="image/jpeg", headers=_NO_STORE)
