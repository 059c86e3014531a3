"""Pieces every importer shares: output folder checks, image readers that report instead of raising, per-sequence
shape checks, writing one sequence lazily, seeded (grouped) splits, and the final provenance update."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rgbd.dataset import DatasetWriter, SequenceMeta
from rgbd.files import write_json_atomic
from rgbd.frame import Frame
from training.importers import report as rp
from training.importers.report import ImportReport

Fractions = tuple[float, float, float]


def prepare_output(out: Path) -> None:
    """Refuse to import into a folder that already holds files (sequences would mix with old ones)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"output folder {out} already exists and is not empty: expected a new or empty folder")


def check_fractions(fractions: Sequence[float]) -> Fractions:
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"expected three non-negative split fractions summing to 1, got {list(fractions)!r}")
    return (float(fractions[0]), float(fractions[1]), float(fractions[2]))


def slug(text: str) -> str:
    """A sequence-id-safe form of a name: lower case, runs of other characters become '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def resize_to_width(rgb: np.ndarray, width: int | None) -> np.ndarray:
    """Downscale (never upscale) a colour image to `width` pixels, keeping its aspect ratio."""
    if width is None or rgb.shape[1] <= width:
        return rgb
    height = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def read_colour(path: Path, report: ImportReport, sequence: str, frame: int | str) -> np.ndarray | None:
    """A colour image as RGB uint8 (H, W, 3), or None after reporting a missing or corrupt file."""
    if not path.is_file():
        report.problem(rp.MISSING_FILE, sequence, frame, f"colour image {path} is missing", frames_skipped=1)
        return None
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        report.problem(rp.CORRUPT_FILE, sequence, frame, f"colour image {path} cannot be decoded", frames_skipped=1)
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_depth_png(path: Path, report: ImportReport, sequence: str, frame: int | str) -> np.ndarray | None:
    """A 16-bit single-channel depth PNG, or None after reporting what is wrong with it."""
    if not path.is_file():
        report.problem(rp.MISSING_FILE, sequence, frame, f"depth image {path} is missing", frames_skipped=1)
        return None
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None:
        report.problem(rp.CORRUPT_FILE, sequence, frame, f"depth image {path} cannot be decoded", frames_skipped=1)
        return None
    if depth.dtype != np.uint16 or depth.ndim != 2:
        report.problem(
            rp.BAD_FRAME,
            sequence,
            frame,
            f"expected 16-bit single-channel depth in {path}, got {depth.dtype} {depth.shape}",
            frames_skipped=1,
        )
        return None
    return depth


class ShapeCheck:
    """Remembers a sequence's first colour and depth sizes and rejects frames that differ from them."""

    def __init__(self, report: ImportReport, sequence: str) -> None:
        self.report = report
        self.sequence = sequence
        self.rgb_shape: tuple[int, ...] | None = None
        self.depth_shape: tuple[int, ...] | None = None

    def ok(self, rgb: np.ndarray, depth: np.ndarray, frame: int | str) -> bool:
        if self.rgb_shape is None or self.depth_shape is None:
            self.rgb_shape, self.depth_shape = rgb.shape, depth.shape
            return True
        if rgb.shape != self.rgb_shape or depth.shape != self.depth_shape:
            self.report.problem(
                rp.BAD_FRAME,
                self.sequence,
                frame,
                f"expected colour {self.rgb_shape} and depth {self.depth_shape} like the sequence's first frame, "
                f"got colour {rgb.shape} and depth {depth.shape}",
                frames_skipped=1,
            )
            return False
        return True


def write_sequence(
    writer: DatasetWriter,
    report: ImportReport,
    seq_id: str,
    frames: Iterator[Frame],
    *,
    fps: float,
    activity: str | None = None,
    provenance: dict[str, Any] | None = None,
) -> SequenceMeta | None:
    """Write one sequence from a lazy frame iterator; a sequence with no usable frame is reported and skipped."""
    first = next(frames, None)
    if first is None:
        report.skip_sequence(seq_id, "no usable frame left")
        return None
    meta = writer.add_sequence(
        seq_id, itertools.chain([first], frames), fps=fps, activity=activity, provenance=provenance
    )
    report.wrote_sequence(meta.num_frames)
    return meta


def split_ids(ids: Sequence[str], rng: random.Random, fractions: Fractions) -> dict[str, list[str]]:
    """Seeded shuffle then cut, with the same rounding rule as rgbd.dataset.write_splits."""
    ids = sorted(ids)
    rng.shuffle(ids)
    n = len(ids)
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    if n >= 3:  # every split gets at least one item when there are enough
        n_val = max(n_val, 1)
        n_train = min(max(n_train, 1), n - n_val - 1)
    return {"train": ids[:n_train], "val": ids[n_train : n_train + n_val], "test": ids[n_train + n_val :]}


def grouped_splits(
    strata: Mapping[str, Mapping[str, Sequence[str]]], seed: int, fractions: Fractions
) -> dict[str, list[str]]:
    """Split each stratum's groups (e.g. the recordings of one activity) and expand groups into sequence ids.

    strata: {stratum: {group: [sequence ids]}}; every group lands whole in one split, and each stratum is split
    with its own seeded shuffle, so the fractions hold per stratum.
    """
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for stratum in sorted(strata):
        groups = strata[stratum]
        cut = split_ids(list(groups), random.Random(seed), fractions)
        for split, keys in cut.items():
            for key in keys:
                out[split].extend(groups[key])
    return {k: sorted(v) for k, v in out.items()}


def save_splits(root: Path, splits: dict[str, list[str]], seed: int, fractions: Fractions, **extra: Any) -> None:
    """Write splits.json in the common format (extra keys document how it was made)."""
    write_json_atomic(root / "splits.json", {"seed": seed, "fractions": list(fractions), **extra, **splits})


def finish(writer: DatasetWriter, report: ImportReport, **info: Any) -> None:
    """Store the import's counts (and any dataset-level fields in `info`) in dataset.json; fail when empty."""
    writer.info.update(info)
    old = writer.info.get("provenance")
    provenance: dict[str, Any] = dict(old) if isinstance(old, dict) else {}
    provenance["import"] = report.to_dict()
    writer.info["provenance"] = provenance
    write_json_atomic(writer.root / "dataset.json", writer.info)
    if report.sequences_written == 0:
        raise ValueError(
            f"no usable sequence was imported into {writer.root} ({report.sequences_seen} seen, "
            f"{len(report.problems)} problems logged above): check the original layout described in --help"
        )
