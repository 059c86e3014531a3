"""Wire protocol v1 message schemas, error codes and enums (docs/protocol.md)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1
MAX_TIMESTAMP_S = 1e11  # about year 5138 in Unix seconds: anything larger is a unit mistake (ms, us or ns)
MAX_SIDE = 8192  # largest accepted image side in pixels
Side = Annotated[int, Field(gt=0, le=MAX_SIDE)]


class MessageType(StrEnum):
    HELLO = "hello"
    FRAME = "frame"
    PING = "ping"
    BYE = "bye"
    WELCOME = "welcome"
    PREDICTION = "prediction"
    NOTICE = "notice"
    ERROR = "error"
    PONG = "pong"


class ErrorCode(StrEnum):
    """Machine-readable error codes; each maps to an HTTP status and a WebSocket close code (ERROR_STATUS)."""

    MALFORMED_MESSAGE = "malformed_message"
    UNKNOWN_MESSAGE_TYPE = "unknown_message_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    HELLO_REQUIRED = "hello_required"
    DUPLICATE_HELLO = "duplicate_hello"
    BAD_FRAME = "bad_frame"
    WRONG_RESOLUTION = "wrong_resolution"
    CORRUPT_IMAGE = "corrupt_image"
    BAD_DEPTH = "bad_depth"
    COLOR_REQUIRED = "color_required"
    BAD_TIMESTAMP = "bad_timestamp"
    MESSAGE_TOO_LARGE = "message_too_large"
    TOO_MANY_SESSIONS = "too_many_sessions"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    SESSION_NOT_FOUND = "session_not_found"
    SESSION_BUSY = "session_busy"
    SESSION_TAKEN_OVER = "session_taken_over"
    SESSION_STATE = "session_state"
    JOB_NOT_FOUND = "job_not_found"
    JOB_NOT_READY = "job_not_ready"
    PATH_NOT_ALLOWED = "path_not_allowed"
    UNSUPPORTED_FORMAT = "unsupported_format"
    BAD_REQUEST = "bad_request"
    BAD_SNAPSHOT = "bad_snapshot"
    MODEL_NOT_FOUND = "model_not_found"
    MODEL_ERROR = "model_error"
    NOT_READY = "not_ready"
    SHUTTING_DOWN = "shutting_down"
    NOT_SUPPORTED = "not_supported"  # a route this deployment does not serve (e.g. REST sessions on a Ray cluster)
    INTERNAL = "internal"


# code -> (HTTP status, WebSocket close code used when the error ends the connection)
ERROR_STATUS: dict[ErrorCode, tuple[int, int]] = {
    ErrorCode.MALFORMED_MESSAGE: (400, 1007),
    ErrorCode.UNKNOWN_MESSAGE_TYPE: (400, 1003),
    ErrorCode.UNSUPPORTED_VERSION: (400, 4400),
    ErrorCode.HELLO_REQUIRED: (400, 4400),
    ErrorCode.DUPLICATE_HELLO: (400, 4400),
    ErrorCode.BAD_FRAME: (422, 4422),
    ErrorCode.WRONG_RESOLUTION: (422, 4422),
    ErrorCode.CORRUPT_IMAGE: (422, 4422),
    ErrorCode.BAD_DEPTH: (422, 4422),
    ErrorCode.COLOR_REQUIRED: (422, 4422),
    ErrorCode.BAD_TIMESTAMP: (422, 4422),
    ErrorCode.MESSAGE_TOO_LARGE: (413, 1009),
    ErrorCode.TOO_MANY_SESSIONS: (429, 1013),
    ErrorCode.UNAUTHORIZED: (401, 4401),
    ErrorCode.FORBIDDEN: (403, 4403),
    ErrorCode.SESSION_NOT_FOUND: (404, 4404),
    ErrorCode.SESSION_BUSY: (409, 4409),
    ErrorCode.SESSION_TAKEN_OVER: (409, 4409),
    ErrorCode.SESSION_STATE: (409, 4409),
    ErrorCode.JOB_NOT_FOUND: (404, 4404),
    ErrorCode.JOB_NOT_READY: (409, 4409),
    ErrorCode.PATH_NOT_ALLOWED: (403, 4403),
    ErrorCode.UNSUPPORTED_FORMAT: (415, 4415),
    ErrorCode.BAD_REQUEST: (400, 4400),
    ErrorCode.BAD_SNAPSHOT: (422, 4422),
    ErrorCode.MODEL_NOT_FOUND: (404, 4404),
    ErrorCode.MODEL_ERROR: (500, 1011),
    ErrorCode.NOT_READY: (503, 1013),
    ErrorCode.SHUTTING_DOWN: (503, 1001),
    ErrorCode.NOT_SUPPORTED: (501, 4501),
    ErrorCode.INTERNAL: (500, 1011),
}


class ProtocolError(ValueError):
    """Bad input on the wire: a code, the HTTP status it maps to, and a public message (expected vs got)."""

    def __init__(self, code: ErrorCode, message: str, *, seq: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.seq = seq

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.code][0]


class Backpressure(StrEnum):
    """What a full per-session input queue does with a new frame."""

    LATEST_WINS = "latest_wins"  # drop the oldest queued frame (counted, reported): live cameras
    BLOCK = "block"  # stop reading the socket until there is room (TCP pushes back): replays, batch-like clients


class SendSize(StrEnum):
    """The resolution a client sends its frames at (``hello.send_size``)."""

    FULL = "full"  # the camera's: colour height x width, depth depth_height x depth_width (the hello's)
    MODEL = "model"  # the model's input, resized by the client: welcome.model.image_size and depth_size


class ColorCodec(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    RAW = "raw"  # uint8 (H, W, 3) RGB, C order


class DepthCodec(StrEnum):
    PNG = "png"  # 16-bit single-channel PNG
    ZSTD = "zstd"  # zstd of the raw little-endian array
    LZ4 = "lz4"  # lz4 frame of the raw little-endian array (needs the optional lz4 package)
    RAW = "raw"


class NoticeCode(StrEnum):
    FRAMES_DROPPED = "frames_dropped"
    WINDOW_RESET = "window_reset"
    MODEL_RELOADED = "model_reloaded"
    SESSION_RESUMED = "session_resumed"
    SHUTDOWN = "shutdown"


class WireModel(BaseModel):
    """Base of every wire message: unknown fields are refused, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerWireModel(WireModel):
    """Base of what the server sends: a client ignores fields it does not know, so a newer server that adds a field
    to protocol v1 (docs/protocol.md, "Version") does not break it."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class IntrinsicsIn(WireModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    width: int = Field(gt=0, le=MAX_SIDE)
    height: int = Field(gt=0, le=MAX_SIDE)
    fx: float = Field(gt=0)
    fy: float = Field(gt=0)
    cx: float
    cy: float


class SessionCreate(WireModel):
    """What a client says about its stream when it opens a session (REST body; the fields of ``hello``)."""

    camera: Annotated[str, Field(max_length=200, description="camera model, e.g. 'RealSense D435'")] = "unknown"
    serial: Annotated[str | None, Field(max_length=200)] = None
    color: bool = Field(
        True,
        description="false: a depth-only camera (time-of-flight, or colour that may not leave the room); frames "
        "carry no colour and width x height is the depth size. Refused with color_required by a model that uses "
        "colour (welcome.model.uses_color)",
    )
    width: int = Field(gt=0, le=MAX_SIDE, description="colour width in pixels; every frame must match")
    height: int = Field(gt=0, le=MAX_SIDE)
    depth_width: Annotated[int | None, Field(gt=0, le=MAX_SIDE, description="default: width")] = None
    depth_height: Annotated[int | None, Field(gt=0, le=MAX_SIDE, description="default: height")] = None
    depth_scale: float = Field(gt=0, le=1.0, description="metres per depth unit (RealSense 0.001, Kinect mm 0.001)")
    depth_aligned: bool = True
    intrinsics: IntrinsicsIn | None = None
    tick_hz: Annotated[float | None, Field(gt=0, le=120, description="predictions per second of stream time")] = None
    backpressure: Backpressure = Backpressure.LATEST_WINS
    send_size: Annotated[
        SendSize, Field(description="'full': frames at width x height; 'model': resized to the model's input size")
    ] = SendSize.FULL

    @property
    def depth_shape(self) -> tuple[int, int]:
        return (self.depth_height or self.height, self.depth_width or self.width)

    def frame_shapes(
        self, image_size: tuple[int, int], depth_size: tuple[int, int]
    ) -> tuple[tuple[int, int], tuple[int, int]]:
        """(colour (H, W), depth (H, W)) every frame of this stream has, given the model's input sizes."""
        if self.send_size is SendSize.MODEL:
            return image_size, depth_size
        return (self.height, self.width), self.depth_shape


