"""UTKinect-Action3D (Xia, Chen and Aggarwal, 2012) from its original layout into the common dataset format.

Original layout (as distributed)::

    ROOT/
      actionLabel.txt                 per sequence: a line `s01_e01`, then one line per action,
                                      `walk: 252 390` (first and last frame number, inclusive; `NaN NaN` when absent)
      RGB/s01_e01/colorImg252.jpg     colour, 640x480 JPEG; N is the Kinect frame number (not contiguous)
      depth/s01_e01/depthImg252.xml   depth, OpenCV FileStorage XML holding one 240x320 matrix, millimetres

20 sequences (10 subjects x 2 episodes), each with the 10 actions in order. Frames outside every labelled range
are UNDEFINED (the background class). Colour and depth are paired by frame number; depth is 320x240 and not
registered to the 640x480 colour (depth_aligned false). Timestamps come from the frame numbers at --fps, so the
jumps in the numbering stay visible as gaps in time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from rgbd.dataset import DatasetWriter
from rgbd.frame import Frame
from training.importers import common
from training.importers import report as rp
from training.importers.report import ImportReport

logger = logging.getLogger(__name__)

ACTIONS = ("walk", "sitDown", "standUp", "pickUp", "carry", "throw", "push", "pull", "waveHands", "clapHands")
BACKGROUND = "UNDEFINED"
CLASSES = (*ACTIONS, BACKGROUND)
FPS = 30.0  # the Kinect v1 stream rate the frame numbers count in
DEPTH_SCALE = 0.001  # millimetres

SEQUENCE_RE = re.compile(r"^s(\d+)_e(\d+)$")
RGB_RE = re.compile(r"^colorImg(\d+)\.jpg$", re.IGNORECASE)
DEPTH_RE = re.compile(r"^depthImg(\d+)\.xml$", re.IGNORECASE)
LABEL_RE = re.compile(r"^\s*([A-Za-z_]\w*)\s*:\s*(\S+)\s+(\S+)\s*$")


@dataclass
class SequenceLabels:
    """Labelled frame ranges of one sequence: (action, first, last) with inclusive frame numbers."""

    ranges: list[tuple[str, int, int]] = field(default_factory=list)
    unknown: list[tuple[str, int, int]] = field(default_factory=list)  # ranges whose action is not a class


def parse_action_labels(path: Path, report: ImportReport) -> dict[str, SequenceLabels]:
    """Parse actionLabel.txt; lines that cannot be used are reported, never fatal."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: expected UTKinect's actionLabel.txt in the dataset root")
    labels: dict[str, SequenceLabels] = {}
    current: str | None = None
    for lineno, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if SEQUENCE_RE.match(line):
            current = line
            labels.setdefault(current, SequenceLabels())
            continue
        m = LABEL_RE.match(line)
        if current is None or m is None:
            report.problem(
                rp.BAD_ANNOTATION,
                current or "?",
                None,
                f"{path.name} line {lineno}: cannot parse {line!r} (expected 's01_e01' or 'walk: 252 390')",
            )
            continue
        action, a, b = m.groups()
        if a.lower() == "nan" or b.lower() == "nan":
            logger.info("sequence %s: action %s is not annotated (NaN) in %s", current, action, path.name)
            continue
        try:
            first, last = int(a), int(b)
        except ValueError:
            report.problem(
                rp.BAD_ANNOTATION, current, None, f"{path.name} line {lineno}: expected frame numbers in {line!r}"
            )
            continue
        if last < first:
            report.problem(
                rp.BAD_ANNOTATION, current, None, f"{path.name} line {lineno}: range {first}..{last} runs backwards"
            )
            continue
        if action not in ACTIONS:
            labels[current].unknown.append((action, first, last))
            continue
        labels[current].ranges.append((action, first, last))
    return labels


def label_of(number: int, seq: SequenceLabels) -> tuple[str | None, tuple[str, int, int] | None]:
    """(label, unknown range) of a frame number: background outside ranges, None inside an unknown action's."""
    for action, first, last in seq.ranges:
        if first <= number <= last:
            return action, None
    for rng in seq.unknown:
        if rng[1] <= number <= rng[2]:
            return None, rng
    return BACKGROUND, None


def read_depth_xml(path: Path, report: ImportReport, sequence: str, frame: int) -> np.ndarray | None:
    """One depth matrix from an OpenCV FileStorage XML file, as uint16 millimetres."""
    if not path.is_file():
        report.problem(rp.MISSING_FILE, sequence, frame, f"depth file {path} is missing", frames_skipped=1)
        return None
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
        try:
            node = fs.getFirstTopLevelNode()
            mat = None if node is None or node.empty() else node.mat()
        finally:
            fs.release()
    except (cv2.error, SystemError) as exc:  # OpenCV's Python binding wraps parse errors in SystemError
        cause = exc.__cause__ or exc
        detail = (str(cause).strip().splitlines() or ["parse error"])[-1]
        report.problem(
            rp.CORRUPT_FILE, sequence, frame, f"depth XML {path} cannot be parsed: {detail}", frames_skipped=1
        )
        return None
    if mat is None or mat.ndim != 2 or mat.size == 0:
        shape = None if mat is None else mat.shape
        report.problem(
            rp.CORRUPT_FILE,
            sequence,
            frame,
            f"depth XML {path}: expected one 2-D matrix (240, 320), got {shape}",
            frames_skipped=1,
        )
        return None
    values = np.asarray(mat, dtype=np.float64)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 65535:
        report.problem(
            rp.BAD_FRAME,
            sequence,
            frame,
            f"depth XML {path}: expected finite millimetres in [0, 65535], got range "
            f"[{np.nanmin(values)!r}, {np.nanmax(values)!r}]",
            frames_skipped=1,
        )
        return None
    return np.rint(values).astype(np.uint16)


