"""Frames and predictions over HTTP, for clients that cannot hold a WebSocket."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request, Response, status

from server.deps import RuntimeDep, ServiceDep, SessionDep, SettingsDep
from server.protocol import AnticipationOut, ErrorCode, FrameAck, FrameIn, ProtocolError, parse_client_message
from server.streaming.ingest import ingest_frame

router = APIRouter(prefix="/v1/sessions", tags=["frames"])

FRAME_SCHEMA = {"$ref": "#/components/schemas/FrameIn"}
MSGPACK_BODY = {"requestBody": {"required": True, "content": {"application/msgpack": {"schema": FRAME_SCHEMA}}}}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with message_too_large as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProtocolError(
            ErrorCode.MESSAGE_TOO_LARGE, f"expected a body of at most {limit} bytes, got {int(declared)} bytes"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProtocolError(ErrorCode.MESSAGE_TOO_LARGE, f"expected a body of at most {limit} bytes, got more")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/{session_id}/frames", response_model=FrameAck, status_code=status.HTTP_202_ACCEPTED, openapi_extra=MSGPACK_BODY
)
async def post_frame(request: Request, session: SessionDep, runtime: RuntimeDep, settings: SettingsDep) -> FrameAck:
    """One ``frame`` message (msgpack body, as on the WebSocket). 202 when queued or skipped by resampling."""
    t_recv = time.perf_counter()
    body = await read_body(request, settings.max_message_bytes)
    msg = parse_client_message(body)
    if not isinstance(msg, FrameIn):
        raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE_TYPE, f"expected a 'frame' message, got {msg.type!r}")
    frame_status = await ingest_frame(
        session, msg, t_recv, worker=runtime.worker, pool=runtime.decode_pool, metrics=runtime.metrics
    )
    return FrameAck(seq=msg.seq, status=frame_status, queue_depth=session.queue_depth(), counters=session.counters())


@router.get("/{session_id}/prediction", response_model=AnticipationOut, responses={204: {"description": "none yet"}})
async def latest_prediction(
    session_id: str,
    service: ServiceDep,
    after: int = Query(-1, description="only a prediction with seq > after"),
    timeout_s: float = Query(0.0, ge=0, le=30, description="wait up to this long for one"),
) -> Response | AnticipationOut:
    """The session's latest prediction; with ``after`` and ``timeout_s`` a long poll for the next one."""
    prediction = await service.prediction(session_id, after, timeout_s)
    if prediction is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return prediction
