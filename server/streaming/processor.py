"""StreamProcessor: the per-stream logic that a live session and a batch job both drive, so a recording replayed
through a session gives the same predictions as scoring it offline.

Per frame: ``admit`` (timestamp checks, resampling) -> ``use``, ``skip`` or ``reject``; the caller encodes used
frames with the FrameEncoder; ``push`` appends the tokens to the window and returns a ``TickRequest`` when a
prediction is due (a tick grid in stream time); the caller runs the Anticipator over ``request.tokens``;
``complete`` decodes its outputs.

Every frame outcome is counted in one place, ``record``: each received frame ends accepted, resampled out or rejected
(so ``received == accepted + resampled_out + rejected``), and an accepted frame may later be dropped (a full queue,
a model reload). The processor's ``observer`` (a live session's metrics) hears every outcome.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from export.interface import AnticipatorResult
from model import effective_rank
from server.engine import Engine, ModelSpec
from server.protocol import (
    CurrentAction,
    FutureAction,
    ModalityHealth,
    StreamCounters,
    StreamStatus,
    WindowInfo,
    check_timestamp,
)
from server.streaming.health import UNSEEN_COLOR, window_status
from server.streaming.resampler import SlotGrid
from server.streaming.window import TokenWindow

logger = logging.getLogger(__name__)


class FrameOutcome(StrEnum):
    ACCEPTED = "accepted"  # used by resampling; its tokens go to the window
    RESAMPLED_OUT = "resampled_out"  # valid, but resampling to the model's frame rate leaves it out
    REJECTED = "rejected"  # bad timestamp, size or content: answered with an error
    DROPPED = "dropped"  # accepted, then dropped by policy before encoding (full queue, model reload)


# (outcome, how many frames, why: the drop reason, "" otherwise)
OutcomeObserver = Callable[[FrameOutcome, int, str], None]


@dataclass
class Counters:
    received: int = 0
    accepted: int = 0
    resampled_out: int = 0
    dropped: int = 0
    rejected: int = 0

    def public(self) -> StreamCounters:
        return StreamCounters(**self.__dict__)


@dataclass(frozen=True)
class TickRequest:
    frame_seq: int
    frame_ts: float
    tokens: np.ndarray  # (T, 2, C) the window ending at this frame
    first_ts: float
    health_due: bool


@dataclass(frozen=True)
class TickOutcome:
    frame_seq: int
    frame_ts: float
    current: CurrentAction
    future: list[FutureAction]
    window: WindowInfo
    modality: ModalityHealth | None


@dataclass(frozen=True)
class AcceptMark:
    """The stream-side state right after a used frame was accepted (before its tokens exist): what a session restored
    from its journal continues from once that frame's tokens are in the window."""

    ts: float
    frames: dict[str, Any]
    counters: dict[str, int]


