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

    rgb: uint8 (H, W, 3) in RGB order, or None when the camera has no colour (a depth-only sensor: time-of-flight,
    or a dataset that ships depth alone); a consumer that needs colour calls `color()`, which raises
    `MissingColorError`. depth: uint16 (Hd, Wd) in sensor units; metres = depth * depth_scale, 0 = invalid.
    timestamp: seconds, strictly increasing within a stream. label: ground truth where known.
    """

    rgb: np.ndarray | None
    depth: np.ndarray
    depth_scale: float
    timestamp: float
    index: int = 0
    intrinsics: Intrinsics | None = None
    depth_aligned: bool = True
    label: str | None = None

    def __post_init__(self) -> None:
        if self.rgb is not None and (self.rgb.dtype != np.uint8 or self.rgb.ndim != 3 or self.rgb.shape[2] != 3):
            raise ValueError(f"expected rgb uint8 (H, W, 3), got {self.rgb.dtype} {self.rgb.shape}")
        if self.depth.dtype != np.uint16 or self.depth.ndim != 2:
            raise ValueError(f"expected depth uint16 (H, W), got {self.depth.dtype} {self.depth.shape}")
        if not (self.depth_scale > 0):
            raise ValueError(f"expected a positive depth scale in metres per unit, got {self.depth_scale!r}")

    @property
    def has_color(self) -> bool:
        return self.rgb is not None

    def color(self) -> np.ndarray:
        """The colour image, for consumers that cannot work without it."""
        if self.rgb is None:
            raise MissingColorError(
                f"frame {self.index} has no colour image (a depth-only camera or dataset); this step needs RGB-D input"
            )
        return self.rgb


class MissingColorError(ValueError):
    """A step that needs colour got a frame, sequence or stream from a depth-only source."""
