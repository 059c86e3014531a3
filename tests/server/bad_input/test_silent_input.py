"""Finding 7 (server side): input that used to be accepted silently is refused, saying what was wrong."""

from __future__ import annotations

import math

import msgpack
import numpy as np

from server.protocol import pack
from tests.server.bad_input.conftest import Served
from tests.server.bad_input.wire import frame_with, send_bad
from tests.server.helpers import frame_msg, open_ws, recv


def test_stream_truncated_jpeg_with_an_end_marker_is_corrupt(served: Served) -> None:
    jpeg = msgpack.unpackb(frame_msg(1))["color"]
    error, window = send_bad(served, frame_with(color=jpeg[: len(jpeg) // 2] + b"\xff\xd9"))
    assert (error.code, error.fatal, window) == ("corrupt_image", False, 2)
    assert "could not be decoded (corrupt or truncated)" in error.message
    served.assert_still_serving()


def test_stream_float32_depth_beyond_uint16_units_is_refused_not_clipped(served: Served) -> None:
    metres = np.full((120, 160), 1e30, np.float32)
    error, window = send_bad(served, frame_with(depth_codec="raw", depth=metres.tobytes(), depth_dtype="float32"))
    assert (error.code, error.fatal, window) == ("bad_depth", False, 2)
    assert "depth has 19200 values beyond 65.535 m (max 1e+30 m)" in error.message
    served.assert_still_serving()


def test_hello_with_infinite_or_nan_intrinsics_is_refused(served: Served) -> None:
    intrinsics = {"width": 160, "height": 120, "fx": math.inf, "fy": 100.0, "cx": math.nan, "cy": 60.0}
    hello = {"type": "hello", "width": 160, "height": 120, "depth_scale": 0.001, "intrinsics": intrinsics}
    with open_ws(served.ws_url) as ws:
        ws.send(pack(hello))
        error = served.keep(recv(ws))
    assert error.type == "error" and error.code == "malformed_message"
    assert "intrinsics.fx: Input should be a finite number" in error.message
    assert "intrinsics.cx: Input should be a finite number" in error.message
    served.assert_still_serving()
