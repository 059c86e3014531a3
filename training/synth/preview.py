"""Contact sheet of a sequence: sampled colour frames, depth colour-mapped, and a strip of the labels over time."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from rgbd.files import write_bytes_atomic
from rgbd.frame import Frame

TILE_W = 240  # width of one tile in the sheet


def class_colour(index: int, n: int) -> tuple[int, int, int]:
    """A distinct BGR colour per class index."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.65, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def preview_indices(n_frames: int, n_tiles: int = 8) -> list[int]:
    """Frame indices shown in a contact sheet, evenly spread."""
    n = min(n_tiles, n_frames)
    return sorted({int(round(i * (n_frames - 1) / max(n - 1, 1))) for i in range(n)})


def depth_colour(depth: np.ndarray, depth_scale: float, max_m: float = 6.0) -> np.ndarray:
    """Depth (sensor units) -> BGR image, near warm to far cool (TURBO reversed), invalid (0) black."""
    scaled = np.clip(255.0 - depth.astype(np.float32) * depth_scale / max_m * 255.0, 0, 255).astype(np.uint8)
    out = cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO)
    out[depth == 0] = 0
    return out


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.4, outline: bool = True) -> None:
    if outline:  # readable over pictures
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def contact_sheet(
    frames: Sequence[Frame], labels: Sequence[str | None], classes: Sequence[str], title: str, fps: float
) -> np.ndarray:
    """BGR image: a title, a row of colour tiles, a row of depth tiles, the label strip and a legend."""
    if not frames:
        raise ValueError("expected at least one frame for a contact sheet, got none")
    h0, w0 = frames[0].color().shape[:2]
    tw = min(TILE_W, w0)
    th = int(round(h0 * tw / w0))
    width = tw * len(frames)
    rgb_row = np.hstack([cv2.resize(cv2.cvtColor(f.color(), cv2.COLOR_RGB2BGR), (tw, th)) for f in frames])
    depth_row = np.hstack(
        [cv2.resize(depth_colour(f.depth, f.depth_scale), (tw, th), interpolation=cv2.INTER_NEAREST) for f in frames]
    )
    for k, f in enumerate(frames):
        _text(rgb_row, f"{f.timestamp:5.1f}s {f.label or '-'}", (k * tw + 4, 14))
    header = np.full((24, width, 3), 32, np.uint8)
    _text(header, title, (6, 16), 0.45, outline=False)
    # label strip: one column per frame, markers where tiles were taken
    n = len(labels)
    idx = np.minimum((np.arange(width) * n) // width, n - 1)
    index_of = {c: i for i, c in enumerate(classes)}
    strip = np.full((22, width, 3), 60, np.uint8)
    for x, i in enumerate(idx):
        lab = labels[int(i)]
        if lab is not None:
            strip[:, x] = class_colour(index_of[lab], len(classes))
    for f in frames:
        x = min(int(f.index * width / max(n, 1)), width - 1)
        strip[:4, max(x - 1, 0) : x + 2] = 255
    seconds = n / fps
    ticks = np.full((14, width, 3), 32, np.uint8)
    for s in range(0, int(seconds) + 1, 5):
        _text(ticks, f"{s}s", (min(int(s / seconds * width), width - 24), 11), 0.35, outline=False)
    # legend of the classes present, in class order
    present = [c for c in classes if c in set(labels)]
    legend = np.full((22, width, 3), 32, np.uint8)
    x = 6
    for c in present:
        cv2.rectangle(legend, (x, 5), (x + 12, 17), class_colour(index_of[c], len(classes)), -1)
        _text(legend, c, (x + 16, 15), 0.38, outline=False)
        x += 24 + 8 * len(c)
    return np.vstack([header, rgb_row, depth_row, strip, ticks, legend])


def write_contact_sheet(
    path: Path, frames: Sequence[Frame], labels: Sequence[str | None], classes: Sequence[str], title: str, fps: float
) -> None:
    ok, buf = cv2.imencode(".png", contact_sheet(frames, labels, classes, title, fps))
    if not ok:
        raise ValueError(f"could not encode the contact sheet {path} as PNG")
    write_bytes_atomic(path, buf.tobytes())
