"""The frame record every source yields (docs/architecture.md, "Contracts")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of the colour (or aligned depth) image, in pixels."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def to_dict(self) -> dict[str, float | int]:
        return {"width": self.width, "height": self.height, "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy}

    @classmethod
    def from_dict(cls, d: dict[str, float | int]) -> Intrinsics:
        return cls(int(d["width"]), int(d["height"]), float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]))


@dataclass(frozen=True)
class Frame:
    """One RGB-D frame from a camera, a recording or a dataset.

    rgb: uint8 (H, W, 3) in RGB order. depth: uint16 (Hd, Wd) in sensor units; metres = depth * depth_scale,
    0 = invalid. timestamp: seconds, strictly increasing within a stream. label: ground truth where known.
    """

    rgb: np.ndarray
    depth: np.ndarray
    depth_scale: float
    timestamp: float
    index: int = 0
    intrinsics: Intrinsics | None = None
    depth_aligned: bool = True
    label: str | None = None

    def __post_init__(self) -> None:
        if self.rgb.dtype != np.uint8 or self.rgb.ndim != 3 or self.rgb.shape[2] != 3:
            raise ValueError(f"expected rgb uint8 (H, W, 3), got {self.rgb.dtype} {self.rgb.shape}")
        if self.depth.dtype != np.uint16 or self.depth.ndim != 2:
            raise ValueError(f"expected depth uint16 (H, W), got {self.depth.dtype} {self.depth.shape}")
        if not (self.depth_scale > 0):
            raise ValueError(f"expected a positive depth scale in metres per unit, got {self.depth_scale!r}")