@dataclass
class StreamProcessor:
    spec: ModelSpec
    tick_hz: float  # the rate of ``ticks``: change both through ``set_tick_hz``
    health_interval_s: float
    max_jump_s: float
    frames: SlotGrid = field(init=False)
    ticks: SlotGrid = field(init=False)
    health: SlotGrid = field(init=False)
    window: TokenWindow = field(init=False)
    pixels: deque[tuple[int, StreamStatus, StreamStatus]] = field(init=False)  # (seq, rgb, depth) verdicts
    last_ts: float | None = None
    counters: Counters = field(default_factory=Counters)
    predictions: int = 0
    modality: ModalityHealth | None = None
    observer: OutcomeObserver | None = None
    accepted: deque[AcceptMark] = field(init=False)  # used frames whose tokens are not in the window yet
    durable: AcceptMark = field(init=False)  # the mark of the newest frame whose tokens are in the window

    def __post_init__(self) -> None:
        self.frames = SlotGrid(self.spec.fps)
        self.ticks = SlotGrid(self.tick_hz)
        self.health = SlotGrid(1.0 / self.health_interval_s)
        self.window = TokenWindow(self.spec.window_frames, self.spec.window_s)
        self.pixels = deque(maxlen=self.spec.window_frames)
        self._reset_marks()

    def _mark(self) -> AcceptMark:
        return AcceptMark(-math.inf if self.last_ts is None else self.last_ts, self.frames.state(),
                          dict(self.counters.__dict__))  # fmt: skip

    def _reset_marks(self) -> None:
        self.accepted = deque(maxlen=1024)
        self.durable = self._mark()

    def admit(self, seq: int, ts: float) -> bool:
        """Check a frame's timestamp (ProtocolError if bad) and say whether resampling uses it. Changes nothing."""
        check_timestamp(ts, self.last_ts, self.max_jump_s, seq)
        return self.frames.opens(ts)

    def record(self, outcome: FrameOutcome, count: int = 1, reason: str = "") -> None:
        """Count ``count`` frames with this outcome (the only place counters change) and tell the observer."""
        c = self.counters
        if outcome is FrameOutcome.DROPPED:
            c.dropped += count
        else:
            c.received += count
            if outcome is FrameOutcome.ACCEPTED:
                c.accepted += count
            elif outcome is FrameOutcome.RESAMPLED_OUT:
                c.resampled_out += count
            else:
                c.rejected += count
        if self.observer is not None:
            self.observer(outcome, count, reason)

    def skip(self, ts: float) -> None:
        """A valid frame that resampling leaves out."""
        self.last_ts = ts
        self.record(FrameOutcome.RESAMPLED_OUT)

    def use(self, ts: float) -> None:
        """A valid frame that resampling uses (its tokens come later through ``push``)."""
        self.frames.take(ts)
        self.last_ts = ts
        self.record(FrameOutcome.ACCEPTED)
        self.accepted.append(self._mark())

    def reject(self) -> None:
        """A frame refused with an error (timestamp, size, content); nothing else changes."""
        self.record(FrameOutcome.REJECTED)

    def set_tick_hz(self, tick_hz: float) -> None:
        """Predict at another rate from the next tick on: the tick grid is rebuilt at the new rate, anchored at the
        last tick, so the rate announced (``tick_hz``) is the rate delivered."""
        if tick_hz <= 0:
            raise ValueError(f"expected a tick rate above 0 per second, got {tick_hz}")
        if tick_hz != self.ticks.rate:
            self.ticks.rebase(tick_hz)
        self.tick_hz = tick_hz

    def push(
        self, seq: int, ts: float, tokens: np.ndarray, pixels: tuple[StreamStatus, StreamStatus] | None = None
    ) -> TickRequest | None:
        """Append a used frame's tokens (2, C) and its pixel verdicts (health.pixel_status); a TickRequest when a
        prediction is due at this frame."""
        self.window.append(seq, ts, tokens)
        while self.accepted and self.accepted[0].ts < ts:  # frames dropped before encoding
            self.accepted.popleft()
        if self.accepted and self.accepted[0].ts == ts:
            self.durable = self.accepted.popleft()
        if pixels is not None:
            self.pixels.append((seq, *pixels))
        if not self.ticks.opens(ts):
            return None
        self.ticks.take(ts)
        health_due = self.health.opens(ts) or self.modality is None or self.modality.erank_depth is None
        if health_due:
            self.health.take(ts)
        return TickRequest(seq, ts, self.window.tokens(), self.window.first.ts, health_due)

    def complete(self, request: TickRequest, result: AnticipatorResult, engine: Engine) -> TickOutcome:
        current, future = engine.decode(result)
        if request.health_due:
            first = self.window.first.seq
            verdicts = [(rgb, depth) for seq, rgb, depth in self.pixels if first <= seq <= request.frame_seq]
            self.modality = modality_health(request.tokens, result.fused[0], verdicts)
        self.predictions += 1
        t = request.tokens.shape[0]
        window = WindowInfo(frames=t, start_ts=request.first_ts, end_ts=request.frame_ts)
        return TickOutcome(request.frame_seq, request.frame_ts, current, future, window, self.modality)

    def reset_window(self) -> None:
        self.window.clear()
        self.pixels.clear()
        self.modality = None

    def rebind(self, spec: ModelSpec, tick_hz: float) -> None:
        """Follow a new model's frame rate, window bounds and the tick rate that follows from them (tokens are kept;
        the caller resets them if needed)."""
        if spec.fps != self.spec.fps:
            self.frames.rebase(spec.fps)
            self._reset_marks()  # the marks hold the old grid
        self.window.resize(spec.window_frames, spec.window_s)
        self.pixels = deque(self.pixels, maxlen=spec.window_frames)
        self.spec = spec
        self.set_tick_hz(tick_hz)

    def state(self) -> dict[str, Any]:
        """Everything a snapshot holds (``load_state`` continues from it)."""
        entries = self.window.entries()
        tokens = np.stack([e.tokens for e in entries]).astype("<f4") if entries else np.zeros((0, 2, 0), "<f4")
        return {
            **self._grids(self.frames.state(), self.last_ts, dict(self.counters.__dict__)),
            "window": {
                "seq": [e.seq for e in entries],
                "ts": [e.ts for e in entries],
                "shape": list(tokens.shape),
                "tokens": tokens.tobytes(),
            },
        }

    def durable_state(self) -> dict[str, Any]:
        """The state without the window as of the newest frame whose tokens are in the window: frames accepted but
        still queued for the encoder are left out (their resampling, ``last_ts`` and counters), so a session restored
        from its journal takes them again when the client re-sends the frames after ``last_ts``."""
        d = self.durable
        return self._grids(d.frames, None if d.ts == -math.inf else d.ts, d.counters)

    def _grids(self, frames: dict[str, Any], last_ts: float | None, counters: dict[str, int]) -> dict[str, Any]:
        return {
            "tick_hz": self.tick_hz,
            "frames": frames,
            "ticks": self.ticks.state(),
            "health": self.health.state(),
            "last_ts": last_ts,
            "counters": counters,
            "predictions": self.predictions,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.frames = SlotGrid.from_state(state["frames"])
        self.ticks = SlotGrid.from_state(state["ticks"])
        self.tick_hz = self.ticks.rate
        self.health = SlotGrid.from_state(state["health"])
        self.last_ts = state["last_ts"]
        self.counters = Counters(**state["counters"])
        self.predictions = int(state["predictions"])
        w = state["window"]
        tokens = np.frombuffer(w["tokens"], "<f4").reshape(w["shape"]).astype(np.float32)
        self.window.clear()
        for seq, ts, tok in zip(w["seq"], w["ts"], tokens, strict=True):
            self.window.append(int(seq), float(ts), tok)
        self._reset_marks()


def _erank(m: np.ndarray) -> float | None:
    try:
        return round(effective_rank(m), 4)
    except ValueError:  # all-zero or non-finite tokens: a dead stream has no rank to report
        return None


def modality_health(
    tokens: np.ndarray, fused: np.ndarray, pixels: list[tuple[StreamStatus, StreamStatus]] | None = None
) -> ModalityHealth:
    """Effective rank of the window's fused (T, C), RGB and depth tokens (T, 2, C), their RGB/depth balance, and a
    verdict per stream from the window's pixel verdicts and ranks (server/streaming/health.py)."""
    t = tokens.shape[0]
    if t < 2:
        return ModalityHealth(frames=t, erank_fused=None, erank_rgb=None, erank_depth=None, balance=None)
    rgb, depth = _erank(tokens[:, 0]), _erank(tokens[:, 1])
    seen = pixels or []
    rgb_status = window_status([p[0] for p in seen], rgb)
    if rgb_status in UNSEEN_COLOR:  # colour the encoder did not see has no rank of its own (its token is constant)
        rgb = None
    balance = round(rgb / depth, 4) if rgb is not None and depth else None
    return ModalityHealth(
        frames=t, erank_fused=_erank(fused[:t]), erank_rgb=rgb, erank_depth=depth, balance=balance,
        rgb_status=rgb_status, depth_status=window_status([p[1] for p in seen], depth),
    )  # fmt: skip
