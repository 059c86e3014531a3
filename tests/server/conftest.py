"""Fixtures for the server tests: a tiny model saved as a checkpoint (session scope), settings, and live servers
(uvicorn in a thread on a free loopback port) talked to with real WebSocket and HTTP clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from model import R3D, Preprocessing, R3DConfig, save_checkpoint
from server.app import create_app
from server.serving import BackgroundServer
from server.settings import Settings

API_KEY = "test-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
CLASSES = ["walk", "sit", "drink"]


def tiny_config() -> R3DConfig:
    return R3DConfig(
        classes=list(CLASSES), window_s=2.0, horizon_s=2.0, fps=15.0, max_len=64,
        preprocessing=Preprocessing(image_size=(120, 160), depth_size=(24, 32)),
    )  # fmt: skip


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """'base'; 'same_encoder': other anticipator weights; 'other_encoder': other frame-encoder weights."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    model = R3D(tiny_config()).eval()
    out = {"base": save_checkpoint(root / "base.safetensors", model)}
    with torch.no_grad():
        for p in model.anticipator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out["same_encoder"] = save_checkpoint(root / "same_encoder.safetensors", model)
    with torch.no_grad():
        for p in model.frame_encoder.rgb_proj.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out["other_encoder"] = save_checkpoint(root / "other_encoder.safetensors", model)
    return out


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


def make_settings(checkpoint: Path, data_root: Path, jobs_dir: Path, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "model_path": checkpoint, "backend": "pytorch", "port": 0, "api_keys": [API_KEY], "data_root": data_root,
        "admin_keys": [ADMIN_KEY], "models_dir": checkpoint.parent,
        "jobs_dir": jobs_dir, "inference_threads": 2, "decode_threads": 2, "reconnect_grace_s": 30.0,
        "shutdown_grace_s": 2.0, "log_level": "warning",
    }  # fmt: skip
    fields.update(overrides)
    return Settings(**fields)


ServerFactory = Callable[..., AbstractContextManager[str]]


@pytest.fixture(scope="session")
def server_factory(
    checkpoints: dict[str, Path], data_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> ServerFactory:
    """``with server_factory(**settings) as url:`` a fresh live server with these settings."""

    @contextmanager
    def start(**overrides: Any) -> Iterator[str]:
        settings = make_settings(checkpoints["base"], data_root, tmp_path_factory.mktemp("jobs"), **overrides)
        with BackgroundServer(create_app(settings), settings) as url:
            yield url

    return start


@pytest.fixture(scope="session")
def live_server(server_factory: ServerFactory) -> Iterator[str]:
    """The shared server (default scheduling, API key required); tests close the sessions they open."""
    with server_factory() as url:
        yield url


@pytest.fixture(scope="session")
def ws_url(live_server: str) -> str:
    return "ws" + live_server[len("http") :] + "/v1/stream"
