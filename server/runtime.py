"""The running service: the loaded model, the inference worker, sessions, jobs, the decode pool and housekeeping.

Built in the app's lifespan (``Runtime.start``) from the settings, so nothing loads at import time; the lifespan's
end stops it. ``drain`` (called by ServiceServer before uvicorn closes connections) tells every WebSocket client
and gives running jobs ``shutdown_grace_s`` to finish.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np
import torch

from server.batch.jobs import JobManager
from server.engine import Engine, load_engine_backend
from server.errors import ModelError, NotReady
from server.metrics import Metrics
from server.model_store import model_by_id, resolve_model_path
from server.protocol import AnticipationOut, HealthOut, ModelInfo, ReloadOut, SessionList
from server.session_store import open_session_store
from server.settings import Settings
from server.streaming.connection import StreamConnection, WireConnection
from server.streaming.journal import SessionJournal
from server.streaming.preview import PreviewKind
from server.streaming.registry import SessionRegistry
from server.streaming.worker import InferenceWorker

if TYPE_CHECKING:
    from fastapi import WebSocket

logger = logging.getLogger(__name__)
HOUSEKEEPING_S = 1.0


def server_version() -> str:
    try:
        return importlib.metadata.version("r3d")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        return "0.0.0+local"


class Drainable(Protocol):
    async def close_for_shutdown(self, reason: str) -> None: ...


class Service(Protocol):
    """What the routers (server/api/routes) ask of the service behind them: one process (``Runtime``) or the
    ingress of a Ray Serve cluster (server.cluster.service.ClusterService). Routes that need the process's own
    registry and worker (REST sessions and frames) take ``Runtime`` itself and answer 501 on a cluster."""

    settings: Settings
    metrics: Metrics
    jobs: JobManager

    @property
    def draining(self) -> bool: ...

    @property
    def info(self) -> ModelInfo: ...

    def health(self) -> HealthOut: ...

    def connection(self, ws: WebSocket, authorize: Callable[[], None]) -> WireConnection:
        """The protocol's connection for an accepted /v1/stream socket."""
        ...

    async def list_sessions(self) -> SessionList: ...

    async def prediction(self, session_id: str, after: int, timeout_s: float) -> AnticipationOut | None: ...

    async def preview(self, session_id: str, kind: PreviewKind) -> bytes | None: ...

    async def metrics_text(self) -> bytes:
        """The Prometheus text of /metrics."""
        ...

    async def reload(self, model_id: str | None, backend: str | None) -> ReloadOut: ...

    async def stop(self) -> None: ...


async def load_engine(path: Path, backend: str, settings: Settings, name: str) -> Engine:
    """open_engine in a thread, off the event loop."""
    return await asyncio.to_thread(open_engine, path, backend, settings, name)


def open_engine(path: Path, backend: str, settings: Settings, name: str) -> Engine:
    """Load and warm up a model; ``name`` (an id, never a path) is what a failure tells the client."""
    try:
        threads = settings.inference_threads or len(os.sched_getaffinity(0))
        path = resolve_model_path(path)
        loaded = load_engine_backend(path, backend, settings.device, settings.fp16, threads)
        engine = Engine(loaded, server_version(), path)
        started = time.perf_counter()
        warm_up(engine)
        logger.info("model %s warmed up in %.2f s (both graphs)", name, time.perf_counter() - started)
    except Exception as exc:  # the model library's errors say what is wrong with the file: the log gets them
        logger.warning("cannot load model %s on backend %s: %s", name, backend, exc)
        raise ModelError(f"cannot load model {name!r} on backend {backend!r}; the server log has the reason") from exc
    return engine


def warm_up(engine: Engine) -> None:
    """One frame-encoder batch and one full-window anticipator call, so the first live frames do not pay for the
    runtime's lazy initialisation (about 0.7 s on the first call otherwise)."""
    pre = engine.spec.preprocessing
    rgb = np.zeros((*pre.image_size, 3), np.uint8)
    depth = np.ones(pre.depth_size, np.uint16)
    image, dmap = engine.prepare(rgb, depth, 0.001, pre.locator())
    tokens = engine.encode(None if image is None else image[None], dmap[None])
    window = np.repeat(tokens, engine.spec.window_frames, axis=0)
    engine.decode(engine.anticipate(window))


def configure_threads(settings: Settings, engine: Engine) -> None:
    """Avoid oversubscription: torch runs the model only on the pytorch backend; otherwise it just preprocesses
    frames, one per decode thread, so each of its ops stays on one core (the runtime's own pool does inference)."""
    if engine.info.backend == "pytorch":
        torch.set_num_threads(settings.inference_threads or len(os.sched_getaffinity(0)))
    else:
        torch.set_num_threads(1)
    cv2.setNumThreads(1)  # decode threads run in parallel already


