"""Wire protocol v1: messages round-trip, and every bad input becomes a ProtocolError naming expected vs got."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest

from server import protocol as P


def _frame(h: int = 48, w: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    depth = rng.integers(400, 4000, (h, w)).astype(np.uint16)
    return rgb, depth


@pytest.mark.parametrize("codec", ["png", "zstd", "lz4", "raw"])
def test_depth_codec_roundtrip_is_lossless(codec: str) -> None:
    rgb, depth = _frame()
    msg = P.parse_client_message(P.encode_frame(rgb, depth, 1.5, 3, depth_codec=codec))
    assert isinstance(msg, P.FrameIn) and msg.seq == 3 and msg.ts == 1.5
    np.testing.assert_array_equal(P.decode_depth(msg, (48, 64), 0.001), depth)


@pytest.mark.parametrize("codec", ["png", "raw"])
def test_lossless_color_codec_roundtrip_is_exact(codec: str) -> None:
    rgb, depth = _frame()
    msg = P.parse_client_message(P.encode_frame(rgb, depth, 0.0, 0, color_codec=codec))
    assert isinstance(msg, P.FrameIn)
    np.testing.assert_array_equal(P.decode_color(msg, (48, 64)), rgb)


def test_jpeg_color_roundtrip_keeps_rgb_order() -> None:
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    _, depth = _frame()
    msg = P.parse_client_message(P.encode_frame(rgb, depth, 0.0, 0, jpeg_quality=95))
    assert isinstance(msg, P.FrameIn)
    out = P.decode_color(msg, (48, 64)).astype(int)
    assert abs(out[..., 0].mean() - 200) < 3 and out[..., 1].mean() < 3


def _parsed(**overrides: object) -> P.FrameIn:
    rgb, depth = _frame()
    raw = msgpack.unpackb(P.encode_frame(rgb, depth, 1.0, 7))
    raw.update(overrides)
    msg = P.parse_client_message(msgpack.packb(raw))
    assert isinstance(msg, P.FrameIn)
    return msg


def test_decode_color_truncated_jpeg_is_corrupt_image() -> None:
    msg = _parsed()
    bad = _parsed(color=msg.color[: len(msg.color) // 2])
    with pytest.raises(P.ProtocolError, match="colour JPEG of .* could not be decoded") as err:
        P.decode_color(bad, (48, 64))
    assert err.value.code is P.ErrorCode.CORRUPT_IMAGE and err.value.seq == 7


def test_decode_color_wrong_resolution_names_expected_and_got() -> None:
    with pytest.raises(P.ProtocolError, match="expected colour 96x128, got 48x64") as err:
        P.decode_color(_parsed(), (96, 128))
    assert err.value.code is P.ErrorCode.WRONG_RESOLUTION


def test_decode_depth_corrupt_png_is_corrupt_image() -> None:
    with pytest.raises(P.ProtocolError, match="depth PNG of 5 bytes could not be decoded"):
        P.decode_depth(_parsed(depth_codec="png", depth=b"\x89PNGx"), (48, 64), 0.001)


def test_decode_depth_eight_bit_png_is_bad_frame() -> None:
    png = P.encode_color(np.zeros((48, 64, 3), np.uint8) + 9, "png")
    with pytest.raises(P.ProtocolError, match="expected 16-bit single-channel depth PNG, got 8-bit RGB") as err:
        P.decode_depth(_parsed(depth_codec="png", depth=png), (48, 64), 0.001)
    assert err.value.code is P.ErrorCode.BAD_FRAME


def test_decode_depth_wrong_byte_count_names_sizes() -> None:
    with pytest.raises(P.ProtocolError, match=r"expected depth uint16 \(48, 64\) = 6144 bytes, got 10 bytes"):
        P.decode_depth(_parsed(depth_codec="raw", depth=b"0123456789"), (48, 64), 0.001)


def test_decode_depth_all_zeros_is_bad_depth() -> None:
    zeros = np.zeros((48, 64), np.uint16).tobytes()
    with pytest.raises(P.ProtocolError, match="all zeros") as err:
        P.decode_depth(_parsed(depth_codec="raw", depth=zeros), (48, 64), 0.001)
    assert err.value.code is P.ErrorCode.BAD_DEPTH


def test_decode_depth_float_nan_is_bad_depth() -> None:
    metres = np.full((48, 64), 1.5, np.float32)
    metres[0, :3] = math.nan
    msg = _parsed(depth_codec="raw", depth=metres.tobytes(), depth_dtype="float32")
    with pytest.raises(P.ProtocolError, match="depth has 3 NaN or infinite values"):
        P.decode_depth(msg, (48, 64), 0.001)


def test_decode_depth_float_metres_convert_to_sensor_units() -> None:
    metres = np.full((48, 64), 1.5, np.float32)
    msg = _parsed(depth_codec="raw", depth=metres.tobytes(), depth_dtype="float32")
    assert (P.decode_depth(msg, (48, 64), 0.001) == 1500).all()


@pytest.mark.parametrize(
    ("data", "code", "match"),
    [
        (b"\xc1\x00", P.ErrorCode.MALFORMED_MESSAGE, "expected a msgpack map"),
        (msgpack.packb([1, 2]), P.ErrorCode.MALFORMED_MESSAGE, "with a string 'type', got list"),
        (msgpack.packb({"type": "jump"}), P.ErrorCode.UNKNOWN_MESSAGE_TYPE, "unknown message type 'jump'"),
        (msgpack.packb({"type": "ping", "v": 9}), P.ErrorCode.UNSUPPORTED_VERSION, "version 9; this server speaks 1"),
        (msgpack.packb({"type": "frame", "seq": 1}), P.ErrorCode.MALFORMED_MESSAGE, "ts: Field required"),
        ('{"type": "hello", "width": 640}', P.ErrorCode.MALFORMED_MESSAGE, "height: Field required"),
    ],
)
def test_parse_client_message_bad_input_raises_code(data: bytes | str, code: P.ErrorCode, match: str) -> None:
    with pytest.raises(P.ProtocolError, match=match) as err:
        P.parse_client_message(data)
    assert err.value.code is code


@pytest.mark.parametrize(
    ("ts", "last", "match"),
    [
        (math.nan, None, "expected a timestamp in seconds"),
        (-1.0, None, "expected a timestamp in seconds"),
        (1.7e12, None, "expected a timestamp in seconds"),
        (2.0, 2.0, "after the previous frame's 2.0 s, got 2.0 s"),
        (5000.0, 2.0, "jumps 5e\\+03 s past"),
    ],
)
def test_check_timestamp_rejects_absurd_values(ts: float, last: float | None, match: str) -> None:
    with pytest.raises(P.ProtocolError, match=match):
        P.check_timestamp(ts, last, max_jump_s=3600)


def test_server_messages_roundtrip_through_msgpack_and_json() -> None:
    notice = P.Notice(code=P.NoticeCode.WINDOW_RESET, message="reset", details={"n": 3})
    assert P.parse_server_message(P.pack(notice)) == notice
    assert P.parse_server_message(P.dump_json(notice)) == notice


def test_json_schemas_cover_every_message() -> None:
    schemas = P.json_schemas()
    assert {"Hello", "FrameIn", "AnticipationOut", "ErrorOut", "Welcome", "Notice"} <= set(schemas)
    assert schemas["FrameIn"]["properties"]["depth_codec"]["$ref"].endswith("DepthCodec")
