"""The SDK's send_size 'model' against the real service: it resizes camera frames to the size the server's welcome
announces (also through r3d-stream --send-size model), so the server receives exactly what a camera already at model
size would send, in fewer bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from clients.sdk import Backpressure, Client, SessionCreate
from clients.stream_cli import main
from rgbd.frame import Frame
from server.protocol import SendSize, downscale_frame
from tests.clients.conftest import API_KEY, FPS, H, W, pattern_frame

SCALE = 4  # camera frames 4x the model's colour size in each direction


def camera_frame(i: int) -> Frame:
    """The test pattern at 4x the model size (nearest upsampling plus a little texture, so JPEG has work to do)."""
    small = pattern_frame(i)
    rng = np.random.default_rng(i)
    rgb = np.repeat(np.repeat(small.rgb, SCALE, 0), SCALE, 1)
    rgb = np.clip(rgb.astype(np.int16) + rng.integers(-3, 4, rgb.shape), 0, 255).astype(np.uint8)
    depth = np.repeat(np.repeat(small.depth, SCALE, 0), SCALE, 1)
    return Frame(rgb, depth, small.depth_scale, small.timestamp, index=i)


def _stream(live_url: str, frames: list[Frame], send_size: SendSize, *, answers: int) -> tuple[list[list[float]], int]:
    """(the class probabilities of the first `answers` predictions, bytes sent) for one session."""
    (h, w), (dh, dw) = frames[0].rgb.shape[:2], frames[0].depth.shape
    create = SessionCreate(width=w, height=h, depth_width=dw, depth_height=dh, depth_scale=0.001, tick_hz=FPS,
                           backpressure=Backpressure.BLOCK, send_size=send_size)  # fmt: skip
    with Client(live_url, token=API_KEY) as client, client.stream(create) as stream:
        for f in frames:
            stream.send_frame(f)
        preds = [stream.next_prediction(timeout=60.0) for _ in range(answers)]
        return [list(p.current.probabilities.values()) for p in preds if p is not None], stream.stats.bytes_sent


def test_send_size_model_resizes_on_the_client_to_the_announced_size(live_url: str) -> None:
    camera = [camera_frame(i) for i in range(8)]
    with Client(live_url, token=API_KEY) as client:
        info = client.model_info()
    assert info.image_size == (H, W) and info.depth_size is not None
    resized = []
    for f in camera:
        rgb, depth = downscale_frame(f.rgb, f.depth, info.image_size, info.depth_size)
        resized.append(Frame(rgb, depth, f.depth_scale, f.timestamp, index=f.index))

    model_probs, model_bytes = _stream(live_url, camera, SendSize.MODEL, answers=len(camera))
    small_probs, small_bytes = _stream(live_url, resized, SendSize.FULL, answers=len(camera))  # camera at model size
    _, full_bytes = _stream(live_url, camera, SendSize.FULL, answers=0)

    assert len(model_probs) == len(camera) == len(small_probs)
    # the server saw the same pixels (the FrameEncoder's results vary by ~1e-7 with how frames were batched)
    np.testing.assert_allclose(model_probs, small_probs, atol=1e-5)
    assert model_bytes == small_bytes and model_bytes * 4 < full_bytes


def test_stream_cli_send_size_model_sends_smaller_frames_with_none_rejected(
    live_url: str, recording: tuple[Path, Path], tmp_path: Path
) -> None:
    db3, _ = recording  # 160x120 colour (the model's size already) and 160x120 depth (the model's is 32x24)
    summaries = {}
    for size in ("full", "model"):
        path = tmp_path / f"{size}.json"
        rc = main([str(db3), "--server", live_url, "--token", API_KEY, "--fast", "--max-frames", "10",
                   "--send-size", size, "--summary", str(path), "--print-hz", "0"])  # fmt: skip
        assert rc == 0
        summaries[size] = json.loads(path.read_text())
    model = summaries["model"]
    assert model["frames_sent"] == 10 and model["server_counters"]["rejected"] == 0
    assert model["server_counters"]["accepted"] == 10
    assert model["bytes_per_frame"] < summaries["full"]["bytes_per_frame"]
