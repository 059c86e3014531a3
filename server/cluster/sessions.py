"""The session tier: Serve replicas that own token windows and run the Anticipator, batched across their sessions.

Each replica holds the local path's own objects: a SessionRegistry of Sessions, each with its StreamProcessor
(resampling, window, tick grid), so a frame goes through exactly the checks, counters and predictions it would get in
one r3d-serve process. What differs is where the work runs: the ingress routes a session's calls here by consistent
hashing of its id (Ray's ConsistentHashRouter), the FrameEncoder runs on its own deployment (server.cluster.encoder),
and the Anticipator runs once per ``@serve.batch`` of ticks due on this replica.

A call for a session this replica does not hold (a restarted replica, or a ring that changed) restores it from the
session store before anything else, as a resume of a journaled session does in one process; so does a call for a
session whose copy here another replica claimed since (the ring moved it away, then back after that replica died);
sessions are journaled
by the registry every ``session_journal_frames`` encoded frames, so a killed replica loses fewer than that many.

A reload (``reconfigure``: the deployment's ``user_config`` changed, server/cluster/service.py) switches the replica's
sessions to the new model as one process does (SessionRegistry.switch_model: windows kept under the same frame
encoder, reset with a ``window_reset`` notice under another), between two calls' uses of the model. ``reconfigure``
returns at once and the model loads behind it: while Serve reconfigures a replica it leaves it out of the replica
set it sends the routers (our reading of Ray 2.60's deployment_state.py), and a ring without the owner hands its
sessions to another replica.

Calls answer with the wire messages the connection sends (welcome, notices, predictions, errors), in order; a
session's messages produced while no call is running (a reap, for instance) wait for its next call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client.metrics_core import Metric
from ray import serve
from ray.serve.handle import DeploymentHandle

from export.interface import AnticipatorResult
from server.cluster.encoder import Encoded, EncodeJob, configure_batch
from server.cluster.options import ModelChoice
from server.cluster.profile import CallStamps, StageClock
from server.engine import Engine
from server.errors import ServerError, SessionNotFound, error_out
from server.metrics import Metrics
from server.protocol import (
    AnticipationOut,
    ErrorCode,
    ErrorOut,
    FrameIn,
    Hello,
    ModelInfo,
    ProtocolError,
    SessionCreate,
    SessionPublic,
    WireModel,
)
from server.runtime import HOUSEKEEPING_S
from server.session_store import open_session_store
from server.settings import Settings
from server.streaming.connection import welcome_messages
from server.streaming.journal import SessionJournal
from server.streaming.preview import PreviewKind
from server.streaming.registry import SessionRegistry
from server.streaming.session import OUTBOX_SIZE, Session, SessionState
from server.streaming.worker import TickTimes, send_prediction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplicaState:
    pid: int
    sessions: list[str]


@dataclass(frozen=True)
class Reloaded:
    """What a reload did on one session replica."""

    kept: int
    reset: int
    error: str | None = None  # the model did not load here (the replica keeps serving the one it had)


@dataclass(frozen=True)
class ReplicaReport:
    """What one session replica holds, for the ingress's session listing, /metrics and reloads."""

    pid: int
    sessions: list[SessionPublic]
    metrics: list[Metric]  # its Prometheus registry's families
    stages: dict[str, list[float]]  # the profile's samples (server/cluster/profile.py)
    model: ModelChoice  # the model it serves
    reloads: dict[str, Reloaded]  # what its reloads did, by ModelChoice.token


class ModelGate:
    """Calls hold the model while they use it (any number at once); a reload's switch waits until none does and
    holds new ones back, so that a call's frames are encoded, pushed and anticipated by one model, as one process's
    batch lock does."""

    def __init__(self) -> None:
        self._users = 0
        self._switching = False
        self._changed = asyncio.Condition()  # bound to the loop of its first use: the one Serve runs calls on

    @asynccontextmanager
    async def use(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._switching)
            self._users += 1
        try:
            yield
        finally:
            async with self._changed:
                self._users -= 1
                self._changed.notify_all()

    @asynccontextmanager
    async def switch(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._switching)
            self._switching = True
            await self._changed.wait_for(lambda: self._users == 0)
        try:
            yield
        finally:
            async with self._changed:
                self._switching = False
                self._changed.notify_all()


