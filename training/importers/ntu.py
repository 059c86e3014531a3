"""NTU RGB+D (60 classes) from its original layout into the common dataset format.

Original layout (as distributed, archives extracted side by side)::

    ROOT/
      nturgb+d_rgb/S001C001P001R001A001_rgb.avi                      colour video, 1920x1080, 30 fps
      nturgb+d_depth_masked/S001C001P001R001A001/MDepth-00000001.png  masked depth, 512x424 uint16 PNG, millimetres

SsssCcccPpppRrrrAaaa = setup, camera, performer, replication, action (A001..A060, names in ntu_classes.py).
One action per clip, so every frame carries the clip's class and anticipation becomes early prediction.
As the authors prepared it, the colour video is subsampled to the depth frame count with evenly spaced indices
(colour index = round(linspace(0, n_rgb - 1, n_depth))); depth is not registered to colour (depth_aligned false).
Clips are split 60/25/15 at random with a fixed seed.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from rgbd.dataset import DatasetWriter
from rgbd.frame import Frame
from training.importers import common
from training.importers import report as rp
from training.importers.ntu_classes import NTU60_ACTIONS
from training.importers.report import ImportReport

logger = logging.getLogger(__name__)

FPS = 30.0
DEPTH_SCALE = 0.001  # millimetres
FRACTIONS: common.Fractions = (0.6, 0.25, 0.15)
RGB_DIR = "nturgb+d_rgb"
DEPTH_DIR = "nturgb+d_depth_masked"
CLIP_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")
DEPTH_RE = re.compile(r"^MDepth-(\d+)\.png$", re.IGNORECASE)


def _rgb_frame_count(cap: cv2.VideoCapture) -> int:
    """The container's frame count, or a count by grabbing every frame when the container does not say."""
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if n > 0:
        return n
    n = 0
    while cap.grab():
        n += 1
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    return n


def pair_indices(n_rgb: int, depth_numbers: list[int]) -> list[tuple[int, int]]:
    """(depth frame number, colour index) pairs: colour subsampled evenly onto the depth timeline.

    The depth timeline is MDepth numbers 1..last. When the video has at least as many frames, colour index
    round(linspace(0, n_rgb - 1, last))[number - 1] goes with each depth number; when it has fewer, depth is
    thinned evenly to n_rgb frames instead, so no colour frame is ever repeated.
    """
    last = max(depth_numbers)
    if n_rgb >= last:
        idx = np.rint(np.linspace(0, n_rgb - 1, last)).astype(int)
        return [(number, int(idx[number - 1])) for number in range(1, last + 1)]
    numbers = np.rint(np.linspace(1, last, n_rgb)).astype(int)
    return [(int(number), k) for k, number in enumerate(numbers)]


def _frames(
    clip: str,
    video: Path,
    depth_files: dict[int, Path],
    pairs: list[tuple[int, int]],
    label: str,
    report: ImportReport,
    rgb_width: int | None,
) -> Iterator[Frame]:
    cap = cv2.VideoCapture(str(video))
    shapes = common.ShapeCheck(report, clip)
    try:
        want = {rgb_idx: number for number, rgb_idx in pairs}
        position, index = 0, 0
        for rgb_idx in sorted(want):
            number = want[rgb_idx]
            ok = True
            while ok and position < rgb_idx:
                ok = cap.grab()
                position += 1
            ok = ok and cap.grab()
            position += 1
            bgr = cap.retrieve()[1] if ok else None
            if bgr is None:
                report.problem(
                    rp.CORRUPT_FILE,
                    clip,
                    number,
                    f"colour frame {rgb_idx} of {video.name} cannot be decoded (video ends early or is corrupt)",
                    frames_skipped=1,
                )
                continue
            if number not in depth_files:
                report.problem(rp.MISSING_FILE, clip, number, f"MDepth-{number:08d}.png is missing", frames_skipped=1)
                continue
            depth = common.read_depth_png(depth_files[number], report, clip, number)
            if depth is None:
                continue
            rgb = common.resize_to_width(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), rgb_width)
            if not shapes.ok(rgb, depth, number):
                continue
            yield Frame(
                rgb=rgb,
                depth=depth,
                depth_scale=DEPTH_SCALE,
                timestamp=(number - 1) / FPS,
                index=index,
                depth_aligned=False,
                label=label,
            )
            index += 1
    finally:
        cap.release()


