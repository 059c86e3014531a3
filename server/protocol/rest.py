"""Wire protocol v1 REST bodies: sessions, batch-scoring jobs, model reload, health (docs/protocol.md)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from server.protocol.messages import (
    CurrentAction,
    FutureAction,
    ModalityHealth,
    ModelInfo,
    SessionCreate,
    StreamCounters,
    WindowInfo,
    WireModel,
)


class SessionStateName(StrEnum):
    CREATED = "created"  # exists, no WebSocket attached yet (REST clients post frames here)
    ATTACHED = "attached"  # a WebSocket owns it
    DETACHED = "detached"  # its WebSocket went away; the token window is kept for the reconnect grace time
    CLOSED = "closed"


class SessionPublic(WireModel):
    id: str
    state: SessionStateName
    created_at: float = Field(description="Unix seconds")
    stream: SessionCreate
    tick_hz: float
    window_frames: int
    queue_depth: int
    counters: StreamCounters
    predictions: int
    model_id: str


class SessionList(WireModel):
    sessions: list[SessionPublic]
    max_sessions: int


class JobCreate(WireModel):
    """Score a recording or dataset under the server's data root (uploads go as multipart ``file`` instead)."""

    path: str = Field(max_length=1000, description="relative to the server's data root; no '..'")
    sequences: Annotated[list[str] | None, Field(description="dataset sequences to score (default: all)")] = None
    tick_hz: Annotated[float | None, Field(gt=0, le=120, description="default: the model fps")] = None


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the server shut down before the job finished


class SequenceProgress(WireModel):
    id: str
    frames_total: int | None
    frames_done: int
    state: JobState
    error: str | None = None


class JobPublic(WireModel):
    id: str
    state: JobState
    source: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    progress: float = Field(ge=0, le=1)
    sequences: list[SequenceProgress]
    error: str | None = None
    model_id: str


class JobList(WireModel):
    jobs: list[JobPublic]


class FrameResult(WireModel):
    index: int
    ts: float
    accepted: bool = Field(description="False when the frame was skipped to resample to the model's fps")
    label: str | None = Field(description="ground truth, where the recording has it")
    action: int | None = Field(description="current action of the latest prediction at or before this frame")
    action_label: str | None
    probability: float | None
    error: Annotated[str | None, Field(description="why the frame was rejected (bad timestamp, depth, size)")] = None


class TickResult(WireModel):
    """One anticipation, as a streaming session would have sent it."""

    frame_index: int
    frame_ts: float
    current: CurrentAction
    future: list[FutureAction]
    window: WindowInfo
    modality: ModalityHealth | None


class SequenceResult(WireModel):
    id: str
    fps_in: float | None
    frames: list[FrameResult]
    ticks: list[TickResult]
    counters: StreamCounters


class JobResults(WireModel):
    job: JobPublic
    model: ModelInfo
    sequences: list[SequenceResult]


class ReloadRequest(WireModel):
    model: Annotated[
        str | None,
        Field(max_length=128, description="a model id from GET /v1/model/available; default: the current model"),
    ] = None
    backend: Annotated[str | None, Field(description="auto, pytorch, onnxruntime, tensorrt")] = None


class ReloadOut(WireModel):
    model: ModelInfo
    previous_model_id: str
    sessions_kept: int = Field(description="sessions whose token windows were kept (same frame encoder)")
    sessions_reset: int


class ModelList(WireModel):
    """The models an admin may reload (ids of the entries of the server's models_dir)."""

    current: str = Field(description="model_id of the model in use")
    available: list[str]


class HealthOut(WireModel):
    status: str
    ready: bool
    version: str
    model_id: str | None = None
    sessions: int = 0
    details: dict[str, Any] = Field(default_factory=dict)


REST_SCHEMA_MODELS: tuple[type[WireModel], ...] = (
    SessionPublic, SessionList, JobCreate, JobPublic, JobList, JobResults, ReloadRequest, ReloadOut, HealthOut,
    ModelList,
)  # fmt: skip
