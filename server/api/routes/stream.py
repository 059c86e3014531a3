"""The streaming WebSocket route ``/v1/stream`` (docs/protocol.md): accepts the socket, checks that the model is
loaded, and hands the connection to server.streaming.StreamConnection with this route's auth guard.
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from server.deps import check_key, presented_key
from server.errors import close_code
from server.protocol import ErrorCode, ErrorOut, pack
from server.runtime import Service
from server.settings import Settings

router = APIRouter(tags=["streaming"])


@router.websocket("/v1/stream")
async def stream(ws: WebSocket) -> None:
    """Streaming session (protocol v1, docs/protocol.md). Authenticate with a header or ``?api_key=``."""
    service: Service | None = ws.app.state.runtime
    await ws.accept()
    if service is None:
        body = ErrorOut(code=ErrorCode.NOT_READY, message="the model is still loading; retry shortly", fatal=True)
        await ws.send_bytes(pack(body))
        await ws.close(close_code(ErrorCode.NOT_READY))
        return
    settings: Settings = ws.app.state.settings
    await service.connection(ws, authorize=lambda: check_key(settings, presented_key(ws, allow_query=True))).run()
