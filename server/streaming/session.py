"""A streaming session: lifecycle state machine, bounded input queue with a named drop policy, and delivery of
predictions and notices back to its connection (WebSocket) or to HTTP pollers.

Threads: the event loop enqueues frames and reads state; the inference worker takes frames and pushes tokens. Both
hold ``session.lock`` while touching the queue, the processor or the state. Messages the worker produces reach the
event loop through ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from export.interface import AnticipatorResult
from model import Preprocessing
from model.person import PersonLocator
from server.engine import Engine, ModelSpec
from server.errors import SessionStateError
from server.metrics import Metrics, NullMetrics
from server.protocol import (
    AnticipationOut,
    FrameIn,
    Notice,
    NoticeCode,
    ProtocolError,
    SessionCreate,
    SessionPublic,
    SessionStateName,
    StreamCounters,
    StreamStatus,
    WireModel,
)
from server.streaming.health import pixel_status
from server.streaming.preview import PreviewKind, render_preview
from server.streaming.processor import FrameOutcome, StreamProcessor, TickOutcome, TickRequest

logger = logging.getLogger(__name__)

SessionState = SessionStateName
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.CREATED: frozenset({SessionState.ATTACHED, SessionState.CLOSED}),
    SessionState.ATTACHED: frozenset({SessionState.DETACHED, SessionState.CLOSED}),
    SessionState.DETACHED: frozenset({SessionState.ATTACHED, SessionState.CLOSED}),
    SessionState.CLOSED: frozenset(),
}
OUTBOX_SIZE = 64
DROP_NOTICE_INTERVAL_S = 1.0
T = TypeVar("T")


def queue_latest_wins(queue: deque[T], item: T, size: int) -> list[T]:
    """The ``latest_wins`` policy of a session's queue of ``size`` frames: queue ``item``, dropping the oldest frames
    beyond ``size``; returns the dropped ones (Session.enqueue here, the ingress of a cluster's session there; both
    count them with Session.frames_dropped)."""
    dropped = []
    while len(queue) >= size:
        dropped.append(queue.popleft())
    queue.append(item)
    return dropped


@dataclass(frozen=True)
class PreparedFrame:
    """A decoded, preprocessed frame waiting for the FrameEncoder."""

    seq: int
    ts: float
    image: np.ndarray | None  # (3, H, W) float32; None when the model does not see colour (a depth-only model)
    depth: np.ndarray  # (D, h, w) float32, D = preprocessing.depth_channels
    preprocessing: Preprocessing
    t_recv: float  # time.perf_counter() when the message arrived
    t_queued: float
    color: StreamStatus | None = None  # health.color_presence: why there is no image to judge, None when there is


@dataclass(frozen=True)
class SessionEvent:
    session_id: str
    old: SessionState
    new: SessionState
    at: float


class Session:
    def __init__(
        self,
        session_id: str,
        stream: SessionCreate,
        processor: StreamProcessor,
        *,
        queue_size: int,
        loop: asyncio.AbstractEventLoop,
        model_id: str,
        listeners: list[Callable[[SessionEvent], None]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.id = session_id
        self.stream = stream
        self.processor = processor
        self.queue_size = queue_size
        self.backpressure = stream.backpressure
        self.loop = loop
        self.model_id = model_id
        self.lock = threading.Lock()
        self.state = SessionState.CREATED
        self.created_at = time.time()
        self.last_activity = time.monotonic()
        self._queue: deque[PreparedFrame] = deque()
        self._room = asyncio.Event()
        self._room.set()
        self._outbox: asyncio.Queue[Any] | None = None
        self.closer: Callable[[str], Coroutine[Any, Any, None]] | None = None
        self._let_go: Callable[[], None] | None = None
        self._prediction_ready = asyncio.Condition()
        self.latest: AnticipationOut | None = None
        self.last_frame: FrameIn | None = None  # the latest used frame as received: the viewer's preview
        self._last_drop_notice = 0.0
        self._listeners = list(listeners or [])
        self.fps_window: deque[float] = deque(maxlen=64)  # perf_counter of recent used frames
        self.metrics = metrics or NullMetrics()
        # where the person is (model/person.py): per stream state of the model's preprocessing, rebuilt when a
        # model reload changes it; not part of a snapshot (a resumed stream learns its room again)
        self._locator: tuple[Preprocessing, PersonLocator | None] | None = None
        processor.observer = self._count_in_metrics

    def _count_in_metrics(self, outcome: FrameOutcome, count: int, reason: str) -> None:
        for _ in range(count):
            if outcome is FrameOutcome.DROPPED:
                self.metrics.frame_dropped(self.id, reason)
            else:
                self.metrics.frame(self.id, outcome.value)

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def transition(self, new: SessionState) -> None:
        with self.lock:
            old = self.state
            if new not in TRANSITIONS[old]:
                raise SessionStateError(f"session {self.id} is {old.value}; it cannot become {new.value}")
            self.state = new
        event = SessionEvent(self.id, old, new, time.time())
        logger.info("session %s: %s -> %s", self.id, old.value, new.value)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # an observer never breaks the session
                logger.exception("session listener failed on %s", event)

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    def person_locator(self, pre: Preprocessing) -> PersonLocator | None:
        """This stream's PersonLocator for the served model's preprocessing (None when it has no person mask)."""
        if self._locator is None or self._locator[0] != pre:
            self._locator = (pre, pre.locator())
        return self._locator[1]

    def keep_person_locator(self, pre: Preprocessing, locator: PersonLocator | None) -> None:
        """Adopt the locator a frame was prepared with elsewhere (the cluster's FrameEncoder replica)."""
        self._locator = (pre, locator)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def resume(self, stream: SessionCreate, tick_hz: float) -> None:
        """A client reattached: the camera may come back with other settings and tick rate; the window stays."""
        with self.lock:
            self.stream = stream
            self.backpressure = stream.backpressure
            self.processor.set_tick_hz(tick_hz)

    def rebind(self, spec: ModelSpec, tick_hz: float, model_id: str, *, reset_window: bool) -> int:
        """Follow a new model (its frame rate, window, tick rate); returns the tokens the window held before."""
        with self.lock:
            self.processor.rebind(spec, tick_hz)
            self.model_id = model_id
            frames = len(self.processor.window)
            if reset_window:
                self.processor.reset_window()
        return frames

    # --- frame outcomes (counted by the processor, in one place) --------------------------------------------------

    def admit_frame(self, seq: int, ts: float) -> bool:
        """On arrival: whether resampling uses the frame (a skipped one is counted here). SessionStateError when the
        session is closed; ProtocolError (counted as rejected) for a bad timestamp."""
        with self.lock:
            if self.closed:
                raise SessionStateError(f"session {self.id} is closed; open a new one")
            use = self._admit(seq, ts)
            if not use:
                self.processor.skip(ts)
        return use

    def commit_frame(self, seq: int, ts: float) -> bool:
        """After decoding: admit again (a concurrent HTTP post of this session may have used a later frame
        meanwhile), then use or skip the frame; True when it was used."""
        with self.lock:
            use = self._admit(seq, ts)
            if use:
                self.processor.use(ts)
            else:
                self.processor.skip(ts)
        return use

    def _admit(self, seq: int, ts: float) -> bool:
        try:
            return self.processor.admit(seq, ts)
        except ProtocolError:
            self.processor.reject()
            raise

    def reject_frame(self) -> None:
        """A frame refused with an error outside the timestamp checks (too large, undecodable)."""
        with self.lock:
            self.processor.reject()

    def drop_frame(self, reason: str) -> None:
        """An accepted frame that will never be encoded (e.g. prepared for a model that was since replaced)."""
        with self.lock:
            self.processor.record(FrameOutcome.DROPPED, 1, reason)

    # --- input queue ---------------------------------------------------------------------------------------------

    def enqueue(self, frame: PreparedFrame) -> int:
        """Queue a frame; with LATEST_WINS a full queue drops its oldest frames. Returns how many were dropped."""
        with self.lock:
            dropped = len(queue_latest_wins(self._queue, frame, self.queue_size))
            if len(self._queue) >= self.queue_size:
                self._room.clear()
        self.frames_dropped(dropped)
        return dropped

    def frames_dropped(self, count: int) -> None:
        """``count`` accepted frames dropped by the full queue (latest wins): counted (``dropped``, reason
        ``queue_full``), and the client told by a ``frames_dropped`` notice at most once a second."""
        if not count:
            return
        with self.lock:
            self.processor.record(FrameOutcome.DROPPED, count, "queue_full")
            total = self.processor.counters.dropped
        now = time.monotonic()
        if now - self._last_drop_notice >= DROP_NOTICE_INTERVAL_S:
            self._last_drop_notice = now
            self.send(
                Notice(
                    code=NoticeCode.FRAMES_DROPPED,
                    message=f"the session's queue of {self.queue_size} frames was full: {total} frames dropped "
                    "so far (latest wins); send fewer frames or use backpressure 'block'",
                    details={"dropped": total, "queue_size": self.queue_size},
                )
            )

    async def wait_for_room(self) -> None:
        """BLOCK policy: wait until the queue has room."""
        while True:
            with self.lock:
                if len(self._queue) < self.queue_size or self.closed:
                    return
                self._room.clear()
            await self._room.wait()

    def queue_depth(self) -> int:
        return len(self._queue)

    def take(self, limit: int) -> list[PreparedFrame]:
        """Worker: remove up to ``limit`` queued frames, oldest first."""
        with self.lock:
            out = [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]
        if out:
            self.loop.call_soon_threadsafe(self._room.set)
        return out

    def drop_queued(self) -> int:
        with self.lock:
            n = len(self._queue)
            self._queue.clear()
        self.loop.call_soon_threadsafe(self._room.set)
        return n

    # --- output --------------------------------------------------------------------------------------------------

    def attach_outbox(
        self,
        box: asyncio.Queue[Any],
        closer: Callable[[str], Coroutine[Any, Any, None]],
        let_go: Callable[[], None] | None = None,
    ) -> None:
        """Route this session's messages to a connection's outbox; ``closer`` ends that connection (session closed),
        ``let_go`` tells it that another connection took the session over (``take_over``)."""
        self._outbox = box
        self.closer = closer
        self._let_go = let_go

    def detach_outbox(self) -> None:
        self._outbox = None
        self.closer = None
        self._let_go = None
        self._room.set()  # a blocked reader of a gone connection must not hang

    def take_over(self) -> None:
        """A new connection resumes this attached session: the connection that held it is let go (it stops using
        the session and closes) and the session stays attached, for the new connection to attach its outbox."""
        let_go = self._let_go
        self.detach_outbox()
        logger.info("session %s: taken over by a new connection", self.id)
        if let_go is not None:
            let_go()

    def send(self, message: WireModel) -> None:
        """Thread-safe: hand a message to the event loop for the attached connection (and HTTP pollers)."""
        try:
            self.loop.call_soon_threadsafe(self._deliver, message)
        except RuntimeError:  # the loop is closed: the server is gone
            logger.debug("session %s: loop closed, message dropped", self.id)

    def _deliver(self, message: WireModel) -> None:
        if isinstance(message, AnticipationOut):
            self.latest = message
            self.loop.create_task(self._notify_pollers())
        if self._outbox is not None:
            put_latest_wins(self._outbox, message)

    async def _notify_pollers(self) -> None:
        async with self._prediction_ready:
            self._prediction_ready.notify_all()

    async def wait_prediction(self, after: int, timeout_s: float) -> AnticipationOut | None:
        """The latest prediction with seq > ``after``, waiting up to ``timeout_s``; None if there is none."""

        def newer() -> bool:
            return self.latest is not None and self.latest.seq > after

        if not newer() and timeout_s > 0:
            async with self._prediction_ready:
                try:
                    await asyncio.wait_for(self._prediction_ready.wait_for(newer), timeout_s)
                except TimeoutError:
                    pass
        return self.latest if newer() else None

    # --- tokens and ticks (the inference worker) ------------------------------------------------------------------

    def push_tokens(self, frame: PreparedFrame, tokens: np.ndarray) -> TickRequest | None:
        """An encoded frame's tokens (2, C) into the window; the tick request when a prediction is due. Nothing
        happens to a closed session."""
        return self.push_encoded(frame.seq, frame.ts, tokens, pixel_status(frame.image, frame.depth, frame.color))

    def push_encoded(
        self, seq: int, ts: float, tokens: np.ndarray, pixels: tuple[StreamStatus, StreamStatus]
    ) -> TickRequest | None:
        """push_tokens for a frame encoded elsewhere (a cluster's FrameEncoder replica, which also judged its
        pixels: health.pixel_status)."""
        with self.lock:
            if self.closed:
                return None
            self.fps_window.append(time.perf_counter())
            return self.processor.push(seq, ts, tokens, pixels)

    def complete_tick(
        self, request: TickRequest, result: AnticipatorResult, engine: Engine
    ) -> tuple[TickOutcome, StreamCounters, int]:
        """Decode a tick's Anticipator outputs: the outcome, the counters then, and the prediction's sequence number."""
        with self.lock:
            outcome = self.processor.complete(request, result, engine)
            return outcome, self.processor.counters.public(), self.processor.predictions

    # --- views ---------------------------------------------------------------------------------------------------

    def counters(self) -> StreamCounters:
        with self.lock:
            return self.processor.counters.public()

    def load_processor_state(self, state: dict[str, Any]) -> None:
        """Continue from a snapshot's processor state."""
        with self.lock:
            self.processor.load_state(state)

    def preview(self, kind: PreviewKind, engine: Engine) -> bytes | None:
        """The viewer's JPEG of the latest used frame (server.streaming.preview); None before one."""
        return render_preview(self.last_frame, kind, engine.frame_shapes(self.stream), self.stream.depth_scale)

    def public(self) -> SessionPublic:
        with self.lock:
            return SessionPublic(
                id=self.id,
                state=self.state,
                created_at=self.created_at,
                stream=self.stream,
                tick_hz=self.processor.tick_hz,
                window_frames=len(self.processor.window),
                queue_depth=len(self._queue),
                counters=self.processor.counters.public(),
                predictions=self.processor.predictions,
                model_id=self.model_id,
            )

    def fps(self) -> float:
        """Used frames per second over the recent past (wall clock)."""
        times = list(self.fps_window)
        if len(times) < 2 or time.perf_counter() - times[-1] > 2.0:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)


def put_latest_wins(box: asyncio.Queue[Any], message: Any) -> None:
    """Queue an outgoing message; a full outbox (a slow reader) loses its oldest predictions, never anything else."""
    if box.full():
        items = []
        while not box.empty():
            items.append(box.get_nowait())
        predictions = [i for i, m in enumerate(items) if isinstance(m, AnticipationOut)]
        drop = set(predictions[: max(1, len(items) - box.maxsize + 1)])
        for i, m in enumerate(items):
            if i not in drop:
                box.put_nowait(m)
    box.put_nowait(message)
