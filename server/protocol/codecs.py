"""Wire protocol v1 encoding: messages <-> msgpack / JSON, and the frame codecs (colour JPEG/PNG/raw, depth
16-bit PNG / zstd / lz4 / raw), with the checks that turn bad input into a ProtocolError saying expected vs got."""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import Any

import cv2
import msgpack
import numpy as np
import zstandard
from pydantic import BaseModel, ValidationError

from server.protocol.messages import (
    CLIENT_MESSAGES,
    MAX_TIMESTAMP_S,
    PROTOCOL_VERSION,
    SCHEMA_MODELS,
    SERVER_MESSAGES,
    AnticipationOut,
    Bye,
    ColorCodec,
    DepthCodec,
    ErrorCode,
    ErrorOut,
    FrameIn,
    Hello,
    Notice,
    Ping,
    Pong,
    ProtocolError,
    Welcome,
    WireModel,
)
from server.protocol.rest import REST_SCHEMA_MODELS

# --- message encoding --------------------------------------------------------------------------------------------


def pack(message: BaseModel | dict[str, Any]) -> bytes:
    """A message -> one msgpack map (bytes fields stay binary)."""
    obj = message.model_dump(mode="python") if isinstance(message, BaseModel) else message
    return msgpack.packb(_plain(obj), use_bin_type=True)


def dump_json(message: BaseModel) -> str:
    return message.model_dump_json()


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, StrEnum):
        return obj.value
    return obj


def unpack(data: bytes | str) -> dict[str, Any]:
    """Raw message (msgpack bytes, or JSON text) -> its map; ProtocolError when it is not a map with a type."""
    try:
        obj = json.loads(data) if isinstance(data, str) else msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        kind = "JSON text" if isinstance(data, str) else "msgpack"
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, f"expected a {kind} map, could not decode it: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        got = type(obj).__name__ if not isinstance(obj, dict) else f"a map with keys {sorted(map(str, obj))[:8]}"
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, f"expected a map with a string 'type', got {got}")
    return obj


def _validate(table: dict[str, type[WireModel]], obj: dict[str, Any]) -> Any:
    kind = obj["type"]
    model = table.get(kind)
    if model is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_MESSAGE_TYPE, f"unknown message type {kind!r}; expected one of {sorted(table)}"
        )
    version = obj.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"unsupported protocol version {version!r}; this server speaks {PROTOCOL_VERSION}",
        )
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        seq = obj.get("seq") if isinstance(obj.get("seq"), int) else None
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, f"invalid {kind!r} message: {_errors(exc)}", seq=seq) from exc


def _errors(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors(include_url=False, include_input=False)[:6]:
        parts.append(f"{'.'.join(map(str, e['loc'])) or '(message)'}: {e['msg']}")
    return "; ".join(parts)


def parse_client_message(data: bytes | str) -> Hello | FrameIn | Ping | Bye:
    """A client's raw message -> its typed model; ProtocolError (with a code) on anything else."""
    msg: Hello | FrameIn | Ping | Bye = _validate(CLIENT_MESSAGES, unpack(data))
    if isinstance(msg, FrameIn) and isinstance(data, str):
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, "expected frame messages as binary msgpack, got JSON text")
    return msg


def parse_server_message(data: bytes | str) -> Welcome | AnticipationOut | Notice | ErrorOut | Pong | Bye:
    """A server's raw message -> its typed model (for clients)."""
    msg: Welcome | AnticipationOut | Notice | ErrorOut | Pong | Bye = _validate(SERVER_MESSAGES, unpack(data))
    return msg


# --- frame codecs ------------------------------------------------------------------------------------------------


