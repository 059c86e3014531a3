"""Depth-only cameras on the wire (hello color false, frames without colour) against live servers: an RGB-D model
refuses such a stream at hello; a depth-only model serves it, and its predictions do not depend on colour."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from model import R3D, save_checkpoint
from server.protocol import encode_frame
from tests.server.conftest import ServerFactory, tiny_config
from tests.server.helpers import API_HEADERS, H, W, frame_msg, hello, open_ws, recv, recv_until, start, synthetic_frame


@pytest.fixture(scope="module")
def depth_only_url(checkpoints: dict[str, Path], server_factory: ServerFactory) -> Iterator[str]:
    """A live server whose model is depth-only (fusion depth, conv depth encoder)."""
    cfg = tiny_config()
    cfg.fusion, cfg.depth_encoder = "depth", "conv"
    torch.manual_seed(0)
    path = save_checkpoint(checkpoints["base"].parent / "depth_only.safetensors", R3D(cfg).eval())
    with server_factory(model_path=path) as url:
        yield url


def ws(url: str) -> str:
    return "ws" + url[len("http") :] + "/v1/stream"


def depth_only_frame(i: int) -> bytes:
    _, depth = synthetic_frame(i)
    return encode_frame(None, depth, i / 15.0, i)


def test_an_rgbd_model_refuses_a_depth_only_hello_with_color_required(live_server: str) -> None:
    with open_ws(ws(live_server)) as conn:
        conn.send(hello(color=False))
        error = recv(conn)
    assert error.type == "error" and error.code.value == "color_required"
    assert "depth-only stream (color false)" in error.message and "fusion: depth" in error.message
    body = {"width": W, "height": H, "depth_scale": 0.001, "color": False}
    response = httpx.post(f"{live_server}/v1/sessions", json=body, headers=API_HEADERS)
    assert response.status_code == 422 and response.json()["code"] == "color_required"


def test_an_rgbd_stream_without_colour_in_a_frame_is_a_bad_frame(live_server: str) -> None:
    with open_ws(ws(live_server)) as conn:
        start(conn, backpressure="block")
        conn.send(depth_only_frame(0))
        error, _ = recv_until(conn, "error")
    assert error.code.value == "bad_frame" and "color: false in its hello" in error.message


def test_a_depth_only_model_serves_a_depth_only_stream_and_ignores_colour(depth_only_url: str) -> None:
    with open_ws(ws(depth_only_url)) as conn:
        welcome = start(conn, color=False, tick_hz=15.0, backpressure="block")
        assert welcome.model.uses_color is False
        for i in range(8):
            conn.send(depth_only_frame(i))
        depth_only = [recv_until(conn, "prediction")[0] for _ in range(8)]
        conn.send(frame_msg(8))  # colour in a depth-only stream
        error, _ = recv_until(conn, "error")
    assert error.code.value == "bad_frame" and "depth-only stream (color false)" in error.message
    assert [p.frame_seq for p in depth_only] == list(range(8)) and depth_only[-1].counters.accepted == 8
    with open_ws(ws(depth_only_url)) as conn:  # the same depth with colour: the depth-only model ignores it
        start(conn, tick_hz=15.0, backpressure="block")
        for i in range(8):
            conn.send(frame_msg(i))
        rgbd = [recv_until(conn, "prediction")[0] for _ in range(8)]
    for a, b in zip(depth_only, rgbd, strict=True):
        assert a.current.label == b.current.label
        for name, p in a.current.probabilities.items():
            assert p == pytest.approx(b.current.probabilities[name], abs=1e-5)


def _predictions(conn: Any, n: int) -> list[Any]:
    """The next n predictions; any other message in between (an error) fails the test."""
    out = []
    for _ in range(n):
        prediction, others = recv_until(conn, "prediction")
        assert others == [], others
        out.append(prediction)
    return out


def test_a_depth_only_stream_reports_its_colour_as_absent_without_a_rank(depth_only_url: str) -> None:
    with open_ws(ws(depth_only_url)) as conn:
        start(conn, color=False, tick_hz=15.0, backpressure="block")
        for i in range(20):
            conn.send(depth_only_frame(i))
        health = _predictions(conn, 20)[-1].modality
    assert health.rgb_status.value == "absent" and health.erank_rgb is None and health.balance is None
    assert health.depth_status is not None and health.erank_depth is not None


def test_an_rgbd_stream_whose_colour_stops_shows_colour_missing(depth_only_url: str) -> None:
    """A depth-only model ignores colour it is sent ('unused') and keeps serving an RGB-D stream whose frames stop
    carrying colour, which modality health then reports as 'missing'."""
    with open_ws(ws(depth_only_url)) as conn:
        start(conn, tick_hz=15.0, backpressure="block")
        for i in range(20):
            conn.send(frame_msg(i))
        with_colour = _predictions(conn, 20)
        for i in range(20, 50):  # the colour camera stops: the same stream's frames arrive without colour
            conn.send(depth_only_frame(i))
        without_colour = _predictions(conn, 30)
    assert with_colour[-1].modality.rgb_status.value == "unused" and with_colour[-1].modality.erank_rgb is None
    assert without_colour[-1].modality.rgb_status.value == "missing" and without_colour[-1].modality.erank_rgb is None
    assert without_colour[-1].counters.accepted == 50 and without_colour[-1].counters.rejected == 0
