"""Every bad input gets an error naming what was wrong and what was expected; the session and the server keep
running and nothing already buffered is lost (the next good frame's window continues where it was)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import httpx
import msgpack
import numpy as np
import pytest

from server.protocol import encode_color, encode_frame, pack
from tests.server.helpers import API_HEADERS, BYE, frame_msg, hello, open_ws, recv, recv_until, start, synthetic_frame


def _truncated_jpeg() -> bytes:
    msg = msgpack.unpackb(frame_msg(1))
    msg["color"] = msg["color"][: len(msg["color"]) // 2]
    return msgpack.packb(msg)


def _frame_with(**changes: object) -> bytes:
    msg = msgpack.unpackb(frame_msg(1))
    msg.update(changes)
    return msgpack.packb(msg)


def _nan_depth() -> bytes:
    metres = np.full((120, 160), 1.2, np.float32)
    metres[10, 10:15] = math.nan
    return _frame_with(depth_codec="raw", depth=metres.tobytes(), depth_dtype="float32")


BAD: dict[str, tuple[Callable[[], bytes | str], str, str]] = {
    "malformed": (lambda: b"\xc1\x00garbage", "malformed_message", "expected a msgpack map"),
    "not_json": (lambda: "{hello", "malformed_message", "expected a JSON text map"),
    "unknown_type": (lambda: pack({"type": "dance"}), "unknown_message_type", "unknown message type 'dance'"),
    "missing_fields": (lambda: pack({"type": "frame", "seq": 1}), "malformed_message", "ts: Field required"),
    "future_version": (
        lambda: pack({"type": "ping", "v": 2}),
        "unsupported_version",
        "version 2; this server speaks 1",
    ),
    "wrong_resolution": (
        lambda: encode_frame(*synthetic_frame(1, h=240, w=320), 1 / 15, 1),
        "wrong_resolution",
        "expected colour 120x160, got 240x320",
    ),
    "raw_colour_size": (
        lambda: _frame_with(color_codec="raw", color=b"\x00" * 100, color_shape=[120, 160, 3]),
        "bad_frame",
        r"expected raw colour uint8 \(120, 160, 3\) = 57600 bytes, got 100 bytes",
    ),
    "eight_bit_depth": (
        lambda: _frame_with(depth_codec="png", depth=encode_color(synthetic_frame(1)[0], "png")),
        "bad_frame",
        "expected 16-bit single-channel depth PNG, got 8-bit RGB",
    ),
    "corrupt_jpeg": (_truncated_jpeg, "corrupt_image", "colour JPEG of .* bytes could not be decoded"),
    "corrupt_png": (lambda: _frame_with(depth_codec="png", depth=b"\x89PNG\r\n\x1a\nbroken"), "corrupt_image", "PNG"),
    "corrupt_zstd": (lambda: _frame_with(depth=b"\x28\xb5\x2f\xfdjunk"), "corrupt_image", "could not be decompressed"),
    "zero_depth": (
        lambda: _frame_with(depth_codec="raw", depth=bytes(120 * 160 * 2)),
        "bad_depth",
        "all zeros .* is the depth stream running",
    ),
    "nan_depth": (_nan_depth, "bad_depth", "depth has 5 NaN or infinite values"),
    "repeated_timestamp": (
        lambda: frame_msg(1, ts=0.0),
        "bad_timestamp",
        "after the previous frame's 0.0 s, got 0.0 s",
    ),
    "millisecond_timestamp": (lambda: frame_msg(1, ts=1.7e12), "bad_timestamp", "expected a timestamp in seconds"),
    "nan_timestamp": (lambda: frame_msg(1, ts=math.nan), "bad_timestamp", "expected a timestamp in seconds"),
    "oversized": (
        lambda: _frame_with(color=b"\x00" * (8 * 2**20 + 10)),
        "message_too_large",
        "expected messages of at most 8388608 bytes",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_stream_bad_message_gets_error_and_session_continues(ws_url: str, case: str) -> None:
    make, code, match = BAD[case]
    with open_ws(ws_url) as ws:
        start(ws, backpressure="block")
        ws.send(frame_msg(0, ts=0.0))
        first, _ = recv_until(ws, "prediction")
        ws.send(make())
        error, _ = recv_until(ws, "error")
        ws.send(frame_msg(2, ts=2 / 15))
        after, others = recv_until(ws, "prediction")
        ws.send(BYE)
    assert error.code == code and not error.fatal
    assert re.search(match, error.message), error.message
    assert first.window.frames == 1 and after.window.frames == 2  # the buffered token survived
    assert not [m for m in others if m.type == "error"]


def test_stream_frame_before_hello_is_refused_then_hello_works(ws_url: str) -> None:
    with open_ws(ws_url) as ws:
        ws.send(frame_msg(0))
        error = recv(ws)
        welcome = start(ws, backpressure="block")
        ws.send(frame_msg(0))
        prediction, _ = recv_until(ws, "prediction")
        ws.send(BYE)
    assert (error.code, error.fatal, error.seq) == ("hello_required", False, 0)
    assert error.message == "expected a hello before the first frame"
    assert prediction.session_id == welcome.session_id


def test_stream_second_hello_is_refused(ws_url: str) -> None:
    with open_ws(ws_url) as ws:
        welcome = start(ws)
        ws.send(hello())
        error = recv(ws)
        ws.send(BYE)
    assert error.code == "duplicate_hello" and welcome.session_id in error.message


def test_stream_hello_for_unknown_session_is_fatal(ws_url: str) -> None:
    with open_ws(ws_url) as ws:
        ws.send(hello(session_id="nope"))
        error = recv(ws)
        with pytest.raises(Exception, match="4404"):
            ws.recv(timeout=10)
    assert error.code == "session_not_found" and error.fatal and "'nope'" in error.message


def test_post_bad_frame_over_http_gets_422_with_code(live_server: str) -> None:
    with httpx.Client(base_url=live_server, headers=API_HEADERS, timeout=30) as http:
        sid = http.post("/v1/sessions", json={"width": 160, "height": 120, "depth_scale": 0.001}).json()["id"]
        bad = http.post(f"/v1/sessions/{sid}/frames", content=_frame_with(depth_codec="raw", depth=bytes(10)))
        good = http.post(f"/v1/sessions/{sid}/frames", content=frame_msg(1))
        too_big = http.post(f"/v1/sessions/{sid}/frames", content=b"\x00" * (8 * 2**20 + 1))
        http.delete(f"/v1/sessions/{sid}")
    assert bad.status_code == 422 and bad.json()["code"] == "bad_frame"
    assert "expected depth uint16 (120, 160) = 38400 bytes, got 10 bytes" in bad.json()["message"]
    assert good.status_code == 202 and good.json()["counters"]["rejected"] == 1
    assert too_big.status_code == 413 and too_big.json()["code"] == "message_too_large"


def test_too_many_sessions_is_refused_with_429_and_close_1013(server_factory: Callable[..., object]) -> None:
    with server_factory(max_sessions=1) as url:  # type: ignore[attr-defined]
        with open_ws("ws" + url[4:] + "/v1/stream") as first:
            start(first)
            with open_ws("ws" + url[4:] + "/v1/stream") as second:
                second.send(hello())
                error = recv(second)
                with pytest.raises(Exception, match="1013"):
                    second.recv(timeout=10)
            rest = httpx.post(f"{url}/v1/sessions", json={"width": 160, "height": 120, "depth_scale": 0.001},
                              headers=API_HEADERS)  # fmt: skip
            first.send(BYE)
    assert error.code == "too_many_sessions" and error.fatal and "max_sessions=1" in error.message
    assert rest.status_code == 429 and rest.json()["code"] == "too_many_sessions"
