"""The ingress's back end: what r3d-serve's routers (server/api/routes) ask of the service, answered on a Ray Serve
cluster. ``Ingress`` builds its app with ``server.app.create_app(..., start=...)``, the factory of one process, so
both serve the same routes, error handling and OpenAPI document; only this object differs from ``Runtime``.

| route | on the cluster |
| --- | --- |
| ``/v1/stream`` | ``ClusterConnection``: every call goes to the session's owner (server/cluster/connection.py) |
| ``/healthz``, ``/readyz``, ``/v1/model`` | the session tier's model, refreshed every second |
| ``/metrics`` | the ingress's registry and every session replica's, each sample labelled ``replica`` |
| ``GET /v1/sessions`` | the sessions of every session replica |
| ``GET /v1/sessions/{id}/prediction`` and the viewer's previews | asked of the session's owner |
| ``/v1/jobs`` | jobs kept and read here (uploads, results: ``jobs_dir``); their model calls run on the FrameEncoder |
| ``POST /v1/model/reload`` | the application deployed again with the model as the tiers' ``user_config`` (``reload``) |
| other REST session and frame routes | 501 ``not_supported`` (server.deps.get_runtime) |
| ``/viewer/`` | its static files, as in one process |

Reaching every session replica: Serve routes a call by its session id (consistent hashing), so calls under fresh
random ids find them all; Serve's status says how many are running.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from fastapi import WebSocket
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve import Application
from ray.serve.handle import DeploymentHandle, DeploymentResponse
from ray.serve.schema import ReplicaState

from server.batch.jobs import JobManager
from server.cluster.connection import RETRY_PAUSE_S, ClusterConnection, IngressHost
from server.cluster.options import Deployed, ModelChoice
from server.cluster.sessions import Reloaded, ReplicaReport
from server.engine import Engine
from server.errors import Forbidden, ModelError, NotReady, ServerError
from server.metrics import Metrics
from server.protocol import AnticipationOut, ErrorOut, HealthOut, ModelInfo, ReloadOut, SessionList
from server.runtime import HOUSEKEEPING_S, server_version
from server.streaming.preview import PreviewKind

logger = logging.getLogger(__name__)
T = TypeVar("T")
TIER_ANSWER_S = 5.0  # a session tier that does not answer the health check within this long is not ready
REPORT_PROBES = 64  # calls spent finding every session replica (fresh ids hash to each with probability 1/N)
RELOAD_WAIT_S = 300.0  # how long a reload waits for every session replica to load the model and switch


class EncoderCalls:
    """A batch job's model calls (server.batch.scoring.ModelCalls) on the FrameEncoder deployment: each is one call
    with the function (cloudpickled by Ray), answered by ``FrameEncoder.run``; the job's thread waits for it."""

    def __init__(self, encoder: DeploymentHandle) -> None:
        self.encoder = encoder

    def call(self, fn: Callable[[Engine], T]) -> DeploymentResponse:
        response = self.encoder.run.remote(fn)
        assert isinstance(response, DeploymentResponse)  # a unary method: not a generator
        return response


def raise_error(reply: object) -> None:
    """An ErrorOut a session replica answered -> the ServerError it was (its status and message)."""
    if isinstance(reply, ErrorOut):
        raise ServerError(reply.message, code=reply.code, retry_after_s=reply.retry_after_s)


async def session_reports(sessions: DeploymentHandle, app_name: str) -> list[ReplicaReport]:
    """Every running session replica's report (calls under fresh session ids until each answered once)."""
    status = await asyncio.to_thread(serve.status)
    deployment = status.applications[app_name].deployments["SessionTier"]
    running = max(deployment.replica_states.get(ReplicaState.RUNNING, 0), 1)
    found: dict[int, ReplicaReport] = {}
    for _ in range(REPORT_PROBES):
        if len(found) >= running:
            break
        report: ReplicaReport = await sessions.options(session_id=secrets.token_urlsafe(12)).report.remote()
        found[report.pid] = report
    if len(found) < running:
        logger.warning("%d of %d session replicas answered %d calls", len(found), running, REPORT_PROBES)
    return list(found.values())