def encode_frame(
    rgb: np.ndarray,
    depth: np.ndarray,
    ts: float,
    seq: int,
    *,
    color_codec: ColorCodec | str = ColorCodec.JPEG,
    depth_codec: DepthCodec | str = DepthCodec.ZSTD,
    jpeg_quality: int = 80,
    depth_scale: float | None = None,
) -> bytes:
    """RGB uint8 (H, W, 3) and depth uint16 (h, w) -> one ``frame`` message (msgpack bytes)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected rgb uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if depth.dtype != np.uint16 or depth.ndim != 2:
        raise ValueError(f"expected depth uint16 (H, W), got {depth.dtype} {depth.shape}")
    msg = {
        "type": "frame", "v": PROTOCOL_VERSION, "seq": int(seq), "ts": float(ts),
        "color_codec": ColorCodec(color_codec).value, "color": encode_color(rgb, color_codec, jpeg_quality),
        "color_shape": list(rgb.shape),
        "depth_codec": DepthCodec(depth_codec).value, "depth": encode_depth(depth, depth_codec),
        "depth_shape": list(depth.shape), "depth_dtype": "uint16",
    }  # fmt: skip
    if depth_scale is not None:
        msg["depth_scale"] = float(depth_scale)
    return msgpack.packb(msg, use_bin_type=True)


def encode_color(rgb: np.ndarray, codec: ColorCodec | str = ColorCodec.JPEG, quality: int = 80) -> bytes:
    codec = ColorCodec(codec)
    if codec is ColorCodec.RAW:
        return np.ascontiguousarray(rgb).tobytes()
    ext, params = (".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality]) if codec is ColorCodec.JPEG else (".png", [])
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"could not encode colour {rgb.shape} as {codec.value}")
    return buf.tobytes()


def encode_depth(depth: np.ndarray, codec: DepthCodec | str = DepthCodec.ZSTD, level: int = 1) -> bytes:
    codec = DepthCodec(codec)
    raw = np.ascontiguousarray(depth.astype("<u2", copy=False)).tobytes()
    if codec is DepthCodec.RAW:
        return raw
    if codec is DepthCodec.ZSTD:
        return zstandard.ZstdCompressor(level=level).compress(raw)
    if codec is DepthCodec.LZ4:
        return _lz4().compress(raw)
    ok, buf = cv2.imencode(".png", depth, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"could not encode depth {depth.shape} as 16-bit PNG")
    return buf.tobytes()


def _lz4() -> Any:
    try:
        import lz4.frame  # optional dependency, imported on first use
    except ImportError as exc:  # pragma: no cover - lz4 is installed in every environment we ship
        raise ProtocolError(ErrorCode.UNSUPPORTED_FORMAT, "depth codec 'lz4' needs the lz4 package; use zstd") from exc
    return lz4.frame


def decode_color(msg: FrameIn, expected: tuple[int, int]) -> np.ndarray:
    """The frame's colour -> uint8 (H, W, 3) RGB, checked against the expected (H, W)."""
    h, w = expected
    if msg.color_codec is ColorCodec.RAW:
        shape = msg.color_shape or (h, w, 3)
        if shape != (h, w, 3):
            raise ProtocolError(
                ErrorCode.WRONG_RESOLUTION, f"expected colour {h}x{w}x3, got color_shape {list(shape)}", seq=msg.seq
            )
        if len(msg.color) != h * w * 3:
            raise ProtocolError(
                ErrorCode.BAD_FRAME,
                f"expected raw colour uint8 ({h}, {w}, 3) = {h * w * 3} bytes, got {len(msg.color)} bytes",
                seq=msg.seq,
            )
        return np.frombuffer(msg.color, np.uint8).reshape(h, w, 3)
    data = msg.color
    jpeg = msg.color_codec is ColorCodec.JPEG
    intact = data[:2] == b"\xff\xd8" and data.rstrip(b"\x00")[-2:] == b"\xff\xd9" if jpeg else data[:8] == _PNG_MAGIC
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if intact else None
    if bgr is None:
        raise ProtocolError(
            ErrorCode.CORRUPT_IMAGE,
            f"colour {msg.color_codec.value.upper()} of {len(data)} bytes could not be decoded (corrupt or truncated)",
            seq=msg.seq,
        )
    if bgr.shape[:2] != (h, w):
        raise ProtocolError(
            ErrorCode.WRONG_RESOLUTION, f"expected colour {h}x{w}, got {bgr.shape[0]}x{bgr.shape[1]}", seq=msg.seq
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decode_depth(msg: FrameIn, expected: tuple[int, int], depth_scale: float) -> np.ndarray:
    """The frame's depth -> uint16 (h, w) sensor units at `depth_scale` (float32 metres are converted)."""
    h, w = expected
    seq = msg.seq
    if msg.depth_codec is DepthCodec.PNG:
        buf = np.frombuffer(msg.depth, np.uint8)
        depth = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if msg.depth[:8] == _PNG_MAGIC else None
        if depth is None:
            raise ProtocolError(
                ErrorCode.CORRUPT_IMAGE, f"depth PNG of {len(msg.depth)} bytes could not be decoded", seq=seq
            )
        if depth.dtype != np.uint16 or depth.ndim != 2:
            raise ProtocolError(
                ErrorCode.BAD_FRAME,
                f"expected 16-bit single-channel depth PNG, got {depth.dtype} {depth.shape}",
                seq=seq,
            )
        arr: np.ndarray = depth
    else:
        shape = msg.depth_shape
        if shape is None:
            raise ProtocolError(
                ErrorCode.BAD_FRAME, f"depth codec {msg.depth_codec.value!r} needs depth_shape", seq=seq
            )
        dtype = np.dtype("<u2") if msg.depth_dtype == "uint16" else np.dtype("<f4")
        raw = _decompress(msg, dtype.itemsize * shape[0] * shape[1])
        if len(raw) != dtype.itemsize * shape[0] * shape[1]:
            raise ProtocolError(
                ErrorCode.BAD_FRAME,
                f"expected depth {msg.depth_dtype} {tuple(shape)} = {dtype.itemsize * shape[0] * shape[1]} bytes, "
                f"got {len(raw)} bytes",
                seq=seq,
            )
        arr = np.frombuffer(raw, dtype).reshape(shape)
    if arr.shape != (h, w):
        raise ProtocolError(
            ErrorCode.WRONG_RESOLUTION, f"expected depth {h}x{w}, got {arr.shape[0]}x{arr.shape[1]}", seq=seq
        )
    if arr.dtype == np.float32:
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise ProtocolError(
                ErrorCode.BAD_DEPTH,
                f"depth has {bad} NaN or infinite values; expected finite metres (0 = no reading)",
                seq=seq,
            )
        if float(arr.min()) < 0:
            raise ProtocolError(ErrorCode.BAD_DEPTH, f"depth has negative metres (min {float(arr.min())!r})", seq=seq)
        arr = np.clip(np.rint(arr / depth_scale), 0, 65535).astype(np.uint16)
    check_depth_content(arr, seq)
    return arr.astype(np.uint16, copy=False)


def check_depth_content(depth: np.ndarray, seq: int | None = None) -> None:
    """A depth map with no reading at all is refused: the model would see a blank modality."""
    if not depth.any():
        h, w = depth.shape[:2]
        raise ProtocolError(
            ErrorCode.BAD_DEPTH,
            f"depth {h}x{w} is all zeros (no valid reading); expected a live depth map - is the depth stream running?",
            seq=seq,
        )


def _decompress(msg: FrameIn, expected_size: int) -> bytes:
    if msg.depth_codec is DepthCodec.RAW:
        return msg.depth
    try:
        if msg.depth_codec is DepthCodec.ZSTD:
            out: bytes = zstandard.ZstdDecompressor().decompress(msg.depth, max_output_size=expected_size)
            return out
        return bytes(_lz4().decompress(msg.depth))
    except (zstandard.ZstdError, RuntimeError, ValueError) as exc:
        raise ProtocolError(
            ErrorCode.CORRUPT_IMAGE, f"depth {msg.depth_codec.value} data could not be decompressed: {exc}", seq=msg.seq
        ) from exc


def check_timestamp(ts: float, last: float | None, max_jump_s: float, seq: int | None = None) -> None:
    """A frame timestamp must be finite, non-negative, plausible seconds and strictly after the previous one."""
    if not math.isfinite(ts) or ts < 0 or ts > MAX_TIMESTAMP_S:
        raise ProtocolError(
            ErrorCode.BAD_TIMESTAMP, f"expected a timestamp in seconds in [0, {MAX_TIMESTAMP_S:g}], got {ts!r}", seq=seq
        )
    if last is not None and ts <= last:
        raise ProtocolError(
            ErrorCode.BAD_TIMESTAMP,
            f"expected a timestamp after the previous frame's {last!r} s, got {ts!r} s",
            seq=seq,
        )
    if last is not None and ts - last > max_jump_s:
        raise ProtocolError(
            ErrorCode.BAD_TIMESTAMP,
            f"timestamp {ts!r} s jumps {ts - last:.3g} s past the previous frame ({last!r} s); expected at most "
            f"{max_jump_s:g} s (are the units seconds?)",
            seq=seq,
        )


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON schema of every wire message, by model name (written to docs/schemas/ by ``python -m server.schemas``)."""
    return {m.__name__: m.model_json_schema() for m in (*SCHEMA_MODELS, *REST_SCHEMA_MODELS)}
