"""Shared fixtures: one tiny model (real EfficientNet-Lite0 backbone) exported ONCE per test session via the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from export.backends import PyTorchBackend
from export.cli import main
from export.ort_backend import OnnxRuntimeBackend
from model import R3D, Preprocessing, R3DConfig, save_checkpoint
from model.rtf import smallest_gamma_mask
from tests.real_fixtures import REAL_FIXTURES

KINECT = REAL_FIXTURES / "azure_kinect" / "recording.mkv"


def tiny_config(**overrides: object) -> R3DConfig:
    fields: dict[str, object] = {
        "classes": ["walk", "sit", "drink"],
        "max_len": 64,
        "window_s": 2.0,
        "horizon_s": 2.0,
        "fps": 15.0,
        "preprocessing": Preprocessing(depth_size=(24, 32)),
    }
    fields.update(overrides)
    return R3DConfig(**fields)  # type: ignore[arg-type]


def as_if_trained(model: R3D, seed: int = 0) -> R3D:
    """Give the fuser what training would: spread BatchNorm gammas and statistics, and the exchanged channel set."""
    g = torch.Generator().manual_seed(seed)
    fuser = model.anticipator.fuser
    with torch.no_grad():
        for bn in (getattr(fuser, "bn_rgb", None), getattr(fuser, "bn_depth", None)):
            if bn is not None:
                bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
                bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
                bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        if hasattr(fuser, "rgb_channels") and hasattr(fuser, "bn_rgb"):
            fuser.rgb_channels.copy_(smallest_gamma_mask(fuser.bn_rgb.weight, fuser.k))
            fuser.depth_channels.copy_(smallest_gamma_mask(fuser.bn_depth.weight, fuser.k))
    return model.eval()


def kinect_frames() -> tuple[np.ndarray, np.ndarray, float] | None:
    """The first colour and depth images of the real Azure Kinect fixture (tests/real_fixtures.py), or None when
    absent."""
    if not KINECT.is_file():
        return None
    import av
    import cv2

    rgb = depth = None
    with av.open(str(KINECT)) as container:
        for packet in container.demux():
            title = packet.stream.metadata.get("title", "")
            if packet.size and title == "COLOR" and rgb is None:
                bgr = cv2.imdecode(np.frombuffer(bytes(packet), np.uint8), cv2.IMREAD_COLOR)
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            elif packet.size and title == "DEPTH" and depth is None:
                depth = np.frombuffer(bytes(packet), ">u2").reshape(576, 640).astype(np.uint16)
            if rgb is not None and depth is not None:
                break
    assert rgb is not None and depth is not None
    rgb = cv2.resize(rgb, (640, 576))  # one frame size for both, as an aligned stream would have
    return rgb[None], depth[None], 0.001


@pytest.fixture(scope="session")
def tiny_model() -> R3D:
    torch.manual_seed(0)
    return as_if_trained(R3D(tiny_config()))


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model: R3D, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", tiny_model)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """r3d-export CHECKPOINT --out BUNDLE [--frames kinect.npz], run once per session."""
    root = tmp_path_factory.mktemp("bundle")
    argv = [str(tiny_checkpoint), "--out", str(root / "tiny")]
    frames = kinect_frames()
    if frames is not None:
        np.savez(root / "kinect.npz", rgb=frames[0], depth=frames[1], depth_scale=frames[2])
        argv += ["--frames", str(root / "kinect.npz")]
    assert main(argv) == 0
    return root / "tiny"


@pytest.fixture(scope="session")
def ort_backend(tiny_bundle: Path) -> OnnxRuntimeBackend:
    from export.bundle import load_bundle

    return OnnxRuntimeBackend.from_bundle(load_bundle(tiny_bundle), device="cpu")


@pytest.fixture(scope="session")
def torch_backend(tiny_checkpoint: Path) -> PyTorchBackend:
    return PyTorchBackend.from_checkpoint(tiny_checkpoint, device="cpu")
