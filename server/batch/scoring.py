"""Batch scoring of one recording: the batch driver of the same StreamProcessor, FrameEncoder and Anticipator that
streaming sessions use (a recording replayed through a session gives the same predictions). Server jobs
(server.batch.jobs) and local scoring (``python -m server.batch``, behind ``r3d-score --bundle``) both run it.

Frames are checked and resampled exactly as a session does (timestamps, size against the first frame, depth with no
reading), encoded in chunks of ``encoder_max_batch`` frames and anticipated at every due tick through the inference
worker, so jobs share the model with live sessions and never run inference on their own threads.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

import numpy as np

from model import ImageDecodeError
from model.person import PersonLocator
from model.preprocess import jpeg_size
from rgbd import Frame
from rgbd.dataset import StoredFrame
from server.batch.sources import SourceSequence, source_color
from server.engine import Engine
from server.errors import ModelError
from server.protocol import (
    ErrorCode,
    FrameResult,
    ProtocolError,
    SequenceResult,
    StreamStatus,
    TickResult,
    check_depth_content,
)
from server.settings import Settings
from server.streaming.health import color_presence, pixel_status
from server.streaming.processor import StreamProcessor

logger = logging.getLogger(__name__)
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Cancelled(Exception):
    """The job was cancelled or the server is shutting down."""


class Pending(Protocol[T_co]):
    def result(self) -> T_co: ...


class ModelCalls(Protocol):
    """Where a job's model calls run: the process's InferenceWorker (between live batches), or on a Ray cluster
    the FrameEncoder deployment (server.cluster.service.EncoderCalls)."""

    def call(self, fn: Callable[[Engine], T]) -> Pending[T]: ...


def _on_worker(worker: ModelCalls, model_id: str, fn: Callable[[Engine], T]) -> T:
    def guarded(engine: Engine) -> T:
        if engine.model_id != model_id:
            raise ModelError(
                f"the model was reloaded during the job ({model_id} -> {engine.model_id}); submit the job again"
            )
        return fn(engine)

    return worker.call(guarded).result()


def score_sequence(
    seq: SourceSequence,
    *,
    worker: ModelCalls,
    engine: Engine,
    settings: Settings,
    tick_hz: float | None = None,
    progress: Callable[[int], None] = lambda n: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> SequenceResult:
    """Score every frame of one recording; the ticks are what a session at ``tick_hz`` (default: one per model
    frame) would have sent. ``settings`` give the modality-health period, the timestamp-jump limit and the encoder
    batch, as for sessions."""
    tick = min(tick_hz or engine.spec.fps, engine.spec.fps)
    proc = StreamProcessor(engine.spec, tick, settings.health_interval_s, settings.max_timestamp_jump_s)
    chunk = settings.encoder_max_batch
    names = engine.spec.classes
    frames: list[dict[str, object]] = []
    ticks: list[TickResult] = []
    pending: list[tuple[int, float, np.ndarray | None, np.ndarray, StreamStatus | None]] = []
    shapes: tuple[tuple[int, int] | None, tuple[int, ...]] | None = None
    locator = engine.spec.preprocessing.locator()  # one per recording, as one per streaming session

    def flush() -> None:
        if not pending:
            return
        images, depths = [p[2] for p in pending], [p[3] for p in pending]
        tokens = _on_worker(worker, engine.model_id, lambda e: e.encode_prepared(images, depths))
        for (index, ts, image, dmap, color), tok in zip(pending, tokens, strict=True):
            request = proc.push(index, ts, tok, pixel_status(image, dmap, color))
            if request is None:
                continue
            result = _on_worker(worker, engine.model_id, lambda e, r=request: e.anticipate(r.tokens))  # type: ignore[misc]
            out = proc.complete(request, result, engine)
            ticks.append(
                TickResult(frame_index=out.frame_seq, frame_ts=out.frame_ts, current=out.current, future=out.future,
                           window=out.window, modality=out.modality)
            )  # fmt: skip
        pending.clear()

    for i, frame in enumerate(seq.frames()):
        if cancelled():
            raise Cancelled(f"scoring of {seq.id!r} stopped at frame {i}")
        row: dict[str, object] = {"index": i, "ts": frame.timestamp, "accepted": False, "label": frame.label}
        frames.append(row)
        try:
            use = proc.admit(i, frame.timestamp)
            if use:
                color_shape = _color_shape(source_color(frame), i)
                shapes = shapes or (color_shape, frame.depth.shape)
                if (color_shape, frame.depth.shape) != shapes:
                    raise ProtocolError(
                        ErrorCode.WRONG_RESOLUTION,
                        f"expected colour {shapes[0]} and depth {shapes[1]} like the first frame, got "
                        f"{color_shape} and {frame.depth.shape}",
                        seq=i,
                    )
                check_depth_content(frame.depth, i)
                image, dmap = prepare_source_frame(engine, frame, i, locator)
        except ProtocolError as exc:
            proc.reject()
            row["error"] = f"{exc.code.value}: {exc.message}"
            continue
        if not use:
            proc.skip(frame.timestamp)
            continue
        proc.use(frame.timestamp)
        row["accepted"] = True
        has_color = source_color(frame) is not None  # in every frame or none (the shape check)
        pending.append((i, frame.timestamp, image, dmap, color_presence(has_color, has_color, image is not None)))
        if len(pending) >= chunk:
            flush()
        progress(i + 1)
    flush()
    progress(len(frames))
    return SequenceResult(
        id=seq.id, fps_in=seq.fps_in, frames=_frame_results(frames, ticks, names), ticks=ticks,
        counters=proc.counters.public(),
    )  # fmt: skip


def _corrupt(color: bytes, index: int) -> ProtocolError:
    return ProtocolError(
        ErrorCode.CORRUPT_IMAGE,
        f"colour JPEG of {len(color)} bytes could not be decoded (corrupt or truncated)",
        seq=index,
    )


def _color_shape(color: np.ndarray | bytes | None, index: int) -> tuple[int, int] | None:
    """(H, W) of a frame's colour: a JPEG's from its header (not decoded), an array's from its shape."""
    if color is None:
        return None
    if isinstance(color, bytes):
        try:
            return jpeg_size(color)
        except ImageDecodeError as exc:
            raise _corrupt(color, index) from exc
    h, w = color.shape[:2]
    return h, w


