"""The synchronous client: a thin wrapper that runs the one async implementation on a private event loop thread.

    with Client("http://localhost:8000") as client:
        with client.stream(SessionCreate(width=640, height=480, depth_scale=0.001)) as stream:
            stream.send_frame(frame)
            print(stream.next_prediction(timeout=1.0))

Every method blocks until the coroutine of the same name on AsyncClient / AsyncStream finishes; nothing is
implemented twice.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from clients.sdk.client import AsyncClient
from clients.sdk.stats import SessionReset, StreamStats
from clients.sdk.stream import AsyncStream
from rgbd.frame import Frame
from server.protocol import (
    AnticipationOut,
    HealthOut,
    JobPublic,
    JobResults,
    ModelInfo,
    ReloadOut,
    SessionCreate,
    SessionList,
    SessionPublic,
    Welcome,
)

__all__ = ["Client", "Portal", "Stream"]

T = TypeVar("T")


class Portal:
    """An event loop on a daemon thread; `call` runs a coroutine there and waits for its result."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="r3d-client-loop", daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T] | Awaitable[T]) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("the sync client cannot be called from its own event loop; use AsyncClient there")

        async def run() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def make(self, factory: Callable[[], T]) -> T:
        """Build an object on the loop thread (objects that create asyncio primitives must be born there)."""

        async def run() -> T:
            return factory()

        return self.call(run())

    def stop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()


class Stream:
    """Blocking view of an AsyncStream."""

    def __init__(self, portal: Portal, inner: AsyncStream) -> None:
        self._portal, self.inner = portal, inner

    @property
    def session_id(self) -> str | None:
        return self.inner.session_id

    @property
    def stats(self) -> StreamStats:
        return self.inner.stats

    @property
    def latest(self) -> AnticipationOut | None:
        return self.inner.latest

    @property
    def resets(self) -> list[SessionReset]:
        return self.inner.resets

    def open(self) -> Welcome:
        return self._portal.call(self.inner.open())

    def send_frame(self, frame: Frame) -> int:
        return self._portal.call(self.inner.send_frame(frame))

    def send(self, rgb: np.ndarray | None, depth: np.ndarray, ts: float, *, depth_scale: float | None = None) -> int:
        return self._portal.call(self.inner.send(rgb, depth, ts, depth_scale=depth_scale))

    def next_prediction(self, timeout: float | None = None) -> AnticipationOut | None:
        return self._portal.call(self.inner.next_prediction(timeout))

    def pending(self) -> list[AnticipationOut]:
        async def run() -> list[AnticipationOut]:
            return self.inner.pending()

        return self._portal.call(run())

    def ping(self, timeout: float = 10.0) -> float:
        return self._portal.call(self.inner.ping(timeout))

    def fetch_snapshot(self) -> bytes:
        return self._portal.call(self.inner.fetch_snapshot())

    def drain(self, timeout: float = 10.0, quiet_s: float = 0.5) -> list[AnticipationOut]:
        return self._portal.call(self.inner.drain(timeout, quiet_s))

    def close(self, *, end_session: bool = True) -> None:
        self._portal.call(self.inner.close(end_session=end_session))

    def __enter__(self) -> Stream:
        if self.inner.welcome is None:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """Blocking client of one R3D server; same arguments as AsyncClient."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        self._portal = Portal()
        try:
            self.inner: AsyncClient = self._portal.make(lambda: AsyncClient(base_url, **kwargs))
        except BaseException:
            self._portal.stop()
            raise

    @property
    def base_url(self) -> str:
        return self.inner.base_url

    def health(self) -> HealthOut:
        return self._portal.call(self.inner.health())

    def ready(self) -> bool:
        return self._portal.call(self.inner.ready())

    def wait_ready(self, timeout: float = 60.0) -> None:
        self._portal.call(self.inner.wait_ready(timeout))

    def model_info(self) -> ModelInfo:
        return self._portal.call(self.inner.model_info())

    def reload_model(self, model: str | None = None, backend: str | None = None) -> ReloadOut:
        return self._portal.call(self.inner.reload_model(model, backend))

    def sessions(self) -> SessionList:
        return self._portal.call(self.inner.sessions())

    def session(self, session_id: str) -> SessionPublic:
        return self._portal.call(self.inner.session(session_id))

    def create_session(self, stream: SessionCreate) -> SessionPublic:
        return self._portal.call(self.inner.create_session(stream))

    def delete_session(self, session_id: str) -> None:
        self._portal.call(self.inner.delete_session(session_id))

    def snapshot(self, session_id: str) -> bytes:
        return self._portal.call(self.inner.snapshot(session_id))

    def restore_session(self, snapshot: bytes) -> SessionPublic:
        return self._portal.call(self.inner.restore_session(snapshot))

    def latest_prediction(
        self, session_id: str, *, after: int | None = None, timeout_s: float = 0.0
    ) -> AnticipationOut | None:
        return self._portal.call(self.inner.latest_prediction(session_id, after=after, timeout_s=timeout_s))

    def stream(self, stream: SessionCreate, **kwargs: Any) -> Stream:
        """See AsyncClient.stream; use as `with client.stream(...) as s:`."""
        return Stream(self._portal, self._portal.make(lambda: self.inner.stream(stream, **kwargs)))

    def submit_job(self, source: str | Path, **kwargs: Any) -> JobPublic:
        return self._portal.call(self.inner.submit_job(source, **kwargs))

    def job(self, job_id: str) -> JobPublic:
        return self._portal.call(self.inner.job(job_id))

    def cancel_job(self, job_id: str) -> JobPublic:
        return self._portal.call(self.inner.cancel_job(job_id))

    def job_results(self, job_id: str) -> JobResults:
        return self._portal.call(self.inner.job_results(job_id))

    def job_results_csv(self, job_id: str, table: str) -> bytes:
        return self._portal.call(self.inner.job_results_csv(job_id, table))

    def wait_job(self, job_id: str, **kwargs: Any) -> JobPublic:
        return self._portal.call(self.inner.wait_job(job_id, **kwargs))

    def close(self) -> None:
        try:
            self._portal.call(self.inner.aclose())
        finally:
            self._portal.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
