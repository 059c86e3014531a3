"""The inference worker: one dedicated thread that owns the model. It batches queued frames across sessions through
the FrameEncoder (up to ``max_batch`` frames, waiting at most ``max_delay_s`` to fill a batch), appends the tokens to
each session's window in order, runs the Anticipator once for every tick due after that batch (across sessions, one
padded and masked batch: Engine.anticipate_batch), journals the batch's sessions (server/streaming/journal.py), and
then hands predictions back to the sessions: a prediction leaves only once the frames it covers are journaled.
Batch jobs submit their encode / anticipate calls here too; session frames go first, one job call runs after each
session batch so jobs are never starved.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, NamedTuple, TypeVar

from server.engine import Engine
from server.metrics import Metrics
from server.protocol import AnticipationOut, ErrorCode, ErrorOut, Latency, StreamCounters
from server.streaming.journal import SessionJournal
from server.streaming.processor import TickOutcome, TickRequest
from server.streaming.session import PreparedFrame, Session

logger = logging.getLogger(__name__)
T = TypeVar("T")


class _Decoded(NamedTuple):
    """A tick's decoded outputs, waiting for the journal before they go out."""

    session: Session
    frame: PreparedFrame
    outcome: TickOutcome
    counters: StreamCounters
    seq: int
    anticipate_s: float


class InferenceWorker:
    def __init__(
        self,
        engine: Engine,
        metrics: Metrics,
        *,
        max_batch: int,
        max_delay_s: float,
        max_tick_batch: int = 64,
        journal: SessionJournal | None = None,
    ) -> None:
        self.engine = engine
        self.journal = journal  # None: no sessions (local batch scoring)
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_tick_batch = max_tick_batch
        self.max_delay_s = max_delay_s
        self.batch_lock = threading.Lock()  # held while a batch runs; a model reload takes it to swap atomically
        self._cond = threading.Condition()
        self._pending: OrderedDict[str, Session] = OrderedDict()
        self._calls: deque[tuple[Callable[[Engine], Any], Future[Any]]] = deque()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="r3d-inference", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)
        for _, fut in self._calls:
            fut.cancel()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def notify(self, session: Session) -> None:
        """A session queued a frame."""
        with self._cond:
            self._pending[session.id] = session
            self._cond.notify()

    def call(self, fn: Callable[[Engine], T]) -> Future[T]:
        """Run ``fn(engine)`` on the worker thread (batch jobs); the future holds its result."""
        fut: Future[T] = Future()
        with self._cond:
            if self._stop:
                fut.set_exception(RuntimeError("the inference worker has stopped"))
                return fut
            self._calls.append((fn, fut))
            self._cond.notify()
        return fut

    # --- the loop ------------------------------------------------------------------------------------------------

    def _queued(self) -> int:
        return sum(s.queue_depth() for s in self._pending.values())

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._calls and not self._queued():
                    self._cond.wait(0.5)
                if self._stop:
                    return
                deadline = time.perf_counter() + self.max_delay_s
                while self._queued() and self._queued() < self.max_batch and not self._stop:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            try:
                with self.batch_lock:
                    batch = self._collect()
                    if batch:
                        self._process(batch, self.engine)
                    self._run_one_call()
            except Exception:  # the worker must survive anything a batch throws
                logger.exception("inference worker: batch failed")

    def _collect(self) -> list[tuple[Session, PreparedFrame]]:
        """Round-robin across sessions, one frame per session per round, each session's order kept."""
        with self._cond:
            sessions = [s for s in self._pending.values() if not s.closed]
            self._pending = OrderedDict((s.id, s) for s in sessions if s.queue_depth())
        batch: list[tuple[Session, PreparedFrame]] = []
        while len(batch) < self.max_batch:
            progressed = False
            for s in sessions:
                if len(batch) >= self.max_batch:
                    break
                taken = s.take(1)
                if taken:
                    batch.append((s, taken[0]))
                    progressed = True
            if not progressed:
                break
        with self._cond:  # fair next time: sessions served last come first
            for s in sessions:
                if s.queue_depth() and s.id in self._pending:
                    self._pending.move_to_end(s.id)
        return batch

    def _run_one_call(self) -> None:
        with self._cond:
            if not self._calls:
                return
            fn, fut = self._calls.popleft()
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn(self.engine))
        except BaseException as exc:  # handed to the caller
            fut.set_exception(exc)

    def _process(self, batch: list[tuple[Session, PreparedFrame]], engine: Engine) -> None:
        pre, uses_color = engine.spec.preprocessing, engine.spec.uses_color

        def stale(f: PreparedFrame) -> bool:
            """Prepared for a previous model's input size, or without the image a model that uses colour needs."""
            return f.preprocessing != pre or (uses_color and f.image is None)

        for s, _ in [(s, f) for s, f in batch if stale(f)]:
            s.drop_frame("model_reload")
        batch = [(s, f) for s, f in batch if not stale(f) and not s.closed]
        if not batch:
            return
        t_start = time.perf_counter()
        try:
            tokens = engine.encode_prepared([f.image for _, f in batch], [f.depth for _, f in batch])
        except Exception as exc:
            logger.exception("frame encoder failed on a batch of %d", len(batch))
            for s in {s.id: s for s, _ in batch}.values():
                s.send(ErrorOut(code=ErrorCode.MODEL_ERROR, message=f"the frame encoder failed: {type(exc).__name__}"))
            return
        encode_s = time.perf_counter() - t_start
        self.metrics.observe_encode(encode_s, len(batch))
        ticks: list[tuple[Session, PreparedFrame, TickRequest]] = []
        for (s, f), tok in zip(batch, tokens, strict=True):
            request = s.push_tokens(f, tok)
            if request is not None:
                ticks.append((s, f, request))
        decoded: list[_Decoded] = []
        for i in range(0, len(ticks), self.max_tick_batch):
            decoded += self._anticipate(ticks[i : i + self.max_tick_batch], engine)
        if self.journal is not None:
            self.journal.flush({s.id: s for s, _ in batch}.values(), engine.frame_encoder_id)
        self._deliver(decoded, t_start, encode_s, engine)

    def _anticipate(self, ticks: list[tuple[Session, PreparedFrame, TickRequest]], engine: Engine) -> list[_Decoded]:
        """Every tick due after this encoder batch, across sessions, in one padded and masked Anticipator call."""
        t0 = time.perf_counter()
        try:
            results = engine.anticipate_batch([request.tokens for _, _, request in ticks])
        except Exception as exc:
            logger.exception("anticipator failed on a batch of %d ticks", len(ticks))
            for s in {s.id: s for s, _, _ in ticks}.values():
                s.send(ErrorOut(code=ErrorCode.MODEL_ERROR, message=f"the anticipator failed: {type(exc).__name__}"))
            return []
        anticipate_s = time.perf_counter() - t0
        self.metrics.observe_anticipate(anticipate_s, len(ticks))
        return [
            _Decoded(s, f, *s.complete_tick(request, result, engine), anticipate_s)
            for (s, f, request), result in zip(ticks, results, strict=True)
        ]

    def _deliver(self, decoded: list[_Decoded], t_start: float, encode_s: float, engine: Engine) -> None:
        for s, f, outcome, counters, seq, anticipate_s in decoded:
            times = TickTimes(f.t_recv, f.t_queued, t_start, encode_s, anticipate_s)
            send_prediction(s, outcome, counters, seq, engine, times, self.metrics)