class Hello(SessionCreate):
    type: Literal["hello"] = "hello"
    v: int = PROTOCOL_VERSION
    session_id: Annotated[str | None, Field(max_length=64, description="resume or attach to this session")] = None
    encoding: Annotated[Literal["msgpack", "json"], Field(description="encoding of the server's messages")] = "msgpack"


class FrameIn(WireModel):
    """One RGB-D frame: a msgpack map (WebSocket binary message, or the body of POST .../frames)."""

    type: Literal["frame"] = "frame"
    v: int = PROTOCOL_VERSION
    seq: int = Field(ge=0, description="client frame counter, increasing")
    ts: float = Field(description="capture time in seconds, strictly increasing within the stream")
    color_codec: Annotated[
        ColorCodec | None, Field(description="absent in a depth-only stream (hello.color false)")
    ] = None
    color: bytes | None = None
    color_shape: Annotated[tuple[Side, Side, Literal[3]] | None, Field(description="(H, W, 3); required for raw")] = (
        None
    )
    depth_codec: DepthCodec
    depth: bytes
    depth_shape: Annotated[tuple[Side, Side] | None, Field(description="(H, W); required for raw, zstd and lz4")] = None
    depth_dtype: Annotated[Literal["uint16", "float32"], Field(description="uint16 units or float32 metres")] = "uint16"
    depth_scale: Annotated[float | None, Field(gt=0, le=1.0, description="overrides the hello's depth scale")] = None


