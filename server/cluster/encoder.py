"""The FrameEncoder deployment: stateless, one model per replica, frames of every session batched together.

A session replica sends each used frame as it arrived (the hello's stream description and the FrameIn message:
compressed colour and depth); this replica decodes and preprocesses it with the local path's own function
(server.streaming.ingest.prepare_frame), judges its pixels (health.pixel_status), and runs the FrameEncoder once per
``@serve.batch`` of frames from any sessions and replicas. A frame that cannot be decoded comes back as the
protocol error the local path would raise, and the rest of its batch is encoded as usual.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from ray import serve

from model.person import PersonLocator
from server.cluster.profile import EncodeStamps
from server.engine import Engine
from server.protocol import ErrorCode, FrameIn, ProtocolError, SessionCreate, StreamStatus
from server.runtime import open_engine
from server.settings import Settings
from server.streaming.health import pixel_status
from server.streaming.ingest import prepare_frame
from server.streaming.session import PreparedFrame

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class EncodeJob:
    """One used frame of a session, as its client sent it."""

    stream: SessionCreate
    frame: FrameIn
    # the session's PersonLocator (model/person.py) when the model has a person mask: per-session state this
    # stateless deployment updates with the frame and hands back in Encoded (a session sends one frame at a time)
    locator: PersonLocator | None = None
    sent_at: float = 0.0  # perf_counter when the session replica sent it (server/cluster/profile.py)


@dataclass(frozen=True)
class Encoded:
    """A frame's tokens (2, C) float32 and pixel verdicts (rgb, depth), or the protocol error it raised."""

    tokens: np.ndarray | None
    pixels: tuple[StreamStatus, StreamStatus] | None
    error: tuple[ErrorCode, str] | None
    encode_s: float  # the batch's FrameEncoder call
    frame_encoder_id: str
    locator: PersonLocator | None = None  # the job's, updated by this frame
    stamps: EncodeStamps | None = None  # when it arrived, its batch ran, and its decoding seconds

    def raise_error(self, seq: int) -> None:
        if self.error is not None:
            raise ProtocolError(self.error[0], self.error[1], seq=seq)


def configure_batch(method: Any, max_batch_size: int, wait_s: float) -> None:
    """Set a ``@serve.batch`` method's limits from the settings (the decorator's are only defaults)."""
    method.set_max_batch_size(max_batch_size)
    method.set_batch_wait_timeout_s(wait_s)


class FrameEncoder:
    """Serve deployment class (wrapped by server.cluster.app.build_app with its replica and resource options)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.model_path is not None  # checked by the command before deploying
        self.engine: Engine = open_engine(settings.model_path, settings.backend, settings, settings.model_path.name)
        configure_batch(self._encode_batched, settings.encoder_max_batch, settings.encoder_max_delay_ms / 1e3)

    async def frame_encoder_id(self) -> str:
        return self.engine.frame_encoder_id

    async def encode(self, job: EncodeJob) -> Encoded:
        """One frame, encoded in a batch with whatever else waits; stamped on arrival (the profile's queue wait)."""
        encoded: Encoded = await self._encode_batched((job, time.perf_counter()))
        return encoded

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _encode_batched(self, jobs: list[tuple[EncodeJob, float]]) -> list[Encoded]:
        """Frames of any sessions -> one FrameEncoder call (decoding and the model run off the event loop)."""
        return await asyncio.to_thread(self._encode_batch, jobs)

    def _encode_batch(self, arrivals: list[tuple[EncodeJob, float]]) -> list[Encoded]:
        engine = self.engine
        batch_start = time.perf_counter()
        jobs = [job for job, _ in arrivals]
        prepared: list[PreparedFrame | ProtocolError] = []
        prepare_s: list[float] = []
        for job in jobs:
            t0 = time.perf_counter()
            try:
                prepared.append(prepare_frame(engine, job.stream, job.frame, t0, job.locator))
            except ProtocolError as exc:
                prepared.append(exc)
            prepare_s.append(time.perf_counter() - t0)
        good = [p for p in prepared if isinstance(p, PreparedFrame)]
        tokens = np.zeros((0, 2, 0), np.float32)
        started = time.perf_counter()
        if good:
            tokens = engine.encode_prepared([p.image for p in good], [p.depth for p in good])
        encode_s = time.perf_counter() - started
        pixels = [None if isinstance(p, ProtocolError) else pixel_status(p.image, p.depth, p.color) for p in prepared]
        done = time.perf_counter()
        out: list[Encoded] = []
        row = 0
        for (job, arrived), p, pix, p_s in zip(arrivals, prepared, pixels, prepare_s, strict=True):
            stamps = EncodeStamps(job.sent_at, arrived, batch_start, done, p_s)
            if isinstance(p, ProtocolError):
                out.append(Encoded(None, None, (p.code, p.message), encode_s, engine.frame_encoder_id, job.locator,
                                   stamps))  # fmt: skip
                continue
            out.append(Encoded(tokens[row], pix, None, encode_s, engine.frame_encoder_id, job.locator, stamps))
            row += 1
        return out

    async def run(self, fn: Callable[[Engine], T]) -> T:
        """``fn(engine)`` on this replica's model, off the event loop: a batch job's encoder chunks and Anticipator
        windows (server.batch.scoring through server.cluster.service.EncoderCalls), not batched with live frames."""
        return await asyncio.to_thread(fn, self.engine)