class TickTimes(NamedTuple):
    """When a ticking frame arrived and was queued, when its encoder batch started (perf_counter of this process),
    and how long the encoder and anticipator calls took."""

    t_recv: float
    t_queued: float
    t_start: float
    encode_s: float
    anticipate_s: float


def send_prediction(
    s: Session, outcome: TickOutcome, counters: StreamCounters, seq: int, engine: Engine, times: TickTimes,
    metrics: Metrics,
) -> None:  # fmt: skip
    """A decoded tick (Session.complete_tick) -> the session's AnticipationOut, sent (the local worker and the
    cluster's session replicas both deliver predictions through here)."""
    done = time.perf_counter()
    latency = Latency(
        frame_to_prediction_ms=round((done - times.t_recv) * 1e3, 3),
        queue_ms=round((times.t_start - times.t_queued) * 1e3, 3),
        encode_ms=round(times.encode_s * 1e3, 3),
        anticipate_ms=round(times.anticipate_s * 1e3, 3),
    )
    s.send(
        AnticipationOut(
            session_id=s.id, seq=seq, frame_seq=outcome.frame_seq, frame_ts=outcome.frame_ts,
            model_id=engine.model_id, current=outcome.current, future=outcome.future, window=outcome.window,
            latency=latency, modality=outcome.modality, counters=counters,
        )
    )  # fmt: skip
    metrics.observe_prediction(s.id, done - times.t_recv, outcome.modality)
