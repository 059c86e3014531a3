"""The asynchronous client: REST calls with httpx and streaming sessions over WebSockets (AsyncStream).

    async with AsyncClient("http://localhost:8000") as client:
        info = await client.model_info()
        async with client.stream(SessionCreate(width=640, height=480, depth_scale=0.001)) as stream:
            await stream.send_frame(frame)
            prediction = await stream.next_prediction(timeout=1.0)

Transport seams (tests, custom networking): `transport` is an httpx transport, `ws_connector` a WSConnector.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from clients.sdk.errors import ServerError
from clients.sdk.reconnect import ReconnectPolicy
from clients.sdk.stats import SessionReset
from clients.sdk.stream import AsyncStream
from clients.sdk.transport import DEFAULT_MAX_MESSAGE_BYTES, WSConnector, websockets_connector
from server.protocol import (
    AnticipationOut,
    ColorCodec,
    DepthCodec,
    HealthOut,
    Hello,
    JobCreate,
    JobList,
    JobPublic,
    JobResults,
    JobState,
    ModelInfo,
    ReloadOut,
    ReloadRequest,
    SessionCreate,
    SessionList,
    SessionPublic,
)

__all__ = ["API_PREFIX", "AsyncClient", "TERMINAL_JOB_STATES"]

logger = logging.getLogger(__name__)

API_PREFIX = "/v1"
TERMINAL_JOB_STATES = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED}
M = TypeVar("M", bound=BaseModel)


class AsyncClient:
    """REST and streaming client of one R3D server (base_url like "http://host:8000")."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        ws_connector: WSConnector | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"expected a server URL starting with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )
        self._ws_connector = ws_connector or websockets_connector(max_message_bytes)

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url[len("http") :] + API_PREFIX + "/stream"

    # --- plumbing -----------------------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerError(0, "unreachable", f"cannot reach {self.base_url}{path}: {exc}") from exc
        if response.is_error:
            raise _server_error(response)
        return response

    async def _get(self, path: str, model: type[M], **kwargs: Any) -> M:
        return model.model_validate((await self._request("GET", path, **kwargs)).json())

    # --- service ------------------------------------------------------------------------------------------------

    async def health(self) -> HealthOut:
        return await self._get("/healthz", HealthOut)

    async def ready(self) -> bool:
        """True when the server has a model loaded and accepts sessions."""
        try:
            response = await self._http.get("/readyz")
        except httpx.TransportError:
            return False
        return response.status_code == 200

    async def wait_ready(self, timeout: float = 60.0, interval: float = 0.2) -> None:
        """Poll readiness until the server is ready; ServerError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not await self.ready():
            if time.monotonic() > deadline:
                raise ServerError(0, "not_ready", f"{self.base_url} was not ready within {timeout:g} s")
            await asyncio.sleep(interval)

    async def model_info(self) -> ModelInfo:
        return await self._get(f"{API_PREFIX}/model", ModelInfo)

    async def reload_model(self, model: str | None = None, backend: str | None = None) -> ReloadOut:
        """Switch the server to a model of its models_dir by id (None: reload the current one); needs an admin key."""
        body = ReloadRequest(model=model, backend=backend).model_dump(exclude_none=True)
        response = await self._request("POST", f"{API_PREFIX}/model/reload", json=body)
        return ReloadOut.model_validate(response.json())

    # --- sessions -----------------------------------------------------------------------------------------------

    async def sessions(self) -> SessionList:
        return await self._get(f"{API_PREFIX}/sessions", SessionList)

    async def session(self, session_id: str) -> SessionPublic:
        return await self._get(f"{API_PREFIX}/sessions/{session_id}", SessionPublic)

    async def create_session(self, stream: SessionCreate) -> SessionPublic:
        response = await self._request("POST", f"{API_PREFIX}/sessions", json=stream.model_dump(mode="json"))
        return SessionPublic.model_validate(response.json())

    async def delete_session(self, session_id: str) -> None:
        await self._request("DELETE", f"{API_PREFIX}/sessions/{session_id}")

    async def snapshot(self, session_id: str) -> bytes:
        """The session's state (stream, token window, resampler, counters) as msgpack, for restore_session."""
        return (await self._request("GET", f"{API_PREFIX}/sessions/{session_id}/snapshot")).content

    async def restore_session(self, snapshot: bytes) -> SessionPublic:
        """A session from a snapshot (same id when free); the server must run the same frame encoder."""
        response = await self._request(
            "POST", f"{API_PREFIX}/sessions/restore", content=snapshot,
            headers={"Content-Type": "application/msgpack"},
        )  # fmt: skip
        return SessionPublic.model_validate(response.json())

    async def latest_prediction(
        self, session_id: str, *, after: int | None = None, timeout_s: float = 0.0
    ) -> AnticipationOut | None:
        """The session's latest prediction (one with `seq > after` when given, waiting up to `timeout_s`), or None."""
        params: dict[str, float | int] = {"timeout_s": timeout_s}
        if after is not None:
            params["after"] = after
        response = await self._request(
            "GET", f"{API_PREFIX}/sessions/{session_id}/prediction", params=params, timeout=timeout_s + 30.0
        )
        return None if response.status_code == 204 else AnticipationOut.model_validate(response.json())

    def stream(
        self,
        stream: SessionCreate,
        *,
        session_id: str | None = None,
        color_codec: ColorCodec | str = ColorCodec.JPEG,
        depth_codec: DepthCodec | str = DepthCodec.ZSTD,
        jpeg_quality: int = 80,
        reconnect: ReconnectPolicy | None = None,
        on_reset: Callable[[SessionReset], None] | None = None,
    ) -> AsyncStream:
        """A streaming session (not yet connected: `async with` it, or `await stream.open()`).

        `session_id` resumes an existing session (its token window continues) instead of creating one.
        `reconnect` says how long a dropped connection is retried and what happens when the server lost the session
        (default: retry for 60 s, then continue on a new session); `on_reset` is called with each SessionReset (on
        the event loop: keep it short).
        """
        hello = Hello(**stream.model_dump(), session_id=session_id)
        return AsyncStream(
            self.ws_url, hello, self._ws_connector, self._headers, color_codec=ColorCodec(color_codec),
            depth_codec=DepthCodec(depth_codec), jpeg_quality=jpeg_quality, reconnect=reconnect, on_reset=on_reset,
            sessions=self,
        )  # fmt: skip

    # --- batch scoring ------------------------------------------------------------------------------------------

    async def submit_job(
        self,
        source: str | Path,
        *,
        upload: bool = True,
        sequences: list[str] | None = None,
        tick_hz: float | None = None,
    ) -> JobPublic:
        """Start batch scoring. `upload`: send the local file; else `source` is a path under the server's data root."""
        if upload:
            path = Path(source)
            if not path.is_file():
                raise ValueError(f"expected a recording file to upload, got {str(path)!r} (use upload=False for "
                                 "a folder under the server's data root)")  # fmt: skip
            fields = {k: str(v) for k, v in (("tick_hz", tick_hz),) if v is not None}
            with path.open("rb") as f:
                response = await self._request(
                    "POST", f"{API_PREFIX}/jobs", files={"file": (path.name, f)}, data=fields, timeout=None
                )
        else:
            body = JobCreate(path=str(source), sequences=sequences, tick_hz=tick_hz).model_dump(exclude_none=True)
            response = await self._request("POST", f"{API_PREFIX}/jobs", json=body)
        return JobPublic.model_validate(response.json())

    async def job(self, job_id: str) -> JobPublic:
        return await self._get(f"{API_PREFIX}/jobs/{job_id}", JobPublic)

    async def jobs(self) -> JobList:
        return await self._get(f"{API_PREFIX}/jobs", JobList)

    async def cancel_job(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate((await self._request("DELETE", f"{API_PREFIX}/jobs/{job_id}")).json())

    async def job_results(self, job_id: str) -> JobResults:
        return await self._get(f"{API_PREFIX}/jobs/{job_id}/results", JobResults, timeout=None)

    async def job_results_csv(self, job_id: str, table: str) -> bytes:
        """A finished job's ``frames`` or ``ticks`` table as the server wrote it (docs/batch_scoring.md)."""
        if table not in ("frames", "ticks"):
            raise ValueError(f"expected table 'frames' or 'ticks', got {table!r}")
        url = f"{API_PREFIX}/jobs/{job_id}/results.csv"
        return (await self._request("GET", url, params={"table": table}, timeout=None)).content

    async def wait_job(
        self, job_id: str, *, interval: float = 0.25, on_progress: Callable[[JobPublic], None] | None = None
    ) -> JobPublic:
        """Poll a job until it ends; `on_progress` sees every poll. Returns the final state (check `.state`)."""
        while True:
            job = await self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.state in TERMINAL_JOB_STATES:
                return job
            await asyncio.sleep(interval)

    # --- lifetime -----------------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _server_error(response: httpx.Response) -> ServerError:
    """An error response -> ServerError with the server's code and public message where it sent them."""
    code, message = "http_error", response.text[:500] or response.reason_phrase
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and "message" in err:
            code, message = str(err.get("code", code)), str(err["message"])
        elif "detail" in body:
            message = str(body["detail"])
    return ServerError(response.status_code, code, message)