class Runtime:
    def __init__(self, settings: Settings, engine: Engine, metrics: Metrics, jobs_dir: Path) -> None:
        self.settings = settings
        self.metrics = metrics
        self.loop = asyncio.get_running_loop()
        self.decode_pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="r3d-decode")
        self.store = open_session_store(settings.session_store, ttl_s=settings.session_store_ttl_s)
        self.journal = SessionJournal(self.store, metrics, every_frames=settings.session_journal_frames)
        self.worker = InferenceWorker(
            engine,
            metrics,
            max_batch=settings.encoder_max_batch,
            max_delay_s=settings.encoder_max_delay_ms / 1e3,
            max_tick_batch=settings.anticipator_max_batch,
            journal=self.journal,
        )
        self.registry = SessionRegistry(settings, metrics, self.loop, lambda: self.worker.engine, self.journal)
        self.jobs = JobManager(settings, self.worker, lambda: self.worker.engine, metrics, jobs_dir)
        self.connections: set[Drainable] = set()
        self.draining = False
        self._reload_lock = asyncio.Lock()
        self._housekeeping: asyncio.Task[None] | None = None

    @property
    def engine(self) -> Engine:
        return self.worker.engine

    @property
    def ready(self) -> bool:
        return not self.draining and self.worker.alive

    @property
    def info(self) -> ModelInfo:
        return self.engine.info

    def health(self) -> HealthOut:
        return HealthOut(
            status="draining" if self.draining else "ok", ready=self.ready, version=server_version(),
            model_id=self.engine.model_id, sessions=len(self.registry),
            details={"backend": self.engine.info.backend, "worker_alive": self.worker.alive},
        )  # fmt: skip

    def connection(self, ws: WebSocket, authorize: Callable[[], None]) -> WireConnection:
        return StreamConnection(ws, self, self.settings, authorize=authorize)

    async def list_sessions(self) -> SessionList:
        return SessionList(sessions=[s.public() for s in self.registry.all()], max_sessions=self.settings.max_sessions)

    async def prediction(self, session_id: str, after: int, timeout_s: float) -> AnticipationOut | None:
        return await self.registry.get(session_id).wait_prediction(after, timeout_s)

    async def preview(self, session_id: str, kind: PreviewKind) -> bytes | None:
        session = self.registry.get(session_id)
        return await asyncio.to_thread(session.preview, kind, self.engine)

    async def metrics_text(self) -> bytes:
        return self.metrics.render()

    @classmethod
    async def start(cls, settings: Settings, metrics: Metrics) -> Runtime:
        if settings.model_path is None:
            raise ModelError("no model to serve: pass MODEL to r3d-serve or set R3D_MODEL_PATH")
        engine = await load_engine(settings.model_path, settings.backend, settings, settings.model_path.name)
        configure_threads(settings, engine)
        jobs_dir = settings.jobs_dir or Path(tempfile.mkdtemp(prefix="r3d-jobs-"))
        runtime = cls(settings, engine, metrics, jobs_dir)
        await asyncio.to_thread(runtime.check_store)
        runtime.worker.start()
        runtime._housekeeping = asyncio.create_task(runtime._housekeep(), name="r3d-housekeeping")
        metrics.model_loaded(engine.info)
        logger.info(
            "serving model %s (%s, %d classes, %g fps, window %d frames) from %s",
            engine.model_id, engine.info.backend, len(engine.spec.classes), engine.spec.fps,
            engine.spec.window_frames, settings.model_path.name,
        )  # fmt: skip
        return runtime

    def check_store(self) -> None:
        """Say at startup where sessions are journaled; an unreachable store is an outage from the start (sessions
        stream in memory until it answers), not a failure to start."""
        if self.journal.check():
            logger.info("sessions are journaled to %s (every %d frames)", self.store.url, self.journal.every_frames)

    async def reload(self, model_id: str | None, backend: str | None) -> ReloadOut:
        """Load a model of ``models_dir`` by id (None: the current one's files again) and switch to it between two
        batches; sessions stay (windows kept if the frame encoder is the same)."""
        if self.draining:
            raise NotReady("the server is shutting down")
        async with self._reload_lock:
            old = self.engine
            source = old.source if model_id is None else model_by_id(self.settings.models_dir, model_id)
            assert source is not None
            new = await load_engine(source, backend or self.settings.backend, self.settings, model_id or old.model_id)

            def swap() -> tuple[int, int]:
                with self.worker.batch_lock:
                    self.worker.engine = new
                    return self.registry.switch_model(old, new)

            kept, reset = await asyncio.to_thread(swap)
            self.metrics.model_loaded(new.info, reload=True)
            logger.info("model reloaded: %s -> %s (kept %d, reset %d)", old.model_id, new.model_id, kept, reset)
            return ReloadOut(model=new.info, previous_model_id=old.model_id, sessions_kept=kept, sessions_reset=reset)

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                self.registry.reap()
                await asyncio.to_thread(self.journal.retry, self.engine.frame_encoder_id)
                await asyncio.to_thread(self.jobs.expire)
                for s in self.registry.all():
                    self.metrics.session_gauges(s.id, s.fps(), s.queue_depth())
                self.metrics.session_counts(self.registry.counts())
                self.metrics.job_counts(self.jobs.counts())
            except Exception:  # housekeeping must keep running
                logger.exception("housekeeping failed")

    async def drain(self, reason: str = "the server is shutting down") -> None:
        """Tell every streaming client, stop taking work, give running jobs their grace time."""
        if self.draining:
            return
        self.draining = True
        logger.info("draining: %d connections, %d jobs", len(self.connections), len(self.jobs.jobs))
        await asyncio.gather(*(c.close_for_shutdown(reason) for c in list(self.connections)), return_exceptions=True)
        await asyncio.to_thread(self.jobs.shutdown, self.settings.shutdown_grace_s)

    async def stop(self) -> None:
        await self.drain()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        await asyncio.to_thread(self.worker.stop)
        self.store.close()
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        logger.info("stopped")
