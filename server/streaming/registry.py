"""The sessions of one server: creation within limits, attach / detach / close, reaping of idle and detached ones,
model changes (windows kept when the frame encoder is unchanged, reset with a notice otherwise), snapshots, and the
session journal: a session unknown here but kept by the session store (its server restarted, or another server had
it) is restored from the store when a client asks for it, and claimed (server/streaming/journal.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Callable

import msgpack

from server.engine import Engine
from server.errors import NotReady, ServerError, SessionBusy, SessionNotFound, TooManySessions
from server.metrics import Metrics
from server.protocol import Notice, NoticeCode, SessionCreate
from server.session_store import StoreUnavailable
from server.settings import Settings
from server.streaming.journal import SessionJournal
from server.streaming.processor import StreamProcessor
from server.streaming.session import Session, SessionEvent, SessionState
from server.streaming.snapshot import parse_snapshot, processor_state, snapshot_document

logger = logging.getLogger(__name__)
TAKEN_OVER = "another server took this session over"  # the close reason when another process owns a session
RETRY_UNKNOWN_S = 10.0  # Retry-After when every slot is held by a live stream (no known end)
RETRY_STORE_S = 2.0  # Retry-After when the session store is unreachable


class SessionRegistry:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        loop: asyncio.AbstractEventLoop,
        engine: Callable[[], Engine],
        journal: SessionJournal,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.loop = loop
        self._engine = engine
        self.journal = journal
        journal.on_fenced = self._taken_over
        self._sessions: dict[str, Session] = {}
        self._detached_at: dict[str, float] = {}
        self._client: dict[str, str] = {}  # session id -> the address that opened it (per-client limit)

    def __len__(self) -> int:
        return len(self._sessions)

    def _on_event(self, event: SessionEvent) -> None:
        if event.new is SessionState.DETACHED:
            self._detached_at[event.session_id] = time.monotonic()
        else:
            self._detached_at.pop(event.session_id, None)

    def tick_hz(self, stream: SessionCreate, fps: float) -> float:
        """The session's tick rate: the hello's (or the default), at most one per model frame."""
        return min(stream.tick_hz or self.settings.default_tick_hz, fps)

    def create(self, stream: SessionCreate, *, session_id: str | None = None, client: str | None = None) -> Session:
        """A new session; TooManySessions (429, with when to retry) when the server or this client is full."""
        if len(self._sessions) >= self.settings.max_sessions:
            retry = self.retry_after_s()
            raise TooManySessions(
                f"the server already has {len(self._sessions)} sessions (max_sessions={self.settings.max_sessions}); "
                f"close one (DELETE /v1/sessions/{{id}}) or retry in {retry:g} s",
                retry_after_s=retry,
            )
        held = [sid for sid, c in self._client.items() if client is not None and c == client]
        if client is not None and len(held) >= self.settings.max_sessions_per_client:
            retry = self.retry_after_s(held)
            raise TooManySessions(
                f"this client already holds {len(held)} sessions (max_sessions_per_client="
                f"{self.settings.max_sessions_per_client}); close one or retry in {retry:g} s",
                retry_after_s=retry,
            )
        engine = self._engine()
        engine.check_stream(stream)  # a depth-only stream needs a depth-only model (color_required)
        sid = session_id or secrets.token_urlsafe(12)
        if sid in self._sessions:
            raise SessionBusy(f"session id {sid!r} is already in use")
        processor = StreamProcessor(
            engine.spec,
            self.tick_hz(stream, engine.spec.fps),
            self.settings.health_interval_s,
            self.settings.max_timestamp_jump_s,
        )
        session = Session(
            sid, stream, processor, queue_size=self.settings.session_queue_size, loop=self.loop,
            model_id=engine.model_id, listeners=[self._on_event], metrics=self.metrics,
        )  # fmt: skip
        self._sessions[sid] = session
        if client is not None:
            self._client[sid] = client
        self.journal.track(session)
        logger.info("session %s created (%dx%d, %s)", sid, stream.width, stream.height, stream.camera)
        return session

    def get(self, session_id: str, *, restore: bool = False, client: str | None = None) -> Session:
        """A session of this server; with ``restore`` (a client resuming it) also one that the session store keeps,
        restored here and claimed, and the store's in place of a copy here that another process claimed since.
        Reads never restore: a claim takes the session from the server that has it."""
        session = self._sessions.get(session_id)
        if session is not None and restore and not self.journal.owns(session):
            self._drop_stale(session)
            session = None
        if session is None and restore:
            session = self._restore_from_store(session_id, client)
        if session is None or session.closed:
            raise SessionNotFound(f"no session {session_id!r} (it never existed, was closed, or expired)")
        return session

    def _restore_from_store(self, session_id: str, client: str | None) -> Session | None:
        try:
            data = self.journal.store.load(session_id)
        except StoreUnavailable as exc:
            logger.warning("session %s: cannot look it up: %s", session_id, exc)
            raise NotReady(f"session {session_id!r} is not on this server and the session store cannot be reached "
                           "to restore it; retry in a few seconds", retry_after_s=RETRY_STORE_S) from None  # fmt: skip
        if data is None:
            return None
        engine = self._engine()
        try:
            doc = parse_snapshot(data, engine)
        except ServerError as exc:  # another frame encoder (409) or a journal this model cannot use (422)
            message = f"session {session_id!r} in the session store cannot continue here: {exc.message}"
            raise type(exc)(message) from None
        session = self.create(doc.stream, session_id=session_id, client=client)
        try:
            session.load_processor_state(processor_state(doc))
        except Exception:
            self.close(session, "its journal could not be loaded")
            raise
        self.journal.claim(session, engine.frame_encoder_id)
        self.metrics.session_restored()
        logger.info("session %s restored from the session store (%d tokens, last frame at %s s)", session_id,
                    len(session.processor.window), session.processor.last_ts)  # fmt: skip
        return session

    def _drop_stale(self, session: Session) -> None:
        """A copy held here that another process claimed since: it went on there (a resume on another server, or a
        cluster ring that moved it away and back), so this copy's window is behind. Closed here before the store's is
        restored; the close's delete carries the stale epoch, so the store refuses it and the journal stays."""
        logger.warning("session %s: another process took it over since this copy was last written; restoring it "
                       "from the session store", session.id)  # fmt: skip
        self.metrics.session_fenced()
        self.close(session, TAKEN_OVER)

    def _taken_over(self, session: Session) -> None:
        """The journal was fenced: another process claimed the session (worker thread)."""
        self.loop.call_soon_threadsafe(self.close, session, TAKEN_OVER)

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    def attach(self, session_id: str, *, client: str | None = None) -> Session:
        """Attach a connection to a created or detached session, or take an attached one over.

        A client that lost its connection resumes at once, often before the server has seen the old socket go:
        that connection's receive loop may be busy with a frame's decode or a full queue, or the peer vanished
        without a close and only a failed write or ping will tell. The session id is the client's secret, so the
        resume wins: the old connection gets a fatal ``session_taken_over`` and is closed (Session.take_over)."""
        session = self.get(session_id, restore=True, client=client)
        if session.state is SessionState.ATTACHED:
            session.take_over()
        else:
            session.transition(SessionState.ATTACHED)
        return session

    def detach(self, session: Session) -> None:
        if session.state is SessionState.ATTACHED:
            session.transition(SessionState.DETACHED)
        session.detach_outbox()

    def close(self, session: Session, reason: str) -> None:
        if session.closed:
            return
        closer = session.closer
        session.transition(SessionState.CLOSED)
        session.drop_queued()
        session.detach_outbox()
        if closer is not None:  # a WebSocket is attached: tell it and close it
            self.loop.call_soon_threadsafe(lambda: self.loop.create_task(closer(reason)))
        self._sessions.pop(session.id, None)
        self._detached_at.pop(session.id, None)
        self._client.pop(session.id, None)
        self.journal.forget(session)
        self.metrics.forget_session(session.id)
        logger.info("session %s closed: %s", session.id, reason)

    def grace_s(self, session: Session) -> float:
        """How long a detached session waits for its client: shorter when it never received a frame (a hello
        and a disconnect must not hold a slot for the full reconnect grace)."""
        started = session.processor.counters.received > 0
        return self.settings.reconnect_grace_s if started else self.settings.unstarted_grace_s

    def retry_after_s(self, among: list[str] | None = None) -> float:
        """Seconds until the first of these sessions (default: all) would be reaped, at least 1."""
        now = time.monotonic()
        ends = []
        for s in self.all():
            if among is not None and s.id not in among:
                continue
            detached = self._detached_at.get(s.id)
            if detached is not None:
                ends.append(detached + self.grace_s(s) - now)
            elif s.state is SessionState.CREATED:
                ends.append(s.last_activity + self.settings.session_idle_timeout_s - now)
        return float(max(1, math.ceil(min(ends)))) if ends else RETRY_UNKNOWN_S

    def reap(self) -> list[str]:
        """Close detached sessions past their grace and created ones idle past the idle timeout."""
        now = time.monotonic()
        closed = []
        for s in self.all():
            detached = self._detached_at.get(s.id)
            grace = self.grace_s(s)
            if detached is not None and now - detached > grace:
                self.close(s, f"not reconnected within {grace:g} s")
                closed.append(s.id)
            elif s.state is SessionState.CREATED and now - s.last_activity > self.settings.session_idle_timeout_s:
                self.close(s, f"idle for {self.settings.session_idle_timeout_s:g} s")
                closed.append(s.id)
        return closed

    def counts(self) -> dict[str, int]:
        out = {state.value: 0 for state in SessionState if state is not SessionState.CLOSED}
        for s in self.all():
            out[s.state.value] = out.get(s.state.value, 0) + 1
        return out

    def switch_model(self, old: Engine, new: Engine) -> tuple[int, int]:
        """Rebind every session to a new model (call with the worker's batch lock held). Returns (kept, reset)."""
        kept = reset = 0
        same_encoder = old.frame_encoder_id == new.frame_encoder_id
        for s in self.all():
            frames = s.rebind(
                new.spec, self.tick_hz(s.stream, new.spec.fps), new.model_id, reset_window=not same_encoder
            )
            if same_encoder:
                kept += 1
            else:
                reset += 1
                s.send(
                    Notice(
                        code=NoticeCode.WINDOW_RESET,
                        message=f"the new model {new.model_id} has a different frame encoder "
                        f"({new.frame_encoder_id}, was {old.frame_encoder_id}): the {frames} buffered tokens "
                        "were dropped and the window starts again",
                        details={"frames_dropped": frames, "frame_encoder_id": new.frame_encoder_id},
                    )
                )
            s.send(
                Notice(
                    code=NoticeCode.MODEL_RELOADED,
                    message=f"model {old.model_id} was replaced by {new.model_id} ({new.info.backend})",
                    details={
                        "model_id": new.model_id,
                        "previous_model_id": old.model_id,
                        "window_kept": same_encoder,
                        "model": new.info.model_dump(mode="json"),
                    },  # send_size 'model' clients follow its sizes
                )
            )
        if not same_encoder:  # the stored windows hold the old encoder's tokens: each is rewritten whole
            self.journal.reset()
        return kept, reset

    # --- snapshots -----------------------------------------------------------------------------------------------

    def snapshot(self, session: Session) -> bytes:
        engine = self._engine()
        with session.lock:
            doc = snapshot_document(
                session.id, session.stream, session.model_id, engine.frame_encoder_id, session.processor.state()
            )
        return msgpack.packb(doc, use_bin_type=True)

    def restore(self, data: bytes, *, client: str | None = None) -> Session:
        """A session from a snapshot, validated before anything is created; nothing is left behind on failure."""
        doc = parse_snapshot(data, self._engine())
        sid = doc.session_id
        session = self.create(doc.stream, session_id=sid if sid and sid not in self._sessions else None, client=client)
        try:
            session.load_processor_state(processor_state(doc))
        except Exception:
            self.close(session, "its snapshot could not be loaded")
            raise
        return session
