"""Parity of two backends on the same inputs: the export's self-check and the TensorRT engines' check.

Inputs are random tensors and camera-like frames: frames the user gives (an .npz of RGB uint8 (N, H, W, 3), depth
uint16 (N, H, W) and depth_scale) or, without them, deterministic synthetic camera frames (a lit scene with a
person-sized box, a floor, and holes in the depth map), preprocessed with model.preprocess exactly as the service
does. The anticipator's real-input windows are tokens the reference FrameEncoder produced from those frames.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from export.bundle import ANTICIPATOR_OUTPUTS
from export.errors import ParityError
from model.preprocess import preprocess_depth, preprocess_rgb
from model.r3d import R3DConfig

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-4  # max abs difference, fp32 graphs against PyTorch eager (measured: about 1e-6)
FP16_TOLERANCE = 5e-2  # max abs difference of fp16 engines against fp32 ONNX Runtime


class Runner(Protocol):
    def encode(self, images: np.ndarray, depths: np.ndarray) -> np.ndarray: ...

    def anticipate(self, tokens: np.ndarray, valid: np.ndarray) -> Any: ...

    def info(self) -> dict[str, Any]: ...


Frames = tuple[np.ndarray, np.ndarray, float]  # rgb uint8 (N, H, W, 3), depth uint16 (N, H, W), metres per unit


def synthetic_camera_frames(n: int = 4, height: int = 480, width: int = 640, seed: int = 0) -> Frames:
    """Deterministic camera-like RGB-D frames: gradient walls, a floor, a moving box nearer the camera, depth holes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.empty((n, height, width, 3), np.uint8)
    depth = np.empty((n, height, width), np.uint16)
    for i in range(n):
        wall = np.stack([80 + 60 * xx / width, 90 + 50 * yy / height, 120 - 40 * xx / width], -1)
        mm = np.where(yy > 0.7 * height, 1500 + 2500 * (height - yy) / (0.3 * height), 4000.0)  # floor, then wall
        x0 = int(width * (0.2 + 0.1 * i))
        box = (xx >= x0) & (xx < x0 + width // 5) & (yy >= height // 4) & (yy < 0.85 * height)
        wall[box] = (200, 60 + 20 * i, 40)
        mm[box] = 1800 + 100 * i
        rgb[i] = np.clip(wall + rng.normal(0, 4, wall.shape), 0, 255).astype(np.uint8)
        holes = rng.random((height, width)) < 0.03
        holes[:, : width // 16] = True  # the invalid band at the left of a stereo depth map
        depth[i] = np.where(holes, 0, mm + rng.normal(0, 5, mm.shape)).astype(np.uint16)
    return rgb, depth, 0.001


def load_frames_npz(path: str | Path) -> Frames:
    """Read camera frames for the parity check: keys rgb (N, H, W, 3) uint8, depth (N, H, W) uint16, depth_scale."""
    with np.load(path) as data:
        missing = sorted({"rgb", "depth", "depth_scale"} - set(data.files))
        if missing:
            raise ValueError(f"{path}: expected arrays rgb, depth and depth_scale, missing {missing}")
        rgb, depth, scale = data["rgb"], data["depth"], float(data["depth_scale"])
    if rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"{path}: expected rgb uint8 (N, H, W, 3), got {rgb.dtype} {rgb.shape}")
    if depth.dtype != np.uint16 or depth.shape[:1] != rgb.shape[:1] or depth.ndim != 3:
        raise ValueError(f"{path}: expected depth uint16 ({rgb.shape[0]}, H, W), got {depth.dtype} {depth.shape}")
    return rgb, depth, scale


def preprocess_frames(cfg: R3DConfig, frames: Frames) -> tuple[np.ndarray, np.ndarray]:
    rgb, depth, scale = frames
    pre = cfg.preprocessing
    return preprocess_rgb(rgb, pre.image_size).numpy(), preprocess_depth(depth, scale, pre).numpy()


def _as_tuple(result: Any) -> tuple[np.ndarray, ...]:
    return tuple(getattr(result, f.name) for f in fields(result))


def _max_abs(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], names: Sequence[str]) -> dict[str, float]:
    out = {}
    for name, r, g in zip(names, ref, got, strict=True):
        if r.shape != g.shape:
            raise ParityError(f"output {name}: reference shape {r.shape}, candidate shape {g.shape}")
        out[name] = float(np.abs(r.astype(np.float64) - g.astype(np.float64)).max()) if r.size else 0.0
    return out


