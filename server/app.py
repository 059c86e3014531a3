"""The FastAPI application: ``create_app(settings)`` wires the routers, the error handler and the lifespan that
starts and stops the runtime (model, worker, sessions, jobs)."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.routes import frames, health, jobs, models, sessions, stream, viewer
from server.api.routes import metrics as metrics_route
from server.deps import AuthGuard
from server.errors import ServerError, error_out
from server.metrics import Metrics
from server.protocol import SCHEMA_MODELS, ErrorCode, ErrorOut, ProtocolError
from server.protocol.rest import REST_SCHEMA_MODELS
from server.runtime import Runtime, Service, server_version
from server.settings import Settings

logger = logging.getLogger(__name__)


class InternalErrors:
    """Any exception no handler mapped becomes a 500 ``internal`` ErrorOut, with one traceback in the log: Starlette's
    own handler for ``Exception`` answers and then re-raises, so uvicorn would log the same bug a second time."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            logger.exception("%s %s failed", scope.get("method"), scope.get("path"))
            self.metrics.error(ErrorCode.INTERNAL.value)
            if not started:
                body = ErrorOut(code=ErrorCode.INTERNAL, message="internal error; the server log has the details")
                await JSONResponse(body.model_dump(mode="json"), status_code=500)(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    start: Callable[[Settings, Metrics], Awaitable[Service]] = Runtime.start,
    title: str = "R3D anticipation service",
) -> FastAPI:
    """The service for ``settings``; ``start`` builds what serves it when the app starts (lifespan), not here: one
    process's Runtime (model, worker, sessions, jobs), or a Ray Serve cluster's ingress (server.cluster.service)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await start(settings, app.state.metrics)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()
            app.state.runtime = None

    app = FastAPI(
        title=title,
        version=server_version(),
        summary="Real-time RGB-D action anticipation: streaming sessions, batch scoring, model management.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics or Metrics()
    app.state.runtime = None

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServerError | ProtocolError)
        app.state.metrics.error(exc.code.value)
        logger.info("%s %s -> %d %s: %s", request.method, request.url.path, exc.status, exc.code.value, exc.message)
        body = error_out(exc)
        headers = {"Retry-After": str(math.ceil(body.retry_after_s))} if body.retry_after_s is not None else None
        return JSONResponse(body.model_dump(mode="json"), status_code=exc.status, headers=headers)

    async def on_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:6]]
        body = ErrorOut(code=ErrorCode.BAD_REQUEST, message="invalid request: " + "; ".join(parts))
        app.state.metrics.error(ErrorCode.BAD_REQUEST.value)
        return JSONResponse(body.model_dump(mode="json"), status_code=400)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        body = ErrorOut(code=ErrorCode.BAD_REQUEST, message=f"{request.method} {request.url.path}: {exc.detail}")
        return JSONResponse(body.model_dump(mode="json"), status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(ServerError, on_error)
    app.add_exception_handler(ProtocolError, on_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_middleware(InternalErrors, metrics=app.state.metrics)

    app.include_router(health.router)
    app.include_router(metrics_route.router, dependencies=[] if settings.metrics_public else [AuthGuard])
    for module in (sessions, frames, jobs, models):
        app.include_router(module.router, dependencies=[AuthGuard])
    app.include_router(models.admin_router)  # its own guard: an admin key, never a stream key
    app.include_router(stream.router)  # authenticates inside: a WebSocket gets an error message, not a bare 403
    app.include_router(viewer.router)  # the page is open; its preview images need the API key

    def openapi() -> dict[str, Any]:
        """FastAPI's schema plus every wire message (the WebSocket's and the msgpack bodies' are not in routes)."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (*SCHEMA_MODELS, *REST_SCHEMA_MODELS):
                doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in doc.pop("$defs", {}).items():
                    components.setdefault(name, sub)
                components.setdefault(model.__name__, doc)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