def calls_per_replica(settings: Settings) -> int:
    """Calls a replica may run at once: a session has at most one call in flight (its connection waits for each
    frame's answer), and strict affinity leaves a request nowhere else to go, so every session a replica may hold."""
    return settings.max_sessions + 8


class SessionTier:
    """Serve deployment class (wrapped by server.cluster.app.build_app with its replica count and router)."""

    def __init__(self, settings: Settings, encoder: DeploymentHandle) -> None:
        self.settings = settings
        self.encoder = encoder
        self.engine: Engine  # and self.choice: set by reconfigure, which Serve calls before the first request
        self.choice: ModelChoice
        self._gate = ModelGate()
        self._reloads: dict[str, Reloaded] = {}
        self._reloading: asyncio.Task[None] | None = None
        self.metrics = Metrics()
        self.store = open_session_store(settings.session_store, ttl_s=settings.session_store_ttl_s)
        self.journal = SessionJournal(self.store, self.metrics, every_frames=settings.session_journal_frames)
        if self.journal.check():
            logger.info("sessions are journaled to %s (every %d frames)", self.store.url, self.journal.every_frames)
        self._registry: SessionRegistry | None = None
        self._outboxes: dict[str, asyncio.Queue[Any]] = {}
        self._connections: dict[str, str] = {}  # session id -> the ingress connection that holds it
        self._housekeeping: asyncio.Task[None] | None = None
        self.stages = StageClock()  # the profile of the path: this tier's stages and its frames' FrameEncoder stages
        # a batch gathers the ticks of calls running at once: never more than the calls a replica runs
        batch = min(settings.anticipator_max_batch, calls_per_replica(settings))
        configure_batch(self.anticipate, batch, settings.encoder_max_delay_ms / 1e3)

    @property
    def registry(self) -> SessionRegistry:
        """Built by the first call, on the event loop Serve runs calls on: sessions hand messages to their loop, and
        the constructor runs on another one."""
        if self._registry is None:
            loop = asyncio.get_running_loop()
            self._registry = SessionRegistry(self.settings, self.metrics, loop, lambda: self.engine, self.journal)
            self._housekeeping = loop.create_task(self._housekeep(), name="r3d-cluster-housekeeping")
        return self._registry

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve: the deployment's model (ModelChoice), loaded before the first request; later, a reload's, loaded
        behind this call (see the module's note), after any reload still under way."""
        choice = ModelChoice.from_user_config(user_config)
        if not hasattr(self, "engine"):
            self.engine, self.choice = await asyncio.to_thread(choice.load, self.settings), choice
            self.metrics.model_loaded(self.engine.info)
            return
        previous = self._reloading
        self._reloading = asyncio.create_task(self._reload(choice, previous), name="r3d-cluster-reload")

    async def _reload(self, choice: ModelChoice, previous: asyncio.Task[None] | None) -> None:
        """Load the new model beside the old one, then switch every session of this replica to it (windows kept
        under the same frame encoder, reset with a notice under another) once no call uses the old one."""
        if previous is not None:
            await previous
        try:
            new = await asyncio.to_thread(choice.load, self.settings)
        except Exception as exc:  # the ingress loaded it first: a failure here is this replica's (memory, files)
            logger.exception("reload %s: the model did not load; still serving %s", choice.token, self.engine.model_id)
            self._reloads[choice.token] = Reloaded(0, 0, str(exc))
            return
        async with self._gate.switch():
            old, self.engine, self.choice = self.engine, new, choice
            kept, reset = self.registry.switch_model(old, new)
        self._reloads[choice.token] = Reloaded(kept, reset)
        self.metrics.model_loaded(new.info, reload=True)
        logger.info("model reloaded: %s -> %s (kept %d, reset %d)", old.model_id, new.model_id, kept, reset)

    async def model_info(self) -> ModelInfo:
        return self.engine.info

    async def model_choice(self) -> ModelChoice:
        return self.choice

    async def replica_state(self) -> ReplicaState:
        """This replica's process and the sessions it holds (tests and the benchmark look at where sessions live)."""
        return ReplicaState(os.getpid(), sorted(s.id for s in self.registry.all()))

    # --- calls from the ingress ----------------------------------------------------------------------------------

    async def open(self, session_id: str, hello: Hello, client: str, connection: str) -> list[WireModel]:
        """A hello on ``connection`` (the ingress's id for one socket): a new session under ``session_id`` (chosen
        by the ingress, the routing key), or the resumed one (hello.session_id), restored from the session store
        when this replica does not hold it. A resume takes the session from the connection that had it, which is
        told ``session_taken_over`` at its next call."""
        stream = SessionCreate.model_validate(hello.model_dump(include=set(SessionCreate.model_fields)))
        registry = self.registry
        try:
            self.engine.check_stream(stream)
            if hello.session_id:
                session = registry.attach(session_id, client=client)  # restores from the store if need be
                session.resume(stream, registry.tick_hz(stream, self.engine.spec.fps))
            else:
                session = registry.create(stream, session_id=session_id, client=client)
                session.transition(SessionState.ATTACHED)
        except ServerError as exc:
            return [error_out(exc, fatal=True)]
        self._connections[session_id] = connection
        self._attach(session)
        replies = welcome_messages(session, bool(hello.session_id), self.engine, self.settings)
        return replies + await self._drain(session.id)

    async def frames(
        self, session_id: str, connection: str, msgs: list[FrameIn], dropped: list[tuple[int, float]],
        stamps: CallStamps | None = None,
    ) -> list[WireModel]:  # fmt: skip
        """Frames of an open session, in order, after the (seq, ts) of those the ingress's queue dropped before them
        (latest wins) -> the messages they produced (errors, notices, predictions). ``stamps``: the ingress's, for
        the profile of the path (server/cluster/profile.py)."""
        t_recv = time.perf_counter()
        if stamps is not None:
            self.stages.observe("to_session", t_recv - stamps.sent_at)
            for received in stamps.received:
                self.stages.observe("ingress_wait", stamps.sent_at - received)
        # a replica that restored the session has no record of its connection: the first to call holds it
        if self._connections.setdefault(session_id, connection) != connection:
            return [ErrorOut(code=ErrorCode.SESSION_TAKEN_OVER, fatal=True, message=f"session {session_id} was "
                             "resumed on another connection; this connection is closed")]  # fmt: skip
        try:
            session = self._held(session_id)
            errors = self._count_dropped(session, dropped)
            async with self._gate.use():
                errors += await self._take(session, msgs, t_recv)
        except ServerError as exc:  # the session is gone (closed, expired, never restored)
            return [*await self._drain(session_id), error_out(exc, fatal=True)]
        replies = [*errors, *await self._drain(session_id)]
        self.stages.observe("session_call", time.perf_counter() - t_recv)
        return replies

    async def release(self, session_id: str, connection: str, bye: bool) -> None:
        """The client's socket ended: close after a bye, otherwise detach (kept for a reconnect). The end of a
        connection whose session was taken over changes nothing."""
        if self._connections.get(session_id, connection) != connection:
            return
        self._connections.pop(session_id, None)
        self._outboxes.pop(session_id, None)
        try:
            session = self.registry.get(session_id)
        except SessionNotFound:
            return
        if bye:
            self.registry.close(session, "the client said bye")
        else:
            self.registry.detach(session)

    # --- reads for the ingress's REST routes (server.cluster.service) --------------------------------------------

    async def report(self) -> ReplicaReport:
        """The sessions this replica holds and its metrics (the ingress's /v1/sessions and /metrics)."""
        self.metrics.session_counts(self.registry.counts())
        sessions = [s.public() for s in self.registry.all()]
        return ReplicaReport(os.getpid(), sessions, list(self.metrics.registry.collect()), self.stages.samples(),
                             self.choice, dict(self._reloads))  # fmt: skip

    async def prediction(self, session_id: str, after: int, timeout_s: float) -> AnticipationOut | ErrorOut | None:
        """The session's latest prediction with seq > ``after``, waiting up to ``timeout_s`` (GET .../prediction);
        the error as ErrorOut (404 when this replica does not hold the session: a read never restores one)."""
        try:
            return await self.registry.get(session_id).wait_prediction(after, timeout_s)
        except ServerError as exc:
            return error_out(exc)

    async def preview(self, session_id: str, kind: PreviewKind) -> bytes | ErrorOut | None:
        """The viewer's JPEG of the session's latest used frame (server.streaming.preview)."""
        try:
            session = self.registry.get(session_id)
        except ServerError as exc:
            return error_out(exc)
        return await asyncio.to_thread(session.preview, kind, self.engine)

    # --- the frame path ------------------------------------------------------------------------------------------

    def _count_dropped(self, session: Session, dropped: list[tuple[int, float]]) -> list[ErrorOut]:
        """Frames the ingress's queue dropped: admitted in order as on arrival in one process (counted received and
        accepted, resampled out or rejected), the accepted ones then counted dropped as a full queue does there."""
        errors: list[ErrorOut] = []
        lost = 0
        for seq, ts in dropped:
            try:
                if session.admit_frame(seq, ts) and session.commit_frame(seq, ts):
                    lost += 1
            except ProtocolError as exc:
                errors.append(error_out(exc))
        session.frames_dropped(lost)
        return errors

    async def _take(self, session: Session, msgs: list[FrameIn], t_recv: float) -> list[ErrorOut]:
        """Resampling decides in order which frames are used (each counted, as on arrival in one process); the used
        ones are encoded together (one request each, batched by the FrameEncoder with every other session's), their
        tokens pushed in order, the due ticks anticipated together, journaled, then their predictions sent.

        A used frame the FrameEncoder cannot decode is counted as dropped ("undecodable") with its error: here a
        frame is admitted before it is decoded, where one process decodes first and counts it as rejected."""
        session.touch()
        errors: list[ErrorOut] = []
        used: list[FrameIn] = []
        for msg in msgs:
            try:
                if session.admit_frame(msg.seq, msg.ts) and session.commit_frame(msg.seq, msg.ts):
                    used.append(msg)
            except ProtocolError as exc:
                errors.append(error_out(exc))
        if not used:
            return errors
        encoded = await self._encode(session, used)
        t_encoded = time.perf_counter()
        requests = []
        for msg, enc in zip(used, encoded, strict=True):
            if enc.frame_encoder_id != self.engine.frame_encoder_id:
                raise ServerError(
                    f"the FrameEncoder deployment serves encoder {enc.frame_encoder_id}, this session's tokens come "
                    f"from {self.engine.frame_encoder_id}; deploy one model version to both tiers",
                    code=ErrorCode.MODEL_ERROR,
                )
            try:
                enc.raise_error(msg.seq)
            except ProtocolError as exc:
                session.drop_frame("undecodable")
                errors.append(error_out(exc))
                continue
            assert enc.tokens is not None and enc.pixels is not None
            session.last_frame = msg  # the viewer's preview, as one process keeps it
            request = session.push_encoded(msg.seq, msg.ts, enc.tokens, enc.pixels)
            if request is not None:
                requests.append((request, enc.encode_s))
        t_anticipate = time.perf_counter()
        results = await asyncio.gather(*(self.anticipate(request.tokens) for request, _ in requests))
        t_journal = time.perf_counter()
        if requests:
            self.stages.observe("anticipate", t_journal - t_anticipate)
        decoded = [session.complete_tick(request, result, self.engine) for (request, _), (result, _) in
                   zip(requests, results, strict=True)]  # fmt: skip
        # journaled before the predictions leave, as the local worker does: a prediction never covers a lost frame
        await asyncio.to_thread(self.journal.flush, [session], self.engine.frame_encoder_id)
        self.stages.observe("journal", time.perf_counter() - t_journal)
        for ((_, encode_s), (_, anticipate_s)), done in zip(zip(requests, results, strict=True), decoded, strict=True):
            times = TickTimes(t_recv, t_recv, t_encoded - encode_s, encode_s, anticipate_s)
            send_prediction(session, *done, self.engine, times, self.metrics)
        return errors

    async def _encode(self, session: Session, used: list[FrameIn]) -> list[Encoded]:
        """The used frames' encodings: one FrameEncoder request for all of them, with the session's PersonLocator
        (per-session state, model/person.py) when the model has a person mask, which comes back updated. Its stages
        (server/cluster/profile.py) from the stamps each frame carried there and back."""
        pre = self.engine.spec.preprocessing
        job = EncodeJob(session.stream, used, self.choice, session.person_locator(pre), sent_at=time.perf_counter())
        encoded: list[Encoded] = await self.encoder.encode.remote(job)
        received = time.perf_counter()
        if job.locator is not None:
            session.keep_person_locator(pre, encoded[-1].locator)
        for enc in encoded:
            if (st := enc.stamps) is not None:
                self.stages.observe("to_encoder", st.arrived - st.sent_at)
                self.stages.observe("encoder_queue", st.started - st.arrived)
                self.stages.observe("decode", st.prepare_s)
                self.stages.observe("encode", enc.encode_s)
                self.stages.observe("from_encoder", received - st.done)
        return encoded

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def anticipate(self, windows: list[np.ndarray]) -> list[tuple[AnticipatorResult, float]]:
        """Windows of ticks due on this replica, across its sessions -> one padded, masked Anticipator call; each
        window's outputs with the call's seconds."""
        started = time.perf_counter()
        results = await asyncio.to_thread(self.engine.anticipate_batch, windows)
        seconds = time.perf_counter() - started
        self.metrics.observe_anticipate(seconds, len(windows))
        return [(r, seconds) for r in results]

    # --- sessions held here --------------------------------------------------------------------------------------

    def _held(self, session_id: str) -> Session:
        """The session, attached here. One this replica does not hold (its replica died, or the ring changed) is
        restored from the session store and claimed, which fences the replica that had it (SessionNotFound if the
        store has none); so is one held here that another replica claimed since (the ring moved it away and back:
        the copy here is behind), which costs every call one read of the owner epoch. Restoring runs on the loop,
        as the local path's resume does."""
        session = self.registry.get(session_id, restore=True)
        if session.state is not SessionState.ATTACHED:  # restored, or detached by housekeeping: its connection lives
            session.transition(SessionState.ATTACHED)
            self._attach(session)
        return session

    def _attach(self, session: Session) -> None:
        box: asyncio.Queue[Any] = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self._outboxes[session.id] = box

        async def closed_elsewhere(reason: str) -> None:  # a reap: the next call of this session answers it
            box.put_nowait(ErrorOut(code=ErrorCode.SESSION_NOT_FOUND, message=f"session closed: {reason}", fatal=True))

        session.attach_outbox(box, closed_elsewhere)

    async def _drain(self, session_id: str) -> list[WireModel]:
        await asyncio.sleep(0)  # Session.send hands messages over with call_soon_threadsafe: let them land
        box = self._outboxes.get(session_id)
        out: list[WireModel] = []
        while box is not None and not box.empty():
            out.append(box.get_nowait())
        return out

    def _detach_silent(self) -> None:
        """Detach sessions that no call reached for ``reconnect_grace_s``: their connection ended without a release
        reaching this replica, or another replica took them over (the ring changed); the registry then reaps them
        after their grace, as it does a client that went away."""
        now = time.monotonic()
        held = {s.id for s in self.registry.all()}
        for gone in set(self._connections) - held:  # closed or reaped sessions
            self._connections.pop(gone, None)
        for s in self.registry.all():
            if s.state is SessionState.ATTACHED and now - s.last_activity > self.settings.reconnect_grace_s:
                self.registry.detach(s)
                self._outboxes.pop(s.id, None)

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                self._detach_silent()
                self.registry.reap()
                await asyncio.to_thread(self.journal.retry, self.engine.frame_encoder_id)
                self.metrics.session_counts(self.registry.counts())
            except Exception:  # housekeeping must keep running
                logger.exception("housekeeping failed")
