"""Fixtures for the client tests that need the real service: a tiny random model (checkpoint), a RealSense .db3
recording with a ground-truth CSV, colour + depth image folders (depth in 0.1 mm), and a live server (uvicorn in a
thread on a loopback port) with an API key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from rgbd.frame import Frame

API_KEY = "client-test-key-0123456789"
CLASSES = ["walk", "sit", "drink"]
H, W = 120, 160
FPS = 15.0


def pattern_frame(i: int) -> Frame:
    """A moving colour and depth pattern (so tokens change), labelled by thirds of a 45-frame cycle."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    phase = 0.35 * i
    rgb = np.stack(
        [128 + 100 * np.sin(xx / 9 + phase), 128 + 100 * np.cos(yy / 7 - phase), 128 + 60 * np.sin((xx + yy) / 13)],
        axis=-1,
    ).astype(np.uint8)
    depth = (1500 + 900 * np.sin(xx / 17 + phase) * np.cos(yy / 11 - 0.5 * phase)).astype(np.uint16)
    return Frame(rgb, depth, 0.001, i / FPS, index=i, label=CLASSES[(i // 15) % 3])


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny R3D (2 s window and horizon at 15 fps) saved as a checkpoint."""
    import torch

    from model import R3D, Preprocessing, R3DConfig, save_checkpoint

    cfg = R3DConfig(
        classes=list(CLASSES), window_s=2.0, horizon_s=2.0, fps=FPS, max_len=64,
        preprocessing=Preprocessing(image_size=(H, W), depth_size=(24, 32)),
    )  # fmt: skip
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors", R3D(cfg).eval())


@pytest.fixture(scope="session")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a 45-frame 160x120 RealSense .db3 recording, its labels CSV frame,label)."""
    from rgbd.realsense import record_db3

    root = tmp_path_factory.mktemp("recording")
    frames = [pattern_frame(i) for i in range(45)]
    path = root / "walk_sit_drink.db3"
    assert record_db3(path, frames, fps=int(FPS)) == len(frames)
    labels = root / "labels.csv"
    labels.write_text("frame,label\n" + "".join(f"{f.index},{f.label}\n" for f in frames))
    return path, labels


@pytest.fixture(scope="session")
def live_url(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real service on a free loopback port, requiring API_KEY."""
    from server.app import create_app
    from server.serving import BackgroundServer
    from server.settings import Settings

    settings = Settings(
        model_path=tiny_checkpoint, backend="pytorch", port=0, api_keys=[API_KEY],
        data_root=tmp_path_factory.mktemp("data"), jobs_dir=tmp_path_factory.mktemp("jobs"), inference_threads=2,
        decode_threads=2, shutdown_grace_s=2.0, log_level="warning", default_tick_hz=15.0,
    )  # fmt: skip
    with BackgroundServer(create_app(settings), settings) as url:
        yield url


@pytest.fixture(scope="session")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rgb/ + depth/ image folders of 20 frames, depth in 0.1 mm units (depth scale 0.0001, not the default)."""
    root = tmp_path_factory.mktemp("capture") / "capture"
    for sub in ("rgb", "depth"):
        (root / sub).mkdir(parents=True)
    for i in range(20):
        frame = pattern_frame(i)
        cv2.imwrite(str(root / "rgb" / f"frame{i}.png"), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "depth" / f"frame{i}.png"), frame.depth * 10)
    return root


@pytest.fixture(scope="session")
def depth_only_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real service with a randomly initialised depth-only model (fusion depth, conv depth encoder)."""
    import torch

    from model import R3D, Preprocessing, R3DConfig, save_checkpoint
    from server.app import create_app
    from server.serving import BackgroundServer
    from server.settings import Settings

    cfg = R3DConfig(
        classes=list(CLASSES), window_s=2.0, horizon_s=2.0, fps=FPS, max_len=64, fusion="depth",
        depth_encoder="conv", preprocessing=Preprocessing(image_size=(H, W), depth_size=(24, 32)),
    )  # fmt: skip
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path_factory.mktemp("model") / "depth.safetensors", R3D(cfg).eval())
    settings = Settings(
        model_path=path, backend="pytorch", port=0, api_keys=[API_KEY], data_root=tmp_path_factory.mktemp("data"),
        jobs_dir=tmp_path_factory.mktemp("jobs"), inference_threads=2, decode_threads=2, shutdown_grace_s=2.0,
        log_level="warning", default_tick_hz=15.0,
    )  # fmt: skip
    with BackgroundServer(create_app(settings), settings) as url:
        yield url
