"""Liveness and readiness: always open (no API key)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from server.protocol import HealthOut
from server.runtime import Service, server_version

router = APIRouter(tags=["health"])


def _health(request: Request) -> HealthOut:
    service: Service | None = request.app.state.runtime
    if service is None:
        return HealthOut(status="starting", ready=False, version=server_version())
    return service.health()


@router.get("/healthz", response_model=HealthOut)
def healthz(request: Request) -> HealthOut:
    """The process is up (200 even while the model loads or the server drains)."""
    return _health(request)


@router.get("/readyz", response_model=HealthOut, responses={503: {"model": HealthOut}})
def readyz(request: Request) -> JSONResponse:
    """200 when a model is loaded and sessions are accepted; 503 while starting or draining."""
    health = _health(request)
    return JSONResponse(health.model_dump(mode="json"), status_code=200 if health.ready else 503)
