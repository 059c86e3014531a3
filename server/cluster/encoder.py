"""The FrameEncoder deployment: stateless, one model per replica, frames of every session batched together.

A session replica sends the used frames of one call as they arrived, in one request (the hello's stream description
and the FrameIn messages: compressed colour and depth), with the model it serves (``ModelChoice``, both deployments'
``user_config``: a reload changes it, server/cluster/service.py); this replica decodes and preprocesses them in order
with the local path's own function (server.streaming.ingest.prepare_frame), judges their pixels (health.pixel_status),
and runs the FrameEncoder once per ``@serve.batch`` of requests from any sessions and replicas. A frame that cannot be
decoded comes back as the protocol error the local path would raise, and the rest of its batch is encoded as usual.

One request per call, not per frame: with a person mask the session's PersonLocator must see its frames in order, and
one frame per request then meant one FrameEncoder round trip after another (docs/scale-out.md, the profile).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from ray import serve

from model.person import PersonLocator
from server.cluster.options import ModelChoice
from server.cluster.profile import EncodeStamps
from server.engine import Engine
from server.protocol import ErrorCode, FrameIn, ProtocolError, SessionCreate, StreamStatus
from server.settings import Settings
from server.streaming.health import pixel_status
from server.streaming.ingest import prepare_frame
from server.streaming.session import PreparedFrame

logger = logging.getLogger(__name__)
T = TypeVar("T")
ENGINES_KEPT = 2  # models a FrameEncoder replica holds: during a reload, session replicas switch one after another


@dataclass(frozen=True)
class EncodeJob:
    """The used frames of one call of a session, in order, as its client sent them, and the model of its session
    replica."""

    stream: SessionCreate
    frames: list[FrameIn]
    model: ModelChoice
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
        self.settings = settings
        # the models of the session replicas' frames, newest last: a frame is encoded by the model its session
        # replica serves, so that its tokens join a window of that model's encoder, whichever replica switched first
        self.engines: OrderedDict[ModelChoice, Engine] = OrderedDict()
        self.choice = ModelChoice()  # the deployment's (batch jobs run on it); set by reconfigure before any request
        self._loading = threading.Lock()
        self._preloading: asyncio.Task[Engine] | None = None
        configure_batch(self._encode_batched, settings.encoder_max_batch, settings.encoder_max_delay_ms / 1e3)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve: the deployment's model (ModelChoice), loaded before the replica takes frames; later, a reload's,
        loaded behind this call (see server/cluster/sessions.py on why reconfigure returns at once). Frames of a
        model still loading wait for it (``engine``)."""
        self.choice = ModelChoice.from_user_config(user_config)
        if not self.engines:
            await asyncio.to_thread(self.engine, self.choice)
            return
        self._preloading = asyncio.create_task(asyncio.to_thread(self.engine, self.choice), name="r3d-encoder-reload")
        self._preloading.add_done_callback(self._loaded)

    @staticmethod
    def _loaded(task: asyncio.Task[Engine]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:  # a frame of it will raise it again
            logger.error("the reloaded model did not load: %s", exc)

    def engine(self, choice: ModelChoice) -> Engine:
        """The model ``choice`` names, loaded once (a reload's, or one a session replica asks for first); the
        oldest beyond ENGINES_KEPT are let go."""
        with self._loading:
            if choice not in self.engines:
                self.engines[choice] = choice.load(self.settings)
                while len(self.engines) > ENGINES_KEPT:
                    self.engines.popitem(last=False)
            self.engines.move_to_end(choice)
            return self.engines[choice]

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
        """Each model's requests together (one model but during a reload), answered in the requests' order."""
        out: dict[int, list[Encoded]] = {}
        for choice in dict.fromkeys(job.model for job, _ in arrivals):
            mine = [i for i, (job, _) in enumerate(arrivals) if job.model == choice]
            out.update(zip(mine, self._encode_with(self.engine(choice), [arrivals[i] for i in mine]), strict=True))
        return [out[i] for i in range(len(arrivals))]

    def _encode_with(self, engine: Engine, arrivals: list[tuple[EncodeJob, float]]) -> list[list[Encoded]]:
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
        return await asyncio.to_thread(lambda: fn(self.engine(self.choice)))