def _tile(x: np.ndarray, n: int) -> np.ndarray:
    reps = -(-n // len(x))
    return np.concatenate([x] * reps)[:n]


def run_parity(
    reference: Runner,
    candidate: Runner,
    cfg: R3DConfig,
    *,
    ts: Sequence[int] | None = None,
    batches: Sequence[int] = (1, 3),
    frames: Frames | None = None,
    frames_label: str = "",
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
) -> dict[str, Any]:
    """Run both backends on random and camera inputs at each batch size and window length; returns the report.

    ts defaults to {1, 7, the model's window, max_len}. The report's "passed" is False when any output's max abs
    difference exceeds `tolerance`; raise_on_failure turns that into a ParityError.
    """
    rng = np.random.default_rng(seed)
    ts = sorted({t for t in (ts or (1, 7, cfg.window_frames, cfg.max_len)) if 1 <= t <= cfg.max_len})
    if frames is None:
        frames, frames_label = synthetic_camera_frames(), "synthetic camera frames"
    cam_images, cam_depths = preprocess_frames(cfg, frames)
    (h, w), (dh, dw), c = cfg.preprocessing.image_size, cfg.preprocessing.depth_size, cfg.hidden
    cases: list[dict[str, Any]] = []

    def record(graph: str, inputs: str, batch: int, t: int | None, diffs: dict[str, float]) -> None:
        worst = max(diffs.values())
        cases.append({"graph": graph, "inputs": inputs, "batch": batch, "T": t, "max_abs": diffs,
                      "ok": bool(worst <= tolerance)})  # fmt: skip

    for b in batches:
        images = rng.standard_normal((b, 3, h, w), dtype=np.float32)
        depths = rng.random((b, cfg.preprocessing.depth_channels, dh, dw), dtype=np.float32)
        camera = (_tile(cam_images, b), _tile(cam_depths, b))
        for inputs, (im, de) in (("random", (images, depths)), ("camera", camera)):
            ref, got = reference.encode(im, de), candidate.encode(im, de)
            record("frame_encoder", inputs, b, None, _max_abs([ref], [got], ["tokens"]))
    cam_tokens = reference.encode(cam_images, cam_depths)  # (N, 2, C): real tokens for the anticipator
    for t in ts:
        for b in batches:
            tokens = rng.standard_normal((b, t, 2, c), dtype=np.float32)
            valid = rng.random((b, t)) < 0.8
            valid[:, -1] = True  # the newest frame of a window is always real
            cam = np.broadcast_to(_tile(cam_tokens, t)[None], (b, t, 2, c)).copy()
            cam += 0.01 * rng.standard_normal(cam.shape, dtype=np.float32)
            cam_valid = np.ones((b, t), bool)
            cam_valid[1:, : t // 2] = False  # a stream that has not filled its window yet
            for inputs, (tok, val) in (("random", (tokens, valid)), ("camera", (cam, cam_valid))):
                ref_out = _as_tuple(reference.anticipate(tok, val))
                got_out = _as_tuple(candidate.anticipate(tok, val))
                record("anticipator", inputs, b, t, _max_abs(ref_out, got_out, ANTICIPATOR_OUTPUTS))
    worst = max(max(case["max_abs"].values()) for case in cases)
    report = {
        "reference": _describe(reference),
        "candidate": _describe(candidate),
        "tolerance": tolerance,
        "metric": "max abs difference per output",
        "camera_inputs": frames_label or "user frames",
        "batches": list(batches),
        "T": ts,
        "max_abs": worst,
        "passed": all(case["ok"] for case in cases),
        "cases": cases,
    }
    logger.info("parity %s vs %s: max abs %.3g (tolerance %.3g) over %d cases", report["reference"],
                report["candidate"], worst, tolerance, len(cases))  # fmt: skip
    return report


def _describe(runner: Runner) -> str:
    info = runner.info()
    return f"{info.get('backend')} {info.get('device')} {info.get('precision')}"


def raise_on_failure(report: dict[str, Any]) -> None:
    """ParityError listing every case over the tolerance."""
    bad = [c for c in report["cases"] if not c["ok"]]
    if not bad:
        return
    lines = [
        f"{c['graph']} {c['inputs']} batch={c['batch']} T={c['T']}: "
        + ", ".join(f"{k}={v:.3g}" for k, v in c["max_abs"].items() if v > report["tolerance"])
        for c in bad
    ]
    raise ParityError(
        f"{report['candidate']} differs from {report['reference']} beyond the tolerance {report['tolerance']:g} "
        f"(max abs difference) in {len(bad)} of {len(report['cases'])} cases: " + "; ".join(lines)
    )
