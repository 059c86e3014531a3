"""The model's input contract: camera RGB and depth -> the tensors the FrameEncoder takes.

RGB uint8 (H, W, 3) -> float (3, h, w) resized and normalised with ImageNet mean/std.
Depth uint16 (H, W) in sensor units + depth scale -> metres -> valid range (outside, and 0, are invalid)
-> per-frame min-max to [0, 1] over valid pixels (the paper) -> invalid pixels set to 0 -> resized (1, h, w).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model.backbones import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class Preprocessing:
    image_size: tuple[int, int] = (120, 160)  # (H, W) of the RGB input to the backbone
    depth_size: tuple[int, int] = (120, 160)  # (H, W) of the depth map fed to the depth projection
    depth_min_m: float = 0.1  # nearer readings are invalid
    depth_max_m: float = 10.0  # farther readings are invalid


def preprocess_rgb(rgb: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (B, H, W, 3) or (H, W, 3) RGB -> float32 (B, 3, h, w) normalised."""
    x = torch.as_tensor(rgb)
    if x.dtype != torch.uint8 or x.shape[-1] != 3 or x.ndim not in (3, 4):
        raise ValueError(f"expected RGB uint8 (H, W, 3) or (B, H, W, 3), got {x.dtype} {tuple(x.shape)}")
    x = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def preprocess_depth(
    depth: np.ndarray | torch.Tensor, depth_scale: float, size: tuple[int, int], min_m: float, max_m: float
) -> torch.Tensor:
    """uint16 (B, H, W) or (H, W) in sensor units -> float32 (B, 1, h, w) in [0, 1]; invalid pixels are 0.

    A frame with no valid pixel at all becomes all zeros (the model then sees "no depth", not garbage).
    """
    if isinstance(depth, np.ndarray):
        if depth.dtype != np.uint16:
            raise ValueError(f"expected depth uint16 in sensor units, got {depth.dtype} {depth.shape}")
        depth = torch.from_numpy(depth.astype(np.int32))
    if depth.ndim not in (2, 3):
        raise ValueError(f"expected depth (H, W) or (B, H, W), got {tuple(depth.shape)}")
    if not depth_scale > 0:
        raise ValueError(f"expected a positive depth scale (metres per unit), got {depth_scale!r}")
    m = depth.reshape(-1, 1, *depth.shape[-2:]).float() * depth_scale  # (B, 1, H, W) metres
    valid = (m >= min_m) & (m <= max_m)
    big = torch.finfo(torch.float32).max
    lo = torch.where(valid, m, big).amin(dim=(2, 3), keepdim=True)
    hi = torch.where(valid, m, -big).amax(dim=(2, 3), keepdim=True)
    span = (hi - lo).clamp_min(1e-6)
    x = torch.where(valid, (m - lo) / span, torch.zeros_like(m))
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="area")  # area keeps holes as partial values, no ringing
    return x
