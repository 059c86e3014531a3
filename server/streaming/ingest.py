"""Frame ingestion shared by the WebSocket and HTTP paths: timestamp and resampling checks on the event loop (cheap),
decoding and preprocessing in the decode thread pool, then the session's bounded queue and a nudge to the worker.

A bad frame raises ProtocolError and changes nothing in the session except its ``rejected`` counter. The session's
methods (``admit_frame``, ``commit_frame``, ``reject_frame``, ``enqueue``) count every outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from model import ImageDecodeError
from model.person import PersonLocator
from model.preprocess import jpeg_size
from rgbd.frame import MissingColorError
from server.engine import Engine
from server.errors import ServerError
from server.metrics import Metrics
from server.protocol import (
    Backpressure,
    ColorCodec,
    ErrorCode,
    FrameIn,
    FrameStatus,
    ProtocolError,
    SendSize,
    SessionCreate,
    decode_color,
    decode_depth,
)
from server.streaming.health import color_presence
from server.streaming.session import PreparedFrame, Session
from server.streaming.worker import InferenceWorker


def prepare_frame(
    engine: Engine, stream: SessionCreate, msg: FrameIn, t_recv: float, locator: PersonLocator | None = None
) -> PreparedFrame:
    """Decode (checked against the session's hello) and preprocess one frame; runs in the decode pool. locator:
    the session's (Session.person_locator), fed its frames in order: a session ingests one frame at a time."""
    depth_scale = msg.depth_scale or stream.depth_scale
    color_shape, depth_shape = engine.frame_shapes(stream)
    try:
        color = _color(msg, color_shape, stream.color, engine.spec.uses_color)
        depth = decode_depth(msg, depth_shape, depth_scale)
    except ProtocolError as exc:
        if exc.code is ErrorCode.WRONG_RESOLUTION:  # say which contract the size comes from
            raise ProtocolError(exc.code, f"{exc.message} ({_size_contract(stream)})", seq=exc.seq) from exc
        raise
    try:
        image, dmap = engine.prepare(color, depth, depth_scale, locator)
    except ImageDecodeError as exc:  # strict decoding: a truncated or damaged JPEG is an error, not grey pixels
        raise _corrupt_jpeg(msg) from exc
    except MissingColorError as exc:  # a depth-only session whose model was reloaded with one that needs colour
        raise ProtocolError(ErrorCode.COLOR_REQUIRED, str(exc), seq=msg.seq) from exc
    presence = color_presence(stream.color, color is not None, image is not None)
    return PreparedFrame(msg.seq, msg.ts, image, dmap, engine.spec.preprocessing, t_recv, time.perf_counter(), presence)


def _size_contract(stream: SessionCreate) -> str:
    if stream.send_size is SendSize.MODEL:
        return "hello.send_size is 'model': frames resized to welcome.model.image_size / depth_size"
    return "hello.send_size is 'full': frames at the hello's width x height and depth_width x depth_height"


def _corrupt_jpeg(msg: FrameIn) -> ProtocolError:
    return ProtocolError(
        ErrorCode.CORRUPT_IMAGE,
        f"colour JPEG of {len(msg.color or b'')} bytes could not be decoded (corrupt or truncated)",
        seq=msg.seq,
    )


def _color(msg: FrameIn, expected: tuple[int, int], declared: bool, needed: bool) -> np.ndarray | bytes | None:
    """JPEG colour stays encoded once its header shows the expected (H, W): the model's input path decodes it
    straight to model resolution (model.prepare_inputs). Other codecs are decoded here. None for a depth-only
    stream, whose frames must not carry colour, and for an RGB-D stream's frame without colour (its colour camera
    stopped), which only a model that does not use colour (``needed`` false) accepts."""
    if not declared:
        if msg.color is not None or msg.color_codec is not None:
            raise ProtocolError(
                ErrorCode.BAD_FRAME,
                "expected no colour: the hello declared a depth-only stream (color false); drop color and "
                "color_codec, or open an RGB-D session",
                seq=msg.seq,
            )
        return None
    if msg.color is None and msg.color_codec is None and not needed:
        return None  # colour missing from an RGB-D stream: modality health says so; the model does not need it
    if msg.color is None or msg.color_codec is None:
        raise ProtocolError(
            ErrorCode.BAD_FRAME,
            "expected color and color_codec: the hello declared an RGB-D stream and the model uses colour in every "
            "frame; a depth-only camera says color: false in its hello",
            seq=msg.seq,
        )
    if not needed:  # a depth-only model ignores colour: neither decoded nor checked beyond being there
        return msg.color
    if msg.color_codec is not ColorCodec.JPEG:
        return decode_color(msg, expected)
    try:
        size = jpeg_size(msg.color)
    except ImageDecodeError as exc:
        raise _corrupt_jpeg(msg) from exc
    if size != expected:
        raise ProtocolError(
            ErrorCode.WRONG_RESOLUTION,
            f"expected colour {expected[0]}x{expected[1]}, got {size[0]}x{size[1]}",
            seq=msg.seq,
        )
    return msg.color


async def ingest_frame(
    session: Session,
    msg: FrameIn,
    t_recv: float,
    *,
    worker: InferenceWorker,
    pool: Executor,
    metrics: Metrics,
    held: Callable[[], bool] = lambda: True,
) -> FrameStatus:
    """Take one frame message into a session: QUEUED, RESAMPLED_OUT, or ProtocolError naming what was wrong.

    held: whether the caller still holds the session once the frame is decoded (a WebSocket whose session another
    connection resumed meanwhile does not: the resume's welcome announced ``last_ts`` without this frame, and its
    client re-sends it, so taking it here would make that a duplicate). ServerError session_taken_over if not."""
    session.touch()
    if not session.admit_frame(msg.seq, msg.ts):
        return FrameStatus.RESAMPLED_OUT
    if session.backpressure is Backpressure.BLOCK:
        await session.wait_for_room()
    t0 = time.perf_counter()
    engine = worker.engine
    try:
        frame = await asyncio.get_running_loop().run_in_executor(
            pool, prepare_frame, engine, session.stream, msg, t_recv, session.person_locator(engine.spec.preprocessing)
        )
    except ProtocolError:
        session.reject_frame()
        raise
    metrics.observe_decode(time.perf_counter() - t0)
    if not held():
        raise ServerError(f"session {session.id} was resumed on another connection while frame {msg.seq} decoded; "
                          "the frame is not taken", code=ErrorCode.SESSION_TAKEN_OVER)  # fmt: skip
    if not session.commit_frame(msg.seq, msg.ts):
        return FrameStatus.RESAMPLED_OUT
    session.last_frame = msg
    session.enqueue(frame)
    worker.notify(session)
    return FrameStatus.QUEUED
