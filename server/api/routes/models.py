"""The model in use, the models an admin may switch to, and reloading without dropping sessions."""

from __future__ import annotations

from fastapi import APIRouter

from server.deps import AdminGuard, ServiceDep, SettingsDep
from server.model_store import available_models
from server.protocol import ModelInfo, ModelList, ReloadOut, ReloadRequest

router = APIRouter(prefix="/v1/model", tags=["model"])
admin_router = APIRouter(prefix="/v1/model", tags=["model"], dependencies=[AdminGuard])


@router.get("", response_model=ModelInfo)
def model_info(service: ServiceDep) -> ModelInfo:
    """Classes, fps, window, horizon, the backend actually in use and the server version."""
    return service.info


@admin_router.get("/available", response_model=ModelList)
def list_models(service: ServiceDep, settings: SettingsDep) -> ModelList:
    """The model ids a reload may name: the entries of the server's ``models_dir`` (admin key)."""
    return ModelList(current=service.info.model_id, available=available_models(settings.models_dir))


@admin_router.post("/reload", response_model=ReloadOut)
async def reload_model(request: ReloadRequest, service: ServiceDep) -> ReloadOut:
    """Load a model of ``models_dir`` by id (default: the current model's files again) and switch sessions to it
    (admin key). Token windows are kept when the new model has the same frame encoder, otherwise reset with a
    ``window_reset`` notice. On failure the old model keeps serving."""
    return await service.reload(request.model, request.backend)
