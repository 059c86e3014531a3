"""The FrameEncoder deployment: stateless, one model per replica, frames of every session batched together.

A session replica sends the used frames of one call as they arrived, in one request (the hello's stream description
and the FrameIn messages: compressed colour and depth); this replica decodes and preprocesses them in order with the
local path's own function (server.streaming.ingest.prepare_frame), judges their pixels (health.pixel_status), and runs
the FrameEncoder once per ``@serve.batch`` of requests from any sessions and replicas. A frame that cannot be decoded
comes back as the protocol error the local path would raise, and the rest of its batch is encoded as usual.

One request per call, not per frame: with a person mask the session's PersonLocator must see its frames in order, and
one frame per request then meant one FrameEncoder round trip after another (docs/scale-out.md, the profile).
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
    """The used frames of one call of a session, in order, as its client sent them."""

    stream: SessionCreate
    frames: list[FrameIn]
    # the session's PersonLocator (model/person.py) when the model has a person mask: per-session state this
    # stateless deployment updates with the frames, in order, and hands back in each Encoded (a session has one
    # request in flight at a time)
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
    locator: PersonLocator | None = None  # the job's, as this frame left it
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

    async def encode(self, job: EncodeJob) -> list[Encoded]:
        """A call's frames, encoded in a batch with whatever else waits; stamped on arrival (the profile's queue
        wait). One Encoded per frame, in order."""
        encoded: list[Encoded] = await self._encode_batched((job, time.perf_counter()))
        return encoded

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _encode_batched(self, jobs: list[tuple[EncodeJob, float]]) -> list[list[Encoded]]:
        """Requests of any sessions -> one FrameEncoder call over all their frames (decoding and the model run off
        the event loop)."""
        return await asyncio.to_thread(self._encode_batch, jobs)

    def _encode_batch(self, arrivals: list[tuple[EncodeJob, float]]) -> list[list[Encoded]]:
        engine = self.engine
        batch_start = time.perf_counter()
        frames = [(i, job, arrived, frame) for i, (job, arrived) in enumerate(arrivals) for frame in job.frames]
        prepared: list[PreparedFrame | ProtocolError] = []
        prepare_s: list[float] = []
        for _, job, _, frame in frames:  # a job's frames in order: its locator sees them as they came
            t0 = time.perf_counter()
            try:
                prepared.append(prepare_frame(engine, job.stream, frame, t0, job.locator))
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
        out: list[list[Encoded]] = [[] for _ in arrivals]
        row = 0
        for (i, job, arrived, _), p, pix, p_s in zip(frames, prepared, pixels, prepare_s, strict=True):
            stamps = EncodeStamps(job.sent_at, arrived, batch_start, done, p_s)
            if isinstance(p, ProtocolError):
                encoded = Encoded(None, None, (p.code, p.message), encode_s, engine.frame_encoder_id, job.locator,
                                  stamps)  # fmt: skip
            else:
                encoded = Encoded(tokens[row], pix, None, encode_s, engine.frame_encoder_id, job.locator, stamps)
                row += 1
            out[i].append(encoded)
        return out

    async def run(self, fn: Callable[[Engine], T]) -> T:
        """``fn(engine)`` on this replica's model, off the event loop: a batch job's encoder chunks and Anticipator
        windows (server.batch.scoring through server.cluster.service.EncoderCalls), not batched with live frames."""
        return await asyncio.to_thread(fn, self.engine)
