"""Labelled camera recordings (RealSense .bag/.db3, Azure Kinect .mkv) into the common dataset format.

Frames come from `rgbd.open.open_source(path)`; labels from a CSV per recording, either
`start,end,label` (seconds from the first frame, [start, end)) or `frame,label` (0-based frame index).
"""

from __future__ import annotations

import csv
import logging
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from rgbd.dataset import DatasetWriter
from rgbd.files import write_json_atomic
from rgbd.frame import Frame, Intrinsics
from training.importers import common
from training.importers import report as rp
from training.importers.report import ImportReport

logger = logging.getLogger(__name__)

DEFAULT_FPS = 30.0  # used only when neither --fps nor two timestamps give a rate


@dataclass
class LabelTrack:
    """A recording's labels: time ranges [start, end) in seconds from its first frame, or per frame index."""

    ranges: list[tuple[float, float, str]]
    by_frame: dict[int, str]

    def label(self, index: int, t: float) -> str | None:
        if index in self.by_frame:
            return self.by_frame[index]
        for start, end, name in self.ranges:
            if start <= t < end:
                return name
        return None

    def names(self) -> set[str]:
        return {r[2] for r in self.ranges} | set(self.by_frame.values())


def read_label_csv(path: Path, report: ImportReport, sequence: str) -> LabelTrack:
    """Parse a label CSV (start,end,label or frame,label); bad rows are reported and left out."""
    track = LabelTrack([], {})
    with path.open(newline="", errors="replace") as f:
        reader = csv.DictReader(f)
        fields = {(c or "").strip() for c in reader.fieldnames or []}
        timed = {"start", "end", "label"} <= fields
        if not timed and not {"frame", "label"} <= fields:
            raise ValueError(f"{path}: expected a header 'start,end,label' or 'frame,label', got {sorted(fields)!r}")
        for lineno, raw in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            if not row.get("label"):
                report.problem(rp.BAD_ANNOTATION, sequence, None, f"{path.name} line {lineno}: empty label")
                continue
            try:
                if timed:
                    start, end = float(row["start"]), float(row["end"])
                    if not (0 <= start < end):
                        raise ValueError
                    track.ranges.append((start, end, row["label"]))
                else:
                    frame = int(row["frame"])
                    if frame < 0:
                        raise ValueError
                    track.by_frame[frame] = row["label"]
            except ValueError:
                what = "0 <= start < end in seconds" if timed else "a 0-based frame index"
                report.problem(
                    rp.BAD_ANNOTATION, sequence, None, f"{path.name} line {lineno}: expected {what}, got {row!r}"
                )
    ordered = sorted(track.ranges)
    for (s0, e0, a), (s1, e1, b) in zip(ordered, ordered[1:], strict=False):
        if s1 < e0:
            detail = f"{path.name}: ranges {a!r} [{s0}, {e0}) and {b!r} [{s1}, {e1}) overlap; the earlier wins"
            report.problem(rp.BAD_ANNOTATION, sequence, None, detail)
    track.ranges = ordered
    return track


def _scale(intr: Intrinsics | None, w: int, h: int) -> Intrinsics | None:
    if intr is None:
        return None
    sx, sy = w / intr.width, h / intr.height
    return Intrinsics(w, h, intr.fx * sx, intr.fy * sy, intr.cx * sx, intr.cy * sy)


def resize_frame(frame: Frame, width: int | None) -> Frame:
    """Downscale colour (and aligned depth, nearest) to `width`, scaling the intrinsics to match."""
    rgb = common.resize_to_width(frame.color(), width)  # camera recordings are RGB-D
    if rgb is frame.rgb:
        return frame
    h, w = rgb.shape[:2]
    depth = frame.depth
    if frame.depth_aligned and depth.shape == frame.color().shape[:2]:
        depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST)
    return replace(frame, rgb=rgb, depth=depth, intrinsics=_scale(frame.intrinsics, w, h))


def _open_frames(path: Path, info: dict[str, float | None]) -> Iterator[Frame]:
    """Frames of a recording; info["fps"] gets the rate its container declares (None when it declares none)."""
    from rgbd.open import open_source  # pyrealsense2 / av are imported only when recordings are read

    with open_source(path) as source:
        info["fps"] = source.fps
        yield from source


