"""Sessions over REST: create, list, inspect, delete, snapshot and restore."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from server.api.routes.frames import read_body
from server.deps import RuntimeDep, ServiceDep, SessionDep, SettingsDep, client_address
from server.protocol import SessionCreate, SessionList, SessionPublic

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


@router.post("", response_model=SessionPublic, status_code=status.HTTP_201_CREATED)
def create_session(stream: SessionCreate, request: Request, runtime: RuntimeDep) -> SessionPublic:
    """A session for a client that posts frames over HTTP, or that attaches a WebSocket later (hello.session_id).
    429 with ``Retry-After`` when the server (max_sessions) or this client (max_sessions_per_client) is full."""
    return runtime.registry.create(stream, client=client_address(request)).public()


@router.get("", response_model=SessionList)
async def list_sessions(service: ServiceDep) -> SessionList:
    """The sessions the server holds (on a cluster: those of every session replica)."""
    return await service.list_sessions()


@router.get("/{session_id}", response_model=SessionPublic)
def get_session(session: SessionDep) -> SessionPublic:
    return session.public()


@router.delete("/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_session(session: SessionDep, runtime: RuntimeDep) -> Response:
    """Close the session (an attached WebSocket is told and closed)."""
    runtime.registry.close(session, "deleted over REST")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{session_id}/snapshot", response_class=Response)
def snapshot_session(session: SessionDep, runtime: RuntimeDep) -> Response:
    """The session's state (stream, token window, resampler, counters) as msgpack, to restore on another replica."""
    return Response(runtime.registry.snapshot(session), media_type="application/msgpack")


@router.post("/restore", response_model=SessionPublic, status_code=status.HTTP_201_CREATED)
async def restore_session(request: Request, runtime: RuntimeDep, settings: SettingsDep) -> SessionPublic:
    """A session from a snapshot (its id is kept when free). 422 naming the field when the snapshot is invalid, 409
    when this server's frame encoder differs; a refused snapshot leaves no session behind."""
    body = await read_body(request, settings.max_message_bytes)
    return runtime.registry.restore(body, client=client_address(request)).public()
