"""The sessions of one server: creation within limits, attach / detach / close, reaping of idle and detached ones,
model changes (windows kept when the frame encoder is unchanged, reset with a notice otherwise), and snapshots.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import msgpack

from server.engine import Engine
from server.errors import SessionBusy, SessionError, SessionNotFound, TooManySessions
from server.metrics import Metrics
from server.protocol import Notice, NoticeCode, SessionCreate
from server.settings import Settings
from server.streaming.processor import StreamProcessor
from server.streaming.session import Session, SessionEvent, SessionState

logger = logging.getLogger(__name__)

SNAPSHOT_FORMAT = "r3d-session-snapshot"
SNAPSHOT_VERSION = 1


class SessionRegistry:
    def __init__(
        self, settings: Settings, metrics: Metrics, loop: asyncio.AbstractEventLoop, engine: Callable[[], Engine]
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.loop = loop
        self._engine = engine
        self._sessions: dict[str, Session] = {}
        self._detached_at: dict[str, float] = {}

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

    def create(self, stream: SessionCreate, *, session_id: str | None = None) -> Session:
        if len(self._sessions) >= self.settings.max_sessions:
            raise TooManySessions(
                f"the server already has {len(self._sessions)} sessions (max_sessions={self.settings.max_sessions}); "
                "close one (DELETE /v1/sessions/{id}) or try again later"
            )
        engine = self._engine()
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
        logger.info("session %s created (%dx%d, %s)", sid, stream.width, stream.height, stream.camera)
        return session

    def get(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None or session.closed:
            raise SessionNotFound(f"no session {session_id!r} (it never existed, was closed, or expired)")
        return session

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    def attach(self, session_id: str) -> Session:
        session = self.get(session_id)
        if session.state is SessionState.ATTACHED:
            raise SessionBusy(f"session {session_id!r} already has a WebSocket attached; close it first")
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
        self.metrics.forget_session(session.id)
        logger.info("session %s closed: %s", session.id, reason)

    def reap(self) -> list[str]:
        """Close detached sessions past the reconnect grace and created ones idle past the idle timeout."""
        now = time.monotonic()
        closed = []
        for s in self.all():
            detached = self._detached_at.get(s.id)
            if detached is not None and now - detached > self.settings.reconnect_grace_s:
                self.close(s, f"not reconnected within {self.settings.reconnect_grace_s:g} s")
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
                    details={"model_id": new.model_id, "previous_model_id": old.model_id, "window_kept": same_encoder},
                )
            )
        return kept, reset

    # --- snapshots -----------------------------------------------------------------------------------------------

    def snapshot(self, session: Session) -> bytes:
        engine = self._engine()
        with session.lock:
            doc: dict[str, Any] = {
                "format": SNAPSHOT_FORMAT,
                "version": SNAPSHOT_VERSION,
                "session_id": session.id,
                "stream": session.stream.model_dump(mode="json"),
                "model_id": session.model_id,
                "frame_encoder_id": engine.frame_encoder_id,
                "processor": session.processor.state(),
            }
        return msgpack.packb(doc, use_bin_type=True)

    def restore(self, data: bytes) -> Session:
        try:
            doc = msgpack.unpackb(data, raw=False)
            ok = isinstance(doc, dict) and doc.get("format") == SNAPSHOT_FORMAT
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            ok = False
        if not ok:
            raise SessionError(f"expected a session snapshot ({SNAPSHOT_FORMAT!r} msgpack), got something else")
        if doc.get("version") != SNAPSHOT_VERSION:
            raise SessionError(f"unknown snapshot version {doc.get('version')!r}; this server reads {SNAPSHOT_VERSION}")
        engine = self._engine()
        if doc["frame_encoder_id"] != engine.frame_encoder_id:
            raise SessionError(
                f"the snapshot's tokens come from frame encoder {doc['frame_encoder_id']}, this server runs "
                f"{engine.frame_encoder_id}; restore it on a server with the same model"
            )
        stream = SessionCreate.model_validate(doc["stream"])
        sid = doc.get("session_id")
        session = self.create(stream, session_id=sid if isinstance(sid, str) and sid not in self._sessions else None)
        with session.lock:
            session.processor.load_state(doc["processor"])
        return session