class ClusterService:
    """server.runtime.Service for one ingress replica."""

    def __init__(
        self, deployed: Deployed, host: IngressHost, sessions: DeploymentHandle, encoder: DeploymentHandle,
        app_name: str, info: ModelInfo, redeploy: Callable[[Deployed], Application],
    ) -> None:  # fmt: skip
        self.deployed = deployed
        self.redeploy = redeploy  # Deployed -> the application a reload runs (server.cluster.app.deployed_app)
        self.settings = settings = deployed.settings
        self.host = host
        self.metrics: Metrics = host.metrics
        self.sessions = sessions
        self.app_name = app_name
        self._info = info
        self._tier_answers = True
        self._engine: Engine | None = None  # the jobs' preprocessing and decoding, loaded by the first job
        self._engine_lock = threading.Lock()
        jobs_dir = settings.jobs_dir or Path(tempfile.mkdtemp(prefix="r3d-jobs-"))
        self.jobs = JobManager(settings, EncoderCalls(encoder), self._job_engine, self.metrics, jobs_dir)
        self._housekeeping: asyncio.Task[None] | None = None
        self._reloading = asyncio.Lock()

    @classmethod
    async def start(
        cls, deployed: Deployed, host: IngressHost, sessions: DeploymentHandle,
        redeploy: Callable[[Deployed], Application],
    ) -> ClusterService:  # fmt: skip
        app_name = serve.get_replica_context().app_name
        encoder = serve.get_deployment_handle("FrameEncoder", app_name)
        info: ModelInfo = await sessions.model_info.remote()
        service = cls(deployed, host, sessions, encoder, app_name, info, redeploy)
        service._housekeeping = asyncio.create_task(service._housekeep(), name="r3d-ingress-housekeeping")
        return service

    @property
    def draining(self) -> bool:
        return self.host.draining

    @property
    def info(self) -> ModelInfo:
        return self._info

    def health(self) -> HealthOut:
        ready = self._tier_answers and not self.draining
        return HealthOut(
            status="draining" if self.draining else "ok" if self._tier_answers else "starting", ready=ready,
            version=server_version(), model_id=self._info.model_id, sessions=len(self.host.connections),
            details={"backend": self._info.backend, "connections": len(self.host.connections),
                     "session_tier_answers": self._tier_answers},
        )  # fmt: skip

    def connection(self, ws: WebSocket, authorize: Callable[[], None]) -> ClusterConnection:
        return ClusterConnection(ws, self.host, self.settings, self.sessions, authorize)

    async def list_sessions(self) -> SessionList:
        reports = await session_reports(self.sessions, self.app_name)
        return SessionList(sessions=[s for r in reports for s in r.sessions],
                           max_sessions=self.settings.max_sessions * len(reports))  # fmt: skip

    async def prediction(self, session_id: str, after: int, timeout_s: float) -> AnticipationOut | None:
        reply = await self.sessions.options(session_id=session_id).prediction.remote(session_id, after, timeout_s)
        raise_error(reply)
        assert reply is None or isinstance(reply, AnticipationOut)
        return reply

    async def preview(self, session_id: str, kind: PreviewKind) -> bytes | None:
        reply = await self.sessions.options(session_id=session_id).preview.remote(session_id, kind)
        raise_error(reply)
        assert reply is None or isinstance(reply, bytes)
        return reply

    async def metrics_text(self) -> bytes:
        """This replica's metrics and every session replica's in one exposition: a family per name, each sample
        labelled ``replica`` (``ingress-PID``, ``session-PID``)."""
        own = [f for f in self.metrics.registry.collect() if not f.name.startswith("r3d_session_store")]  # no store
        sources = [(f"ingress-{os.getpid()}", own)]
        sources += [(f"session-{r.pid}", r.metrics) for r in await session_reports(self.sessions, self.app_name)]
        registry = CollectorRegistry()
        registry.register(_Merged(sources))
        return generate_latest(registry)

    async def reload(self, model_id: str | None, backend: str | None) -> ReloadOut:
        """r3d-serve's reload on the cluster: a model of ``models_dir`` by id (None: the current one's files again),
        loaded here first (ModelNotFound, ModelError: nothing changes), then deployed as the session tier's and
        FrameEncoder's user_config (server/cluster/app.py); answers once every session replica switched, with the
        sessions they kept and reset."""
        if self.deployed.generation is None:
            raise Forbidden(
                "this application was deployed from a Serve config (a RayService): reload by changing the "
                "user_config of its SessionTier and FrameEncoder deployments there (docs/scale-out.md)"
            )
        if self.draining:
            raise NotReady("the server is shutting down")
        async with self._reloading:
            current: ModelChoice = await self.sessions.model_choice.remote()
            previous: ModelInfo = await self.sessions.model_info.remote()
            choice = ModelChoice(model_id or current.model, backend, secrets.token_hex(8))
            engine = await asyncio.to_thread(choice.load, self.settings)
            deployed = self.deployed.with_model(choice)
            await asyncio.to_thread(serve.run, self.redeploy(deployed), name=self.app_name, route_prefix="/")
            self.deployed = deployed
            with self._engine_lock:
                self._engine = engine  # the jobs' preprocessing and decoding follow the model
            kept, reset = await self._switched(choice.token)
        self._info = engine.info
        logger.info("model reloaded: %s -> %s (kept %d, reset %d)", previous.model_id, engine.model_id, kept, reset)
        return ReloadOut(model=engine.info, previous_model_id=previous.model_id, sessions_kept=kept,
                         sessions_reset=reset)  # fmt: skip

    async def _switched(self, token: str) -> tuple[int, int]:
        """Wait until every session replica serves reload ``token``'s model (each loads it behind Serve's
        reconfigure); the sessions they kept and reset."""
        deadline = time.monotonic() + RELOAD_WAIT_S
        while True:
            reports = await session_reports(self.sessions, self.app_name)
            if all(r.model.token == token or token in r.reloads for r in reports):
                break
            if time.monotonic() > deadline:
                raise NotReady(f"the session replicas did not switch to the new model within {RELOAD_WAIT_S:g} s; "
                               "GET /v1/model says which model answers")  # fmt: skip
            await asyncio.sleep(RETRY_PAUSE_S)
        done = [r.reloads.get(token, Reloaded(0, 0)) for r in reports]
        if errors := [d.error for d in done if d.error]:
            raise ModelError(f"{len(errors)} of {len(done)} session replicas could not load the model; the "
                             "server log has the reason")  # fmt: skip
        return sum(d.kept for d in done), sum(d.reset for d in done)

    async def stop(self) -> None:
        self.host.draining = True
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        reason = "the server is shutting down"
        await asyncio.gather(*(c.close_for_shutdown(reason) for c in list(self.host.connections)),
                             return_exceptions=True)  # fmt: skip
        await asyncio.to_thread(self.jobs.shutdown, self.settings.shutdown_grace_s)

    async def _model_info(self) -> ModelInfo:
        info: ModelInfo = await self.sessions.model_info.remote()
        return info

    def _job_engine(self) -> Engine:
        """The model jobs prepare frames and decode outputs with (the FrameEncoder deployment runs it): loaded on
        the first job, the model the tiers serve (job threads call this, never the event loop)."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = self.deployed.model.load(self.settings)
            return self._engine

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                self._info = await asyncio.wait_for(self._model_info(), TIER_ANSWER_S)
                self._tier_answers = True
            except (RayActorError, ActorUnavailableError, TimeoutError):  # a call waits while no replica runs
                self._tier_answers = False
            try:
                await asyncio.to_thread(self.jobs.expire)
                self.metrics.job_counts(self.jobs.counts())
            except Exception:  # housekeeping must keep running
                logger.exception("housekeeping failed")


class _Merged:
    """A Prometheus collector of families gathered elsewhere: one family per name, its samples labelled by source."""

    def __init__(self, sources: list[tuple[str, list[Metric]]]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for replica, families in self.sources:
            for family in families:
                out = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type,
                                                            family.unit))  # fmt: skip
                out.samples += [s._replace(labels={**s.labels, "replica": replica}) for s in family.samples]
        yield from merged.values()
