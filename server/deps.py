"""FastAPI dependencies: the runtime, the settings, the session named in the path, and the API-key guard."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from pydantic import SecretStr
from starlette.requests import HTTPConnection

from server.errors import AuthError, Forbidden, NotReady, NotSupported
from server.runtime import Runtime, Service
from server.settings import Settings
from server.streaming.session import Session


def get_settings(conn: HTTPConnection) -> Settings:
    settings: Settings = conn.app.state.settings
    return settings


def get_service(conn: HTTPConnection) -> Service:
    service: Service | None = conn.app.state.runtime
    if service is None:
        raise NotReady("the model is still loading; retry when /readyz answers 200")
    return service


def get_runtime(conn: HTTPConnection) -> Runtime:
    """The process's own runtime, for the routes that work on sessions held in this process (REST sessions and
    frames); a cluster's ingress holds none and answers 501 naming what to use instead."""
    service = get_service(conn)
    if not isinstance(service, Runtime):
        raise NotSupported(
            f"{conn.url.path}: sessions over REST (create, read, delete, snapshot, restore, frames) are served by one "
            "r3d-serve process, not on the Ray cluster, whose sessions live on its session replicas; stream over "
            "the WebSocket /v1/stream (docs/scale-out.md)"
        )
    return service


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[Service, Depends(get_service)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(session_id: str, runtime: RuntimeDep) -> Session:
    return runtime.registry.get(session_id)


SessionDep = Annotated[Session, Depends(get_session)]


def client_address(conn: HTTPConnection) -> str:
    """The peer's address, the key of the per-client session limit (behind a proxy: the proxy's, unless uvicorn
    is told to trust its forwarded headers)."""
    return conn.client.host if conn.client else "unknown"


def presented_key(conn: HTTPConnection, *, allow_query: bool) -> str | None:
    """The API key a request carries: ``Authorization: Bearer``, ``X-API-Key``, or (WebSocket) ``?api_key=``."""
    auth = conn.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    key = conn.headers.get("x-api-key")
    if key:
        return key.strip()
    return conn.query_params.get("api_key") if allow_query else None


def _matches(key: str, keys: list[SecretStr]) -> bool:
    return any(hmac.compare_digest(key.encode(), k.get_secret_value().encode()) for k in keys)


def check_key(settings: Settings, key: str | None) -> None:
    """A stream key or an admin key (an admin may do everything a stream client may)."""
    if not settings.auth_enabled:
        return
    if not key:
        raise AuthError("missing API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
    if not _matches(key, settings.api_keys) and not _matches(key, settings.admin_keys):
        raise AuthError("wrong API key: it matches none of the server's keys")


def require_api_key(request: Request, settings: SettingsDep) -> None:
    check_key(settings, presented_key(request, allow_query=False))


def require_admin_key(request: Request, settings: SettingsDep) -> None:
    """Admin routes (model reload) need an admin key, never a stream key, even on a server without API keys."""
    if not settings.admin_keys:
        raise Forbidden("model reload is disabled on this server: it has no admin key (R3D_ADMIN_KEYS)")
    key = presented_key(request, allow_query=False)
    if not key:
        raise AuthError("missing admin key: send 'Authorization: Bearer ADMIN_KEY' or 'X-API-Key: ADMIN_KEY'")
    if not _matches(key, settings.admin_keys):
        raise Forbidden("this key may stream but not administer the server; expected an admin key")


AuthGuard = Depends(require_api_key)
AdminGuard = Depends(require_admin_key)