class Ping(WireModel):
    type: Literal["ping"] = "ping"
    v: int = PROTOCOL_VERSION
    id: int | str | None = None


class Bye(WireModel):
    """Client: end the session and free it. Server: the connection is closing (reason says why)."""

    type: Literal["bye"] = "bye"
    v: int = PROTOCOL_VERSION
    reason: str | None = None


class ModelInfo(ServerWireModel):
    model_id: str
    frame_encoder_id: str
    backend: str
    classes: list[str]
    fps: float
    window_s: float
    window_frames: int
    horizon_s: float
    server_version: str
    protocol_version: int = PROTOCOL_VERSION
    image_size: Annotated[
        tuple[int, int] | None, Field(description="(H, W) of the model's colour input; None from servers before it")
    ] = None
    depth_size: Annotated[tuple[int, int] | None, Field(description="(H, W) of the model's depth input")] = None
    depth_range_m: Annotated[
        tuple[float, float] | None, Field(description="(min, max) metres of a valid depth reading; others are holes")
    ] = None
    uses_color: bool = Field(
        True, description="false: a depth-only model, which serves depth-only streams (hello.color false) too"
    )
    backend_info: dict[str, Any] = Field(default_factory=dict)


class Welcome(ServerWireModel):
    type: Literal["welcome"] = "welcome"
    v: int = PROTOCOL_VERSION
    session_id: str
    resumed: bool = Field(description="True when an existing session (and its token window) was attached")
    window_frames: int = Field(description="tokens already in the session's window")
    tick_hz: float
    backpressure: Backpressure
    queue_size: int
    max_message_bytes: int
    model: ModelInfo


class CurrentAction(ServerWireModel):
    action: int = Field(description="class index at the last frame of the window")
    label: str
    probability: float
    probabilities: dict[str, float]


class FutureAction(ServerWireModel):
    action: int
    label: str
    start_s: float = Field(description="offset after the prediction's frame, seconds")
    duration_s: float
    probability: float


class WindowInfo(ServerWireModel):
    frames: int
    start_ts: float
    end_ts: float


