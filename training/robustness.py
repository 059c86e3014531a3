"""Sensor degradations for the robustness evaluation: one table of names, what they do and their severities.

Each degradation acts on the raw camera data (RGB uint8 (H, W, 3) or depth uint16 (H, W) in sensor units) before
the model's own preprocessing, so a degraded feature cache is exactly what the model would see from a worse camera.
Random parts are seeded by (sequence id, frame index, name, severity): a degraded cache is reproducible.

| name        | modality | effect                                         | severity 1 | 2    | 3    |
|-------------|----------|------------------------------------------------|------------|------|------|
| rgb_dark    | rgb      | intensities multiplied by a gain               | 0.5        | 0.25 | 0.1  |
| rgb_noise   | rgb      | additive Gaussian noise, sigma in 0..255 units | 10         | 25   | 50   |
| rgb_blur    | rgb      | Gaussian blur, sigma in pixels at 160 px width | 1          | 2    | 4    |
| depth_noise | depth    | additive Gaussian noise, sigma in metres       | 0.02       | 0.05 | 0.15 |
| depth_holes | depth    | share of pixels zeroed (invalid) in blocks     | 0.1        | 0.25 | 0.5  |
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from rgbd.frame import MissingColorError


@dataclass(frozen=True)
class Degradation:
    name: str
    modality: str  # "rgb" or "depth"
    description: str
    unit: str
    levels: tuple[float, float, float]  # the parameter at severities 1, 2, 3


DEGRADATIONS: dict[str, Degradation] = {
    d.name: d
    for d in (
        Degradation("rgb_dark", "rgb", "intensities multiplied by a gain", "gain", (0.5, 0.25, 0.1)),
        Degradation("rgb_noise", "rgb", "additive Gaussian noise", "sigma (0..255)", (10.0, 25.0, 50.0)),
        Degradation("rgb_blur", "rgb", "Gaussian blur", "sigma (px at 160 px width)", (1.0, 2.0, 4.0)),
        Degradation("depth_noise", "depth", "additive Gaussian noise", "sigma (m)", (0.02, 0.05, 0.15)),
        Degradation("depth_holes", "depth", "pixels zeroed in 8x8 blocks", "share of pixels", (0.1, 0.25, 0.5)),
    )
}
SEVERITIES = (1, 2, 3)


def parse_degradation(text: str) -> tuple[str, int]:
    """'rgb_noise:2' -> ('rgb_noise', 2), with a clear error for unknown names or severities."""
    name, _, sev = text.partition(":")
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; expected one of {sorted(DEGRADATIONS)}")
    try:
        severity = int(sev or "0")
    except ValueError:
        severity = 0
    if severity not in SEVERITIES:
        raise ValueError(f"degradation {text!r}: expected NAME:SEVERITY with severity in {SEVERITIES}, got {sev!r}")
    return name, severity


def _rng(seq_id: str, index: int, name: str, severity: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(seq_id.encode()), index, zlib.crc32(name.encode()), severity])


def _dark(rgb: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.rint(rgb.astype(np.float32) * level), 0, 255).astype(np.uint8)


def _rgb_noise(rgb: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    noisy = rgb.astype(np.float32) + rng.normal(0.0, level, rgb.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _blur(rgb: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    sigma = level * rgb.shape[1] / 160.0
    return cv2.GaussianBlur(rgb, (0, 0), sigmaX=sigma, sigmaY=sigma)


def _depth_noise(depth: np.ndarray, level: float, scale: float, rng: np.random.Generator) -> np.ndarray:
    valid = depth > 0
    noisy = depth.astype(np.float64) + rng.normal(0.0, level / scale, depth.shape)
    out = np.clip(np.rint(noisy), 1, 65535).astype(np.uint16)
    return np.where(valid, out, 0).astype(np.uint16)  # invalid pixels stay invalid


def _depth_holes(depth: np.ndarray, level: float, scale: float, rng: np.random.Generator) -> np.ndarray:
    h, w = depth.shape
    blocks = rng.random(((h + 7) // 8, (w + 7) // 8)) < level
    mask = np.kron(blocks, np.ones((8, 8), dtype=bool))[:h, :w]
    return np.where(mask, 0, depth).astype(np.uint16)


_RGB: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "rgb_dark": _dark,
    "rgb_noise": _rgb_noise,
    "rgb_blur": _blur,
}
_DEPTH: dict[str, Callable[[np.ndarray, float, float, np.random.Generator], np.ndarray]] = {
    "depth_noise": _depth_noise,
    "depth_holes": _depth_holes,
}


def degrade_frame(
    rgb: np.ndarray | None, depth: np.ndarray, depth_scale: float, name: str, severity: int, seq_id: str, index: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """One frame's (rgb, depth) after the named degradation at the given severity (the other modality unchanged;
    rgb None for a depth-only frame, which only depth degradations accept)."""
    spec = DEGRADATIONS[name]
    level = spec.levels[severity - 1]
    rng = _rng(seq_id, index, name, severity)
    if spec.modality == "rgb":
        if rgb is None:
            raise MissingColorError(f"degradation {name!r} alters colour; frame {index} of {seq_id!r} has none")
        return _RGB[name](rgb, level, rng), depth
    return rgb, _DEPTH[name](depth, level, depth_scale, rng)


def degradation_table(names: Iterable[str] | None = None) -> str:
    """The table of degradations (these, default all) as Markdown (for reports)."""
    lines = ["| name | modality | effect | unit | severity 1 | 2 | 3 |", "|---|---|---|---|---|---|---|"]
    for d in (DEGRADATIONS[n] for n in (DEGRADATIONS if names is None else names)):
        lines.append(
            f"| {d.name} | {d.modality} | {d.description} | {d.unit} | " + " | ".join(map(str, d.levels)) + " |"
        )
    return "\n".join(lines)
