from __future__ import annotations

import pytest
import torch

from model import R3D, Preprocessing, R3DConfig


def tiny_config(**overrides: object) -> R3DConfig:
    fields: dict[str, object] = {
        "classes": ["walk", "sit", "drink"],
        "max_len": 64,
        "window_s": 2.0,
        "horizon_s": 2.0,
        "preprocessing": Preprocessing(depth_size=(24, 32)),
    }
    fields.update(overrides)
    return R3DConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def r3d_model() -> R3D:
    torch.manual_seed(0)
    return R3D(tiny_config()).eval()


def random_inputs(b: int, t: int, depth_size: tuple[int, int] = (24, 32), seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(b, t, 3, 120, 160, generator=g)
    depths = torch.rand(b, t, 1, *depth_size, generator=g)
    return images, depths
