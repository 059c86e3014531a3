"""Running the app under uvicorn: the server settings that matter for streaming (no per-message deflate, the
transport's message limit) and a graceful shutdown that tells streaming clients before uvicorn drops them."""

from __future__ import annotations

import logging
import re
import socket
import threading

import uvicorn
from fastapi import FastAPI

from server.runtime import Runtime
from server.settings import Settings

_SECRET = re.compile(r"(?i)((?:[?&]api_key=)|(?:authorization:\s*bearer\s+)|(?:x-api-key:\s*))[^&\s\"']+")
REDACTED = "[redacted]"


class RedactSecrets(logging.Filter):
    """Hides API keys in log records: ``?api_key=`` in a logged URL (uvicorn's access and WebSocket lines), and
    ``Authorization: Bearer`` or ``X-API-Key`` values should any message carry them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_SECRET.sub(rf"\1{REDACTED}", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _SECRET.sub(rf"\1{REDACTED}", record.msg)
        return True


def redact_uvicorn_logs() -> None:
    """Install RedactSecrets on uvicorn's loggers (after uvicorn configured its logging; idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())


class ServiceServer(uvicorn.Server):
    """uvicorn.Server whose shutdown first drains the runtime (shutdown notices, bye, jobs given their grace)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        runtime: Runtime | None = getattr(getattr(app, "state", None), "runtime", None)
        if runtime is not None:
            await runtime.drain()
        await super().shutdown(sockets)


def uvicorn_config(app: FastAPI, settings: Settings, *, log_config: dict[str, object] | None = None) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws="websockets-sansio",
        ws_max_size=settings.transport_max_bytes,
        ws_per_message_deflate=False,  # 25-40 ms per 640x480 frame otherwise (measured: docs/protocol.md, "Transport")
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        lifespan="on",
        log_config=log_config,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5,
    )
    redact_uvicorn_logs()  # after Config, whose logging setup would otherwise replace the loggers' filters
    return config


class BackgroundServer:
    """The service in a thread (tests, load benchmark): ``with BackgroundServer(app, settings) as url: ...``."""

    def __init__(self, app: FastAPI, settings: Settings, start_timeout_s: float = 120.0) -> None:
        self.server = ServiceServer(uvicorn_config(app, settings))
        self.start_timeout_s = start_timeout_s
        self.thread = threading.Thread(target=self.server.run, name="r3d-uvicorn", daemon=True)

    @property
    def port(self) -> int:
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    def __enter__(self) -> str:
        self.thread.start()
        self.thread.join(0.05)
        deadline = self.start_timeout_s
        waited = 0.0
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server exited during startup (see its log: model loading failed?)")
            if waited > deadline:
                raise RuntimeError(f"the server did not start within {deadline:g} s")
            self.thread.join(0.05)
            waited += 0.05
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)

    def __exit__(self, *exc: object) -> None:
        self.stop()
