"""Client-side downscaling (hello.send_size = "model"): the server announces its input size, accepts model-size
frames for such a stream and refuses camera-size ones with the contract named; the resize helpers themselves."""

from __future__ import annotations

import numpy as np
import pytest

from server.protocol import (
    ErrorCode,
    SendSize,
    SessionCreate,
    downscale_depth,
    downscale_frame,
    downscale_rgb,
    encode_frame,
    pack,
    parse_server_message,
)
from tests.server.helpers import open_ws, recv_until, start, synthetic_frame

MODEL_IMAGE, MODEL_DEPTH = (120, 160), (24, 32)  # the tiny test model's input sizes (conftest.tiny_config)


def test_welcome_announces_the_model_input_sizes(ws_url: str) -> None:
    with open_ws(ws_url) as ws:
        welcome = start(ws)
    assert welcome.model.image_size == MODEL_IMAGE and welcome.model.depth_size == MODEL_DEPTH


def test_stream_with_send_size_model_takes_model_size_frames_and_refuses_camera_size(ws_url: str) -> None:
    with open_ws(ws_url) as ws:
        start(ws, width=640, height=480, send_size="model", tick_hz=15.0, backpressure="block")
        rgb, depth = synthetic_frame(0, h=480, w=640)
        ws.send(encode_frame(rgb, depth, 0.0, 0))  # camera size: refused, not fatal
        error, _ = recv_until(ws, "error")
        small_rgb, small_depth = downscale_frame(rgb, depth, MODEL_IMAGE, MODEL_DEPTH)
        ws.send(encode_frame(small_rgb, small_depth, 0.1, 1))
        prediction, _ = recv_until(ws, "prediction")
    assert error.code is ErrorCode.WRONG_RESOLUTION and not error.fatal and error.seq == 0
    assert "expected colour 120x160, got 480x640" in error.message and "send_size is 'model'" in error.message
    assert prediction.frame_seq == 1
    assert prediction.counters.rejected == 1 and prediction.counters.accepted == 1


def test_stream_with_send_size_full_refuses_model_size_frames_naming_the_hello(ws_url: str) -> None:
    with open_ws(ws_url) as ws:
        start(ws, width=640, height=480)
        rgb, depth = synthetic_frame(0)  # 120x160: the model's size, not the hello's
        ws.send(encode_frame(rgb, depth, 0.0, 0))
        error, _ = recv_until(ws, "error")
    assert error.code is ErrorCode.WRONG_RESOLUTION
    assert "expected colour 480x640, got 120x160" in error.message and "send_size is 'full'" in error.message


def test_session_create_frame_shapes_follow_send_size() -> None:
    full = SessionCreate(width=640, height=480, depth_width=320, depth_height=240, depth_scale=0.001)
    model = full.model_copy(update={"send_size": SendSize.MODEL})
    assert full.frame_shapes(MODEL_IMAGE, MODEL_DEPTH) == ((480, 640), (240, 320))
    assert model.frame_shapes(MODEL_IMAGE, MODEL_DEPTH) == (MODEL_IMAGE, MODEL_DEPTH)


def test_server_message_with_an_unknown_field_parses_for_forward_compatibility() -> None:
    pong = parse_server_message(pack({"type": "pong", "v": 1, "id": 3, "added_later": True}))
    assert pong.type == "pong" and pong.id == 3


def test_downscale_depth_averages_valid_readings_only_and_keeps_empty_blocks_as_holes() -> None:
    depth = np.array([[1000, 0, 3000, 3000], [0, 0, 3000, 1000]], np.uint16)  # two 2x2 blocks -> (1, 2)
    out = downscale_depth(depth, (1, 2))
    assert out.dtype == np.uint16 and out.tolist() == [[1000, 2500]]  # the holes do not pull the mean towards 0
    assert downscale_depth(np.zeros((4, 4), np.uint16), (2, 2)).tolist() == [[0, 0], [0, 0]]


def test_downscale_rgb_is_an_area_average_and_returns_model_size_frames_unchanged() -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:2, :2] = 200  # one 2x2 block bright, the rest dark
    out = downscale_rgb(rgb, (2, 2))
    assert out[0, 0].tolist() == [200, 200, 200] and out[1, 1].tolist() == [0, 0, 0]
    assert downscale_rgb(rgb, (4, 4)) is rgb


@pytest.mark.parametrize(
    ("rgb", "depth", "match"),
    [
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint16), "expected rgb uint8"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32), "expected depth uint16"),
    ],
)
def test_downscale_frame_wrong_dtype_names_expected(rgb: np.ndarray, depth: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        downscale_frame(rgb, depth, (4, 4), (2, 2))