def _import_clip(clip: str, root: Path, writer: DatasetWriter, report: ImportReport, rgb_width: int | None) -> bool:
    m = CLIP_RE.match(clip)
    assert m is not None
    setup, camera, performer, replication, action = (int(g) for g in m.groups())
    video = root / RGB_DIR / f"{clip}_rgb.avi"
    depth_dir = root / DEPTH_DIR / clip
    if not 1 <= action <= len(NTU60_ACTIONS):
        detail = f"action A{action:03d} is not one of NTU RGB+D 60's A001..A060"
        report.skip_sequence(clip, detail, kind=rp.UNKNOWN_LABEL)
        return False
    if not video.is_file():
        report.skip_sequence(clip, f"colour video {video} is missing", kind=rp.MISSING_FILE)
        return False
    depth_files: dict[int, Path] = {}
    if depth_dir.is_dir():
        for p in depth_dir.iterdir():
            dm = DEPTH_RE.match(p.name)
            if dm:
                depth_files[int(dm.group(1))] = p
    if not depth_files:
        report.skip_sequence(clip, f"no MDepth-*.png in {depth_dir}", kind=rp.MISSING_FILE)
        return False
    cap = cv2.VideoCapture(str(video))
    n_rgb = _rgb_frame_count(cap) if cap.isOpened() else 0
    cap.release()
    if n_rgb == 0:
        report.skip_sequence(clip, f"colour video {video} cannot be opened or has no frames", kind=rp.CORRUPT_FILE)
        return False
    pairs = pair_indices(n_rgb, sorted(depth_files))
    last = max(depth_files)
    if n_rgb < last:
        kept = {number for number, _ in pairs}
        thinned = sum(1 for number in depth_files if number not in kept)
        report.problem(
            rp.COUNT_MISMATCH,
            clip,
            None,
            f"colour has {n_rgb} frames, fewer than depth's {last}: depth thinned evenly to {n_rgb} frames",
            frames_skipped=thinned,
        )
    label = NTU60_ACTIONS[action - 1]
    provenance = {
        "original_clip": clip,
        "setup": setup,
        "camera": camera,
        "performer": performer,
        "replication": replication,
        "action": action,
        "rgb_frames": n_rgb,
        "depth_frames": len(depth_files),
    }
    frames = _frames(clip, video, depth_files, pairs, label, report, rgb_width)
    meta = common.write_sequence(writer, report, clip, frames, fps=FPS, activity=label, provenance=provenance)
    return meta is not None


def import_ntu(
    root: Path,
    out: Path,
    *,
    seed: int = 0,
    fractions: common.Fractions = FRACTIONS,
    actions: set[int] | None = None,
    rgb_width: int | None = None,
    jpeg_quality: int = 90,
    progress: bool = True,
) -> ImportReport:
    """Import NTU RGB+D clips from `root` into a new dataset at `out` (optionally only some action numbers)."""
    root, out = Path(root), Path(out)
    if not (root / RGB_DIR).is_dir() and not (root / DEPTH_DIR).is_dir():
        raise FileNotFoundError(
            f"{root} has neither {RGB_DIR}/ nor {DEPTH_DIR}/: expected NTU RGB+D's original layout (see --help)"
        )
    common.prepare_output(out)
    report = ImportReport(source="ntu")
    clips: set[str] = set()
    if (root / RGB_DIR).is_dir():
        clips |= {p.name[: -len("_rgb.avi")] for p in (root / RGB_DIR).glob("*_rgb.avi")}
    if (root / DEPTH_DIR).is_dir():
        clips |= {p.name for p in (root / DEPTH_DIR).iterdir() if p.is_dir()}
    for odd in sorted(c for c in clips if not CLIP_RE.match(c)):
        logger.info("ignoring %s: not an NTU clip name SsssCcccPpppRrrrAaaa", odd)
    names = sorted(c for c in clips if CLIP_RE.match(c))
    if actions is not None:
        names = [c for c in names if int(c[-3:]) in actions]
    writer = DatasetWriter(
        out,
        name="ntu",
        classes=NTU60_ACTIONS,
        fps=FPS,
        source="ntu-rgbd",
        provenance={"original_root": str(root.resolve()), "rgb_width": rgb_width, "actions": sorted(actions or [])},
        jpeg_quality=jpeg_quality,
    )
    written: list[str] = []
    for clip in tqdm(names, desc="ntu", unit="clip", disable=not progress):
        report.sequences_seen += 1
        if _import_clip(clip, root, writer, report, rgb_width):
            written.append(clip)
    splits = common.split_ids(written, random.Random(seed), fractions)
    common.save_splits(out, splits, seed, fractions, group_by="clip")
    common.finish(writer, report)
    return report