class Latency(ServerWireModel):
    frame_to_prediction_ms: float = Field(description="server receipt of the frame -> prediction sent")
    queue_ms: float
    encode_ms: float
    anticipate_ms: float


class StreamStatus(StrEnum):
    """Whether a camera stream looks alive (server/streaming/health.py says how each is judged)."""

    OK = "ok"
    BLANK = "blank"  # no variation within frames: lens cap, black or uniform frames, depth without readings
    NOISE = "noise"  # colour without spatial structure: a broken sensor or a wrong pixel format
    STATIC = "static"  # the modality's tokens collapsed over the window: a frozen or dead stream
    ABSENT = "absent"  # colour: the stream has no colour camera (its hello says color false)
    MISSING = "missing"  # colour: an RGB-D stream whose frames arrive without colour (its colour camera stopped)
    UNUSED = "unused"  # colour: sent, but not looked at: the model is depth-only (it neither decodes nor encodes it)


class ModalityHealth(ServerWireModel):
    """Effective rank of the recent tokens (a dead camera stream collapses its modality's rank) and a verdict per
    camera stream from its pixels and tokens."""

    frames: int
    erank_fused: float | None
    erank_rgb: float | None
    erank_depth: float | None
    balance: float | None = Field(description="erank_rgb / erank_depth")
    rgb_status: StreamStatus | None = Field(None, description="colour stream verdict over the window")
    depth_status: StreamStatus | None = Field(None, description="depth stream verdict over the window")


class StreamCounters(ServerWireModel):
    received: int
    accepted: int
    resampled_out: int = Field(description="skipped to resample the stream to the model's fps (not a loss)")
    dropped: int = Field(description="accepted but dropped by a full queue (latest wins)")
    rejected: int = Field(description="bad frames answered with an error")


class AnticipationOut(ServerWireModel):
    type: Literal["prediction"] = "prediction"
    v: int = PROTOCOL_VERSION
    session_id: str
    seq: int = Field(description="prediction counter within the session")
    frame_seq: int
    frame_ts: float
    model_id: str
    current: CurrentAction
    future: list[FutureAction]
    window: WindowInfo
    latency: Latency
    modality: ModalityHealth | None = None
    counters: StreamCounters


class Notice(ServerWireModel):
    type: Literal["notice"] = "notice"
    v: int = PROTOCOL_VERSION
    code: NoticeCode
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorOut(ServerWireModel):
    type: Literal["error"] = "error"
    v: int = PROTOCOL_VERSION
    code: ErrorCode
    message: str
    seq: Annotated[int | None, Field(description="the frame seq the error refers to, if any")] = None
    fatal: Annotated[bool, Field(description="True when the server closes the connection after it")] = False
    retry_after_s: Annotated[
        float | None, Field(description="when a retry may succeed (too_many_sessions, not_ready); HTTP: Retry-After")
    ] = None


class Pong(ServerWireModel):
    type: Literal["pong"] = "pong"
    v: int = PROTOCOL_VERSION
    id: int | str | None = None


class FrameStatus(StrEnum):
    QUEUED = "queued"
    RESAMPLED_OUT = "resampled_out"


class FrameAck(ServerWireModel):
    """REST answer to a posted frame."""

    seq: int
    status: FrameStatus
    queue_depth: int
    counters: StreamCounters


ClientMessage = Hello | FrameIn | Ping | Bye
ServerMessage = Welcome | AnticipationOut | Notice | ErrorOut | Pong | Bye
CLIENT_MESSAGES: dict[str, type[WireModel]] = {"hello": Hello, "frame": FrameIn, "ping": Ping, "bye": Bye}
SERVER_MESSAGES: dict[str, type[WireModel]] = {
    "welcome": Welcome, "prediction": AnticipationOut, "notice": Notice, "error": ErrorOut, "pong": Pong, "bye": Bye,
}  # fmt: skip
SCHEMA_MODELS: tuple[type[BaseModel], ...] = (
    Hello, SessionCreate, FrameIn, Ping, Bye, Welcome, AnticipationOut, Notice, ErrorOut, Pong, FrameAck, ModelInfo,
)  # fmt: skip
