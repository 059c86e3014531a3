"""Liveness and readiness: always open (no API key)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from server.protocol import HealthOut
from server.runtime import Runtime, server_version

router = APIRouter(tags=["health"])


def _health(request: Request) -> HealthOut:
    runtime: Runtime | None = request.app.state.runtime
    if runtime is None:
        return HealthOut(status="starting", ready=False, version=server_version())
    return HealthOut(
        status="draining" if runtime.draining else "ok",
        ready=runtime.ready,
        version=server_version(),
        model_id=runtime.engine.model_id,
        sessions=len(runtime.registry),
        details={"backend": runtime.engine.info.backend, "worker_alive": runtime.worker.alive},
    )


@router.get("/healthz", response_model=HealthOut)
def healthz(request: Request) -> HealthOut:
    """The process is up (200 even while the model loads or the server drains)."""
    return _health(request)


@router.get("/readyz", response_model=HealthOut, responses={503: {"model": HealthOut}})
def readyz(request: Request) -> JSONResponse:
    """200 when a model is loaded and sessions are accepted; 503 while starting or draining."""
    health = _health(request)
    return JSONResponse(health.model_dump(mode="json"), status_code=200 if health.ready else 503)