def _numbered(folder: Path, pattern: re.Pattern[str]) -> dict[int, Path]:
    files: dict[int, Path] = {}
    if folder.is_dir():
        for p in folder.iterdir():
            m = pattern.match(p.name)
            if m:
                files[int(m.group(1))] = p
    return files


def _frames(
    seq: str,
    labels: SequenceLabels,
    numbers: list[int],
    rgb_files: dict[int, Path],
    depth_files: dict[int, Path],
    report: ImportReport,
    fps: float,
    rgb_width: int | None,
) -> Iterator[Frame]:
    shapes = common.ShapeCheck(report, seq)
    dropped: dict[tuple[str, int, int], int] = {}
    index = 0
    for number in numbers:
        if number not in rgb_files:
            report.problem(rp.MISSING_FILE, seq, number, f"colorImg{number}.jpg is missing", frames_skipped=1)
            continue
        if number not in depth_files:
            report.problem(rp.MISSING_FILE, seq, number, f"depthImg{number}.xml is missing", frames_skipped=1)
            continue
        rgb = common.read_colour(rgb_files[number], report, seq, number)
        if rgb is None:
            continue
        depth = read_depth_xml(depth_files[number], report, seq, number)
        if depth is None:
            continue
        rgb = common.resize_to_width(rgb, rgb_width)
        if not shapes.ok(rgb, depth, number):
            continue
        label, unknown = label_of(number, labels)
        if unknown is not None:
            dropped[unknown] = dropped.get(unknown, 0) + 1
        yield Frame(
            rgb=rgb,
            depth=depth,
            depth_scale=DEPTH_SCALE,
            timestamp=(number - numbers[0]) / fps,
            index=index,
            intrinsics=None,
            depth_aligned=False,
            label=label,
        )
        index += 1
    for (action, first, last), count in dropped.items():
        report.problem(
            rp.UNKNOWN_LABEL,
            seq,
            f"{first}..{last}",
            f"action {action!r} is not one of {list(ACTIONS)!r}; its {count} frames are kept unlabelled",
            labels_dropped=count,
        )


def import_utkinect(
    root: Path,
    out: Path,
    *,
    seed: int = 0,
    fractions: common.Fractions = (0.7, 0.15, 0.15),
    fps: float = FPS,
    rgb_width: int | None = None,
    jpeg_quality: int = 90,
    progress: bool = True,
) -> ImportReport:
    """Import UTKinect-Action3D from `root` into a new dataset at `out`; splits keep each subject whole."""
    root, out = Path(root), Path(out)
    if not (root / "RGB").is_dir() and not (root / "depth").is_dir():
        raise FileNotFoundError(f"{root} has neither RGB/ nor depth/: expected UTKinect's original layout (see --help)")
    common.prepare_output(out)
    report = ImportReport(source="utkinect")
    labels = parse_action_labels(root / "actionLabel.txt", report)
    on_disk = {p.name for sub in ("RGB", "depth") if (root / sub).is_dir() for p in (root / sub).iterdir()}
    for seq in sorted(on_disk - set(labels)):
        report.sequences_seen += 1
        report.skip_sequence(seq, "it has frames but no entry in actionLabel.txt", kind=rp.MISSING_LABEL)
    writer = DatasetWriter(
        out,
        name="utkinect",
        classes=CLASSES,
        fps=fps,
        source="utkinect",
        background_class=BACKGROUND,
        provenance={"original_root": str(root.resolve()), "fps_assumed": fps, "rgb_width": rgb_width},
        jpeg_quality=jpeg_quality,
    )
    by_subject: dict[str, list[str]] = {}
    for seq in tqdm(sorted(labels), desc="utkinect", unit="seq", disable=not progress):
        report.sequences_seen += 1
        rgb_files = _numbered(root / "RGB" / seq, RGB_RE)
        depth_files = _numbered(root / "depth" / seq, DEPTH_RE)
        if not rgb_files and not depth_files:
            report.skip_sequence(
                seq,
                f"no colorImg*.jpg in {root / 'RGB' / seq} and no depthImg*.xml in {root / 'depth' / seq}",
                kind=rp.MISSING_FILE,
            )
            continue
        if len(rgb_files) != len(depth_files) or rgb_files.keys() != depth_files.keys():
            report.problem(
                rp.COUNT_MISMATCH,
                seq,
                None,
                f"RGB has {len(rgb_files)} frames and depth has {len(depth_files)}; "
                "only frame numbers present in both are imported",
            )
        numbers = sorted(rgb_files.keys() | depth_files.keys())
        m = SEQUENCE_RE.match(seq)
        subject = f"s{int(m.group(1)):02d}" if m else seq
        provenance: dict[str, Any] = {
            "original_sequence": seq,
            "subject": subject,
            "first_frame_number": numbers[0],
            "last_frame_number": numbers[-1],
            "label_ranges": [list(r) for r in labels[seq].ranges],
        }
        meta = common.write_sequence(
            writer,
            report,
            seq,
            _frames(seq, labels[seq], numbers, rgb_files, depth_files, report, fps, rgb_width),
            fps=fps,
            provenance=provenance,
        )
        if meta is not None:
            by_subject.setdefault(subject, []).append(seq)
    splits = common.grouped_splits({"all": by_subject}, seed, fractions)
    common.save_splits(out, splits, seed, fractions, group_by="subject")
    common.finish(writer, report)
    return report
