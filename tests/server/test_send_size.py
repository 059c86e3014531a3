"""Client-side downscaling (hello.send_size = "model"): the server announces its input size, accepts model-size
frames for such a stream and refuses camera-size ones with the contract named; the resize helpers themselves."""

from __future__ import annotations

import numpy as np
import pytest

from model import Preprocessing, prepare_inputs
from rgbd.open import open_source
from server.protocol import (
    ErrorCode,
    SendSize,
    SessionCreate,
    downscale_depth,
    downscale_frame,
    downscale_rgb,
    encode_color,
    encode_frame,
    pack,
    parse_server_message,
)
from tests.real_fixtures import real_fixture
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


def test_downscale_depth_averages_valid_readings_and_leaves_mostly_empty_blocks_as_holes() -> None:
    depth = np.array([[1000, 0, 3000, 3000], [3000, 0, 3000, 1000], [1000, 0, 0, 0], [0, 0, 0, 12000]], np.uint16)
    out = downscale_depth(depth, (2, 2), 0.001, (0.1, 10.0))  # 2x2 blocks; 12 m is outside the valid range
    assert out.dtype == np.uint16
    assert out.tolist() == [[2000, 2500], [0, 0]]  # holes do not pull a mean towards 0; < half valid: a hole


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


DEFAULT_INPUT = Preprocessing(image_size=(120, 160), depth_size=(60, 80))  # the default model's input sizes


@pytest.mark.parametrize("fixture", ["realsense_d435/single_depth_color_640x480.bag", "azure_kinect/recording.mkv"])
def test_model_inputs_from_a_downscaled_real_frame_match_those_from_the_full_frame(fixture: str) -> None:
    with open_source(str(real_fixture(fixture))) as frames:
        f = next(iter(frames))
    pre = DEFAULT_INPUT
    rgb, depth = downscale_frame(f.rgb, f.depth, pre.image_size, pre.depth_size, f.depth_scale,
                                 (pre.depth_min_m, pre.depth_max_m))  # fmt: skip
    full_image, full_depth = prepare_inputs(encode_color(f.rgb), f.depth, f.depth_scale, pre)  # JPEG q80 each
    small_image, small_depth = prepare_inputs(encode_color(rgb), depth, f.depth_scale, pre)
    raw_full, _ = prepare_inputs(f.rgb, f.depth, f.depth_scale, pre)
    raw_small, _ = prepare_inputs(rgb, depth, f.depth_scale, pre)

    # depth is lossless on the wire: only the client's rounding to whole sensor units (1 mm) differs
    np.testing.assert_allclose(small_depth, full_depth, rtol=0, atol=1e-3)
    np.testing.assert_array_equal(raw_small, raw_full)  # colour before the codec: the same INTER_AREA pixels
    # through JPEG q80 a 160x120 image keeps less than a 640x480 one decoded at 1/4 scale (measured 2.4 to 3.1
    # grey levels on average on these two frames; about 0.017 normalised units for the full frame's own JPEG)
    assert float(np.abs(small_image - full_image).mean()) < 0.08
