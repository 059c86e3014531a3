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
import simplejpeg
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
    packed: bytes = msgpack.packb(_plain(obj), use_bin_type=True)
    return packed


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
    except RecursionError:  # JSON nested deeper than Python's stack: refused like any other undecodable text
        raise ProtocolError(
            ErrorCode.MALFORMED_MESSAGE, "expected a JSON text map, got nesting too deep to decode"
        ) from None
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
    rgb: np.ndarray | None,
    depth: np.ndarray,
    ts: float,
    seq: int,
    *,
    color_codec: ColorCodec | str = ColorCodec.JPEG,
    depth_codec: DepthCodec | str = DepthCodec.ZSTD,
    jpeg_quality: int = 80,
    depth_scale: float | None = None,
) -> bytes:
    """RGB uint8 (H, W, 3) (None: a depth-only stream's frame, without colour fields) and depth uint16 (h, w) -> one
    ``frame`` message (msgpack bytes)."""
    if rgb is not None and (rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3):
        raise ValueError(f"expected rgb uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if depth.dtype != np.uint16 or depth.ndim != 2:
        raise ValueError(f"expected depth uint16 (H, W), got {depth.dtype} {depth.shape}")
    msg: dict[str, object] = {
        "type": "frame", "v": PROTOCOL_VERSION, "seq": int(seq), "ts": float(ts),
        "depth_codec": DepthCodec(depth_codec).value, "depth": encode_depth(depth, depth_codec),
        "depth_shape": list(depth.shape), "depth_dtype": "uint16",
    }  # fmt: skip
    if rgb is not None:
        msg |= {"color_codec": ColorCodec(color_codec).value, "color": encode_color(rgb, color_codec, jpeg_quality),
                "color_shape": list(rgb.shape)}  # fmt: skip
    if depth_scale is not None:
        msg["depth_scale"] = float(depth_scale)
    packed: bytes = msgpack.packb(msg, use_bin_type=True)
    return packed


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
        compressed: bytes = _lz4().compress(raw)
        return compressed
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
    """The frame's colour -> uint8 (H, W, 3) RGB, checked against the expected (H, W) before any decoding: the
    size comes from the JPEG / PNG header, so a small file declaring a huge image costs nothing."""
    h, w = expected
    if msg.color is None or msg.color_codec is None:
        raise ProtocolError(ErrorCode.BAD_FRAME, "expected color and color_codec in an RGB-D frame", seq=msg.seq)
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
    kind = msg.color_codec.value.upper()
    corrupt = ProtocolError(
        ErrorCode.CORRUPT_IMAGE, f"colour {kind} of {len(data)} bytes could not be decoded (corrupt or truncated)",
        seq=msg.seq,
    )  # fmt: skip
    png = _png_header(data)
    size = _jpeg_size(data) if msg.color_codec is ColorCodec.JPEG else png[:2] if png else None
    if size is None:
        raise corrupt
    if size != (h, w):
        raise ProtocolError(
            ErrorCode.WRONG_RESOLUTION, f"expected colour {h}x{w}, got {size[0]}x{size[1]}", seq=msg.seq
        )
    if msg.color_codec is ColorCodec.JPEG:
        try:  # strict: libjpeg's warnings (premature end of data, bad Huffman codes) are errors, not grey pixels
            rgb: np.ndarray = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
        except ValueError:
            raise corrupt from None
        return rgb
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[:2] != (h, w):
        raise corrupt
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale+alpha", 6: "RGBA"}
# JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic) carry the size
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _png_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(height, width, bit depth, colour type) from a PNG's IHDR chunk, or None when it has none."""
    if len(data) < 26 or data[:8] != _PNG_MAGIC or data[12:16] != b"IHDR":
        return None
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return height, width, data[24], data[25]


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's start-of-frame segment (markers walked, nothing decoded), or None."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers have no length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _JPEG_SOF:
            if length < 7 or i + 9 > len(data):
                return None
            return int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
        i += 2 + length
    return None


def decode_depth(msg: FrameIn, expected: tuple[int, int], depth_scale: float) -> np.ndarray:
    """The frame's depth -> uint16 (h, w) sensor units at `depth_scale` (float32 metres are converted). The size is
    checked against the expected (h, w) before decoding (PNG header, ``depth_shape``), and decompression stops at the
    size that shape allows."""
    h, w = expected
    seq = msg.seq
    if msg.depth_codec is DepthCodec.PNG:
        header = _png_header(msg.depth)
        if header is None:
            raise ProtocolError(
                ErrorCode.CORRUPT_IMAGE, f"depth PNG of {len(msg.depth)} bytes could not be decoded", seq=seq
            )
        ph, pw, bits, colour = header
        if (ph, pw) != (h, w):
            raise ProtocolError(ErrorCode.WRONG_RESOLUTION, f"expected depth {h}x{w}, got {ph}x{pw}", seq=seq)
        if bits != 16 or colour != 0:
            got = f"{bits}-bit {_PNG_COLOUR_TYPES.get(colour, f'colour type {colour}')}"
            raise ProtocolError(ErrorCode.BAD_FRAME, f"expected 16-bit single-channel depth PNG, got {got}", seq=seq)
        depth = cv2.imdecode(np.frombuffer(msg.depth, np.uint8), cv2.IMREAD_UNCHANGED)
        if depth is None or depth.shape != (h, w) or depth.dtype != np.uint16:
            raise ProtocolError(
                ErrorCode.CORRUPT_IMAGE, f"depth PNG of {len(msg.depth)} bytes could not be decoded", seq=seq
            )
        arr: np.ndarray = depth
    else:
        shape = msg.depth_shape
        if shape is None:
            raise ProtocolError(
                ErrorCode.BAD_FRAME, f"depth codec {msg.depth_codec.value!r} needs depth_shape", seq=seq
            )
        if tuple(shape) != (h, w):
            raise ProtocolError(
                ErrorCode.WRONG_RESOLUTION, f"expected depth {h}x{w}, got depth_shape {list(shape)}", seq=seq
            )
        dtype = np.dtype("<u2") if msg.depth_dtype == "uint16" else np.dtype("<f4")
        size = dtype.itemsize * h * w
        raw = _decompress(msg, size)
        if len(raw) != size:
            raise ProtocolError(
                ErrorCode.BAD_FRAME,
                f"expected depth {msg.depth_dtype} {(h, w)} = {size} bytes, got "
                + (f"{len(raw)} bytes" if len(raw) < size else "more (the payload decompresses past the hello's size)"),
                seq=seq,
            )
        arr = np.frombuffer(raw, dtype).reshape(h, w)
    if arr.dtype == np.float32:
        arr = _metres_to_units(arr, depth_scale, seq)
    check_depth_content(arr, seq)
    return arr.astype(np.uint16, copy=False)


def _metres_to_units(metres: np.ndarray, depth_scale: float, seq: int) -> np.ndarray:
    """float32 metres -> uint16 units; values no uint16 unit can hold are refused, not clipped."""
    bad = int(np.count_nonzero(~np.isfinite(metres)))
    if bad:
        raise ProtocolError(
            ErrorCode.BAD_DEPTH, f"depth has {bad} NaN or infinite values; expected finite metres (0 = no reading)",
            seq=seq,
        )  # fmt: skip
    low, high = float(metres.min()), float(metres.max())
    if low < 0:
        raise ProtocolError(ErrorCode.BAD_DEPTH, f"depth has negative metres (min {low!r})", seq=seq)
    limit = 65535 * depth_scale
    if high > limit:
        raise ProtocolError(
            ErrorCode.BAD_DEPTH,
            f"depth has {int(np.count_nonzero(metres > limit))} values beyond {limit:g} m (max {high:.4g} m); "
            f"expected metres within the range of 16-bit units at depth_scale {depth_scale:g}",
            seq=seq,
        )
    return np.rint(metres / depth_scale).astype(np.uint16)


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
    """The depth payload decompressed, never past ``expected_size + 1`` bytes (one more tells "too large")."""
    if msg.depth_codec is DepthCodec.RAW:
        return msg.depth
    try:
        if msg.depth_codec is DepthCodec.ZSTD:
            declared = zstandard.get_frame_parameters(msg.depth).content_size  # ZstdError on a bad header
            if declared not in (zstandard.CONTENTSIZE_UNKNOWN, expected_size):
                raise ProtocolError(
                    ErrorCode.BAD_FRAME,
                    f"expected depth of {expected_size} bytes (the hello's size), got a zstd frame of {declared} bytes",
                    seq=msg.seq,
                )
            out: bytes = zstandard.ZstdDecompressor().stream_reader(msg.depth).read(expected_size + 1)
            if declared == expected_size and len(out) < declared:
                raise ValueError("truncated frame")
            return out
        decompressor = _lz4().LZ4FrameDecompressor()
        return bytes(decompressor.decompress(msg.depth, max_length=expected_size + 1))
    except (zstandard.ZstdError, RuntimeError, ValueError) as exc:
        raise ProtocolError(
            ErrorCode.CORRUPT_IMAGE, f"depth {msg.depth_codec.value} data could not be decompressed", seq=msg.seq
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