def _frames(
    seq: str,
    path: Path,
    track: LabelTrack | None,
    classes: set[str],
    background: str | None,
    report: ImportReport,
    rgb_width: int | None,
    times: list[float],
    info: dict[str, float | None],
) -> Iterator[Frame]:
    shapes = common.ShapeCheck(report, seq)
    unknown: dict[str, int] = {}
    source: Iterator[Frame] = _open_frames(path, info)
    t0: float | None = None
    position = 0  # index of the frame in the recording, as the label CSV counts
    while True:
        try:
            frame = next(source)
        except StopIteration:
            break
        except Exception as exc:  # a damaged container ends the sequence here; what was read is kept
            report.problem(rp.CORRUPT_FILE, seq, position, f"reading {path.name} failed: {exc}")
            break
        t0 = frame.timestamp if t0 is None else t0
        t = frame.timestamp - t0
        index, position = position, position + 1
        if times and t <= times[-1]:
            detail = f"timestamp {frame.timestamp!r} does not increase after the previous frame; frame skipped"
            report.problem(rp.BAD_FRAME, seq, index, detail, frames_skipped=1)
            continue
        frame = resize_frame(frame, rgb_width)
        if not shapes.ok(frame.color(), frame.depth, index):
            continue
        label = track.label(index, t) if track is not None else None
        if label is not None and label not in classes:
            unknown[label] = unknown.get(label, 0) + 1
            label = None
        elif label is None:
            label = background
        times.append(t)
        yield replace(frame, timestamp=t, index=len(times) - 1, label=label)
    for name, count in unknown.items():
        detail = f"label {name!r} is not in the class list; its {count} frames are kept unlabelled"
        report.problem(rp.UNKNOWN_LABEL, seq, None, detail, labels_dropped=count)


def _sequence_id(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-.") or "recording"
    seq, k = base, 2
    while seq in taken:
        seq, k = f"{base}-{k}", k + 1
    taken.add(seq)
    return seq


def estimate_fps(times: Sequence[float]) -> float | None:
    """1 / median frame interval, or None with fewer than two frames."""
    if len(times) < 2:
        return None
    return float(1.0 / np.median(np.diff(np.asarray(times))))


def import_recordings(
    recordings: Iterable[Path],
    out: Path,
    *,
    labels: list[Path] | None = None,
    classes: list[str] | None = None,
    background: str | None = None,
    fps: float | None = None,
    seed: int = 0,
    fractions: common.Fractions = (0.7, 0.15, 0.15),
    rgb_width: int | None = None,
    jpeg_quality: int = 90,
    progress: bool = True,
) -> ImportReport:
    """Import recordings (one sequence each) with their label CSVs into a new dataset at `out`."""
    paths = [Path(p) for p in recordings]
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"expected one --labels CSV per recording ({len(paths)}), got {len(labels)}")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"recording {p} does not exist")
    common.prepare_output(Path(out))
    report = ImportReport(source="recording")
    label_paths = labels or [p.with_suffix(".csv") for p in paths]
    taken: set[str] = set()
    seq_ids = [_sequence_id(p, taken) for p in paths]
    tracks: list[LabelTrack | None] = []
    for seq, lp in zip(seq_ids, label_paths, strict=True):
        if lp.is_file():
            tracks.append(read_label_csv(lp, report, seq))
        else:
            tracks.append(None)
            report.problem(rp.MISSING_LABEL, seq, None, f"label CSV {lp} is missing; the recording stays unlabelled")
    class_list = list(classes) if classes else sorted(set().union(*(t.names() for t in tracks if t is not None)))
    if background is not None and background not in class_list:
        class_list.append(background)
    if not class_list:
        raise ValueError("no class names: give --classes or label CSVs with at least one label")
    writer = DatasetWriter(
        out,
        name="recordings",
        classes=class_list,
        fps=fps or DEFAULT_FPS,
        source="recording",
        background_class=background,
        provenance={"recordings": [str(p.resolve()) for p in paths], "rgb_width": rgb_width},
        jpeg_quality=jpeg_quality,
    )
    rates: list[float] = []
    written: list[str] = []
    for seq, path, lp, track in tqdm(
        list(zip(seq_ids, paths, label_paths, tracks, strict=True)), desc="recordings", unit="rec", disable=not progress
    ):
        report.sequences_seen += 1
        times: list[float] = []
        info: dict[str, float | None] = {"fps": None}
        frames = _frames(seq, path, track, set(class_list), background, report, rgb_width, times, info)
        provenance = {"recording": str(path.resolve()), "labels": str(lp.resolve()) if track is not None else None}
        meta = common.write_sequence(writer, report, seq, frames, fps=fps or DEFAULT_FPS, provenance=provenance)
        if meta is None:
            continue
        rate = fps or info["fps"] or estimate_fps(times)
        if rate is None:
            logger.warning("sequence %s: one frame, frame rate unknown; using %s fps (set --fps)", seq, DEFAULT_FPS)
        rate = rate or DEFAULT_FPS
        rates.append(rate)
        write_json_atomic(out / "sequences" / seq / "meta.json", replace(meta, fps=rate).to_dict())
        written.append(seq)
    splits = common.split_ids(written, random.Random(seed), fractions)
    common.save_splits(out, splits, seed, fractions, group_by="recording")
    common.finish(writer, report, fps=fps or (float(np.median(rates)) if rates else DEFAULT_FPS))
    return report