def prepare_source_frame(
    engine: Engine, frame: Frame | StoredFrame, index: int, locator: PersonLocator | None = None
) -> tuple[np.ndarray | None, np.ndarray]:
    """One frame of a recording -> the model's inputs by engine.prepare (model.prepare_inputs, the feature cache's
    and streaming's function); a dataset's JPEG goes in still encoded. A JPEG that cannot be decoded rejects the
    frame (ProtocolError corrupt_image), as in a session. No image for a depth-only model (Engine.prepare)."""
    color = source_color(frame)
    try:
        return engine.prepare(color, frame.depth, frame.depth_scale, locator)
    except ImageDecodeError as exc:
        assert isinstance(color, bytes)  # only JPEG bytes are decoded here
        raise _corrupt(color, index) from exc


def _frame_results(rows: list[dict[str, object]], ticks: list[TickResult], names: tuple[str, ...]) -> list[FrameResult]:
    """Each frame gets the current action of the latest tick at or before it (what a live client showed then)."""
    tick_at = [t.frame_index for t in ticks]
    out = []
    for row in rows:
        k = bisect.bisect_right(tick_at, int(row["index"])) - 1  # type: ignore[call-overload]
        cur = ticks[k].current if k >= 0 else None
        out.append(
            FrameResult.model_validate(
                row | {"action": cur.action if cur else None, "action_label": cur.label if cur else None,
                       "probability": cur.probability if cur else None}
            )
        )  # fmt: skip
    return out
