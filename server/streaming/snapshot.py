"""Session snapshots as received by ``POST /v1/sessions/restore``: validated field by field before anything is
created, so a malformed or hostile snapshot is answered 422 (409 when its tokens come from another frame encoder)
saying which field was wrong, what was expected and what came, and leaves no session behind."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgpack
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.engine import Engine
from server.errors import BadSnapshot, SessionStateError
from server.protocol import MAX_TIMESTAMP_S, SessionCreate

SNAPSHOT_FORMAT = "r3d-session-snapshot"
SNAPSHOT_VERSION = 1

Count = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0, le=MAX_TIMESTAMP_S)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class GridState(_Strict):
    rate: float = Field(gt=0, le=1000)
    t0: Seconds | None
    last_slot: Count | None


class CountersState(_Strict):
    received: Count
    accepted: Count
    resampled_out: Count
    dropped: Count
    rejected: Count


class WindowState(_Strict):
    seq: list[Count]
    ts: list[Seconds]
    shape: tuple[Count, Literal[2], Count]
    tokens: bytes


class ProcessorState(_Strict):
    tick_hz: float = Field(gt=0, le=120)
    frames: GridState
    ticks: GridState
    health: GridState
    last_ts: Seconds | None
    counters: CountersState
    predictions: Count
    window: WindowState


class SnapshotDoc(_Strict):
    format: Literal["r3d-session-snapshot"]
    version: Literal[1]
    session_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None
    stream: SessionCreate
    model_id: Annotated[str, Field(max_length=200)]
    frame_encoder_id: Annotated[str, Field(max_length=200)]
    processor: ProcessorState


def snapshot_document(
    session_id: str, stream: SessionCreate, model_id: str, frame_encoder_id: str, processor: dict[str, Any]
) -> dict[str, Any]:
    """A session's snapshot document (msgpack it for the wire); ``processor`` is ``StreamProcessor.state()`` (or,
    for a journal head, ``durable_state()``, which has no window)."""
    return {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "session_id": session_id,
        "stream": stream.model_dump(mode="json"),
        "model_id": model_id,
        "frame_encoder_id": frame_encoder_id,
        "processor": processor,
    }


def parse_snapshot(data: bytes, engine: Engine) -> SnapshotDoc:
    """A snapshot's bytes -> its validated document, checked against this server's model; BadSnapshot (422) or
    SessionStateError (409, another frame encoder) otherwise."""
    try:
        raw = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raw = None
    if not isinstance(raw, dict) or raw.get("format") != SNAPSHOT_FORMAT:
        raise BadSnapshot(f"expected a session snapshot ({SNAPSHOT_FORMAT!r} msgpack map), got something else")
    if raw.get("version") != SNAPSHOT_VERSION:
        raise BadSnapshot(f"expected snapshot version {SNAPSHOT_VERSION}, got {raw.get('version')!r}")
    try:
        doc = SnapshotDoc.model_validate(raw)
    except ValidationError as exc:
        raise BadSnapshot(f"invalid snapshot: {_problems(exc)}") from None
    if doc.frame_encoder_id != engine.frame_encoder_id:
        raise SessionStateError(
            f"expected a snapshot of frame encoder {engine.frame_encoder_id} (this server's model), got tokens of "
            f"{doc.frame_encoder_id}; restore it on a server with the same model"
        )
    _check_window(doc.processor, engine)
    return doc


def _problems(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors(include_url=False)[:6]:
        got = e.get("input")
        shown = f"{type(got).__name__} of {len(got)} bytes" if isinstance(got, bytes) else repr(got)[:60]
        parts.append(f"{'.'.join(map(str, e['loc']))}: {e['msg']}, got {shown}")
    return "; ".join(parts)


def _check_window(state: ProcessorState, engine: Engine) -> None:
    """The token window must be one this model could have built: shape, sizes, order and finite values."""
    w = state.window
    frames, _, channels = w.shape
    hidden = int(engine.backend.config.hidden)
    limit = engine.spec.window_frames
    problems = []
    if frames > limit:
        problems.append(f"window.shape: expected at most {limit} frames (the model's window), got {frames}")
    if frames and channels != hidden:
        problems.append(f"window.shape: expected tokens of {hidden} channels, got {channels}")
    if not len(w.seq) == len(w.ts) == frames:
        problems.append(f"window: expected {frames} seq and ts entries (shape), got {len(w.seq)} and {len(w.ts)}")
    if len(w.tokens) != 4 * frames * 2 * channels:
        problems.append(f"window.tokens: expected {4 * frames * 2 * channels} bytes (float32 {list(w.shape)}), "
                        f"got {len(w.tokens)}")  # fmt: skip
    elif frames and not np.isfinite(np.frombuffer(w.tokens, "<f4")).all():
        problems.append("window.tokens: expected finite numbers, got NaN or infinite values")
    if any(b <= a for a, b in zip(w.ts, w.ts[1:], strict=False)) or any(
        b <= a for a, b in zip(w.seq, w.seq[1:], strict=False)
    ):
        problems.append("window: expected strictly increasing ts and seq")
    if w.ts and (state.last_ts is None or state.last_ts < w.ts[-1]):
        problems.append(f"last_ts: expected at least the window's last ts {w.ts[-1]!r}, got {state.last_ts!r}")
    if problems:
        raise BadSnapshot("invalid snapshot: processor." + "; processor.".join(problems))


def processor_state(doc: SnapshotDoc) -> dict[str, Any]:
    """The validated processor state in the form ``StreamProcessor.load_state`` reads."""
    return doc.processor.model_dump()
