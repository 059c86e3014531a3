"""The model in use, and reloading it without dropping sessions."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from server.deps import RuntimeDep
from server.protocol import ModelInfo, ReloadOut, ReloadRequest

router = APIRouter(prefix="/v1/model", tags=["model"])


@router.get("", response_model=ModelInfo)
def model_info(runtime: RuntimeDep) -> ModelInfo:
    """Classes, fps, window, horizon, the backend actually in use and the server version."""
    return runtime.engine.info


@router.post("/reload", response_model=ReloadOut)
async def reload_model(request: ReloadRequest, runtime: RuntimeDep) -> ReloadOut:
    """Load a model (default: the current file again) and switch sessions to it. Token windows are kept when the
    new model has the same frame encoder, otherwise reset with a ``window_reset`` notice. On failure the old model
    keeps serving."""
    return await runtime.reload(Path(request.path) if request.path else None, request.backend)
