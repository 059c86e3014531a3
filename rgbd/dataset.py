"""The project's common on-disk dataset format: every source (the synthetic world, public datasets, camera
recordings) is converted into it, and training, batch scoring and the clients read it back.

Layout (documented for users in docs/dataset_format.md)::

    DATASET/
      dataset.json              {"format": "r3d-dataset", "version": 1, "name", "classes": [...],
                                 "background_class": str | null, "fps", "source", "provenance": {...}}
      splits.json               {"seed": int, "fractions": [train, val, test], "train": [...], "val": [...],
                                 "test": [...]}
      sequences/<id>/
        meta.json               {"id", "num_frames", "fps", "depth_scale", "intrinsics": {...} | null,
                                 "depth_aligned", "has_color": bool, "activity": str | null,
                                 "streams": [...], "provenance": {...}}
        labels.csv              frame,timestamp,label   (label empty where unknown)
        rgb/000000.jpg          colour, JPEG, RGB content (absent when has_color is false: a depth-only camera)
        depth/000000.png        depth, 16-bit PNG in sensor units (metres = value * depth_scale)
        <stream>.npy            optional extra streams named in "streams" (e.g. skeleton.npy, inertial.npy)

Version 1 is kept: a meta.json without "has_color" (every dataset written before depth-only sources) has colour,
and one without "streams" has none.

Every file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rgbd.files import write_bytes_atomic, write_json_atomic
from rgbd.frame import Frame, Intrinsics, MissingColorError

FORMAT_NAME = "r3d-dataset"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
STREAM_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class DatasetFormatError(ValueError):
    """A dataset folder is missing a file, has an unknown version or holds inconsistent content."""


def encode_rgb_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"could not encode colour image {rgb.shape} as JPEG")
    return buf.tobytes()


def encode_depth_png(depth: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", depth, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"could not encode depth image {depth.shape} as 16-bit PNG")
    return buf.tobytes()


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetFormatError(f"cannot read colour image {path}: missing or corrupt")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_depth(path: Path) -> np.ndarray:
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None:
        raise DatasetFormatError(f"cannot read depth image {path}: missing or corrupt")
    if depth.dtype != np.uint16 or depth.ndim != 2:
        raise DatasetFormatError(f"expected 16-bit single-channel depth in {path}, got {depth.dtype} {depth.shape}")
    return depth


def read_labels(path: Path) -> tuple[list[float], list[str | None]]:
    """labels.csv -> the timestamps and labels (None where unknown) of every frame of a sequence."""
    if not path.is_file():
        raise DatasetFormatError(f"{path} is missing")
    times: list[float] = []
    labels: list[str | None] = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            times.append(float(row["timestamp"]))
            labels.append(row["label"] or None)
    return times, labels


@dataclass(frozen=True)
class StoredFrame:
    """One frame as a sequence folder stores it, for readers that decode colour their own way: the model's input path
    decodes the JPEG straight to model resolution (model.prepare_inputs), exactly as it decodes a streamed JPEG, so
    the feature cache, batch scoring and streaming get bit-identical inputs from the same file. jpeg: the colour
    file's bytes, None for a depth-only sequence; depth: the PNG decoded (lossless), uint16 sensor units."""

    jpeg: bytes | None
    depth: np.ndarray
    depth_scale: float
    timestamp: float
    index: int
    label: str | None


def stored_frames(seq_dir: Path, meta: SequenceMeta) -> Iterator[StoredFrame]:
    """Every frame of the sequence folder ``seq_dir`` (meta.json read as ``meta``) in order, colour not decoded."""
    times, labels = read_labels(seq_dir / "labels.csv")
    if len(times) != meta.num_frames:
        raise DatasetFormatError(
            f"sequence {meta.id!r}: meta.json says {meta.num_frames} frames, labels.csv has {len(times)}"
        )
    for i in range(meta.num_frames):
        jpeg = None
        if meta.has_color:
            path = seq_dir / "rgb" / f"{i:06d}.jpg"
            if not path.is_file():
                raise DatasetFormatError(f"cannot read colour image {path}: missing")
            jpeg = path.read_bytes()
        depth = read_depth(seq_dir / "depth" / f"{i:06d}.png")
        yield StoredFrame(jpeg, depth, meta.depth_scale, times[i], i, labels[i])


@dataclass(frozen=True)
class SequenceMeta:
    id: str
    num_frames: int
    fps: float
    depth_scale: float
    intrinsics: Intrinsics | None
    depth_aligned: bool
    activity: str | None
    provenance: dict[str, Any] = field(default_factory=dict)
    has_color: bool = True
    streams: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "depth_scale": self.depth_scale,
            "intrinsics": self.intrinsics.to_dict() if self.intrinsics else None,
            "depth_aligned": self.depth_aligned,
            "has_color": self.has_color,
            "activity": self.activity,
            "streams": list(self.streams),
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SequenceMeta:
        intr = d.get("intrinsics")
        return cls(
            id=str(d["id"]),
            num_frames=int(d["num_frames"]),
            fps=float(d["fps"]),
            depth_scale=float(d["depth_scale"]),
            intrinsics=Intrinsics.from_dict(intr) if intr else None,
            depth_aligned=bool(d.get("depth_aligned", True)),
            activity=d.get("activity"),
            provenance=dict(d.get("provenance", {})),
            has_color=bool(d.get("has_color", True)),
            streams=tuple(str(n) for n in d.get("streams", [])),
        )


class DatasetWriter:
    """Writes a dataset in the common format, one sequence at a time, then the splits."""

    def __init__(
        self,
        root: str | Path,
        *,
        name: str,
        classes: Sequence[str],
        fps: float,
        source: str,
        background_class: str | None = None,
        provenance: dict[str, Any] | None = None,
        jpeg_quality: int = 90,
    ) -> None:
        if len(set(classes)) != len(classes) or not classes:
            raise ValueError(f"expected a non-empty list of distinct class names, got {list(classes)!r}")
        if background_class is not None and background_class not in classes:
            raise ValueError(f"background class {background_class!r} is not in the class list {list(classes)!r}")
        self.root = Path(root)
        self.classes = list(classes)
        self.jpeg_quality = jpeg_quality
        self.sequence_ids: list[str] = []
        self.info = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "name": name,
            "classes": self.classes,
            "background_class": background_class,
            "fps": fps,
            "source": source,
            "provenance": provenance or {},
        }
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.root / "dataset.json", self.info)

    def add_sequence(
        self,
        seq_id: str,
        frames: Iterable[Frame],
        *,
        fps: float,
        activity: str | None = None,
        provenance: dict[str, Any] | None = None,
        streams: dict[str, np.ndarray] | None = None,
    ) -> SequenceMeta:
        """Write one sequence; labels must be in the class list (or None for unknown). Either every frame has colour
        or none has (a depth-only sequence). `streams` are extra per-sequence arrays (skeleton, inertial) saved as
        <name>.npy beside the frames."""
        if "/" in seq_id or seq_id in ("", ".", ".."):
            raise ValueError(f"expected a plain sequence id, got {seq_id!r}")
        for name in streams or {}:
            if not STREAM_NAME_RE.match(name) or name in ("rgb", "depth", "meta", "labels"):
                raise ValueError(f"expected a plain lower-case stream name such as 'skeleton', got {name!r}")
        seq_dir = self.root / "sequences" / seq_id
        rows: list[tuple[int, float, str]] = []
        first: Frame | None = None
        for i, frame in enumerate(frames):
            if frame.label is not None and frame.label not in self.classes:
                raise ValueError(f"sequence {seq_id!r} frame {i}: label {frame.label!r} is not in {self.classes!r}")
            first = first or frame
            if frame.has_color != first.has_color:
                raise ValueError(
                    f"sequence {seq_id!r} frame {i}: colour {'present' if frame.has_color else 'missing'}, unlike "
                    "frame 0; a sequence is either RGB-D or depth-only throughout"
                )
            if frame.rgb is not None:
                write_bytes_atomic(seq_dir / "rgb" / f"{i:06d}.jpg", encode_rgb_jpeg(frame.rgb, self.jpeg_quality))
            write_bytes_atomic(seq_dir / "depth" / f"{i:06d}.png", encode_depth_png(frame.depth))
            rows.append((i, frame.timestamp, frame.label or ""))
        if first is None:
            raise ValueError(f"sequence {seq_id!r} has no frames")
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["frame", "timestamp", "label"])
        writer.writerows((i, f"{t:.6f}", lab) for i, t, lab in rows)
        write_bytes_atomic(seq_dir / "labels.csv", buf.getvalue().encode())
        for name, array in (streams or {}).items():
            npy = io.BytesIO()
            np.save(npy, np.ascontiguousarray(array))
            write_bytes_atomic(seq_dir / f"{name}.npy", npy.getvalue())
        meta = SequenceMeta(
            id=seq_id,
            num_frames=len(rows),
            fps=fps,
            depth_scale=first.depth_scale,
            intrinsics=first.intrinsics,
            depth_aligned=first.depth_aligned,
            activity=activity,
            provenance=provenance or {},
            has_color=first.has_color,
            streams=tuple(sorted(streams or {})),
        )
        write_json_atomic(seq_dir / "meta.json", meta.to_dict())
        self.sequence_ids.append(seq_id)
        return meta

    def write_splits(
        self, seed: int, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    ) -> dict[str, list[str]]:
        """Split the written sequences by a seeded shuffle and write splits.json."""
        return write_splits(self.root, self.sequence_ids, seed, fractions)


def write_splits(
    root: Path, sequence_ids: Sequence[str], seed: int, fractions: tuple[float, float, float]
) -> dict[str, list[str]]:
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"expected three non-negative split fractions summing to 1, got {fractions!r}")
    ids = sorted(sequence_ids)
    random.Random(seed).shuffle(ids)
    n = len(ids)
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    if n >= 3:  # every split gets at least one sequence when there are enough
        n_val = max(n_val, 1)
        n_train = min(max(n_train, 1), n - n_val - 1)
    splits = {"train": ids[:n_train], "val": ids[n_train : n_train + n_val], "test": ids[n_train + n_val :]}
    write_json_atomic(Path(root) / "splits.json", {"seed": seed, "fractions": list(fractions), **splits})
    return splits


class Dataset:
    """Read access to a dataset in the common format."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        info_path = self.root / "dataset.json"
        if not info_path.is_file():
            raise DatasetFormatError(f"{self.root} is not a dataset: {info_path.name} is missing")
        self.info: dict[str, Any] = json.loads(info_path.read_text())
        if self.info.get("format") != FORMAT_NAME or self.info.get("version") != FORMAT_VERSION:
            raise DatasetFormatError(
                f"{info_path}: expected format {FORMAT_NAME!r} version {FORMAT_VERSION}, "
                f"got {self.info.get('format')!r} version {self.info.get('version')!r}"
            )
        self.classes: list[str] = list(self.info["classes"])
        self.background_class: str | None = self.info.get("background_class")
        self.fps = float(self.info["fps"])
        seq_root = self.root / "sequences"
        found = seq_root.iterdir() if seq_root.is_dir() else iter(())
        self.sequence_ids: list[str] = sorted(p.name for p in found if p.is_dir())
        splits_path = self.root / "splits.json"
        self.splits: dict[str, list[str]] = {}
        if splits_path.is_file():
            raw = json.loads(splits_path.read_text())
            self.splits = {s: list(raw.get(s, [])) for s in SPLITS}

    @property
    def name(self) -> str:
        return str(self.info.get("name", self.root.name))

    def split(self, name: str) -> list[str]:
        if name == "all":
            return list(self.sequence_ids)
        if name not in SPLITS:
            raise ValueError(f"expected a split in {SPLITS + ('all',)!r}, got {name!r}")
        if not self.splits:
            raise DatasetFormatError(f"{self.root} has no splits.json")
        return list(self.splits[name])

    def meta(self, seq_id: str) -> SequenceMeta:
        path = self.root / "sequences" / seq_id / "meta.json"
        if not path.is_file():
            raise DatasetFormatError(f"sequence {seq_id!r}: {path} is missing")
        return SequenceMeta.from_dict(json.loads(path.read_text()))

    def labels(self, seq_id: str) -> tuple[list[float], list[str | None]]:
        """Timestamps and labels (None where unknown) of every frame of a sequence."""
        path = self.root / "sequences" / seq_id / "labels.csv"
        if not path.is_file():
            raise DatasetFormatError(f"sequence {seq_id!r}: {path} is missing")
        return read_labels(path)

    def frame(self, seq_id: str, index: int, meta: SequenceMeta | None = None) -> Frame:
        """One decoded frame of a sequence."""
        times, labels = self.labels(seq_id)
        return self._frame(seq_id, meta or self.meta(seq_id), index, times, labels)

    def frames(self, seq_id: str) -> Iterator[Frame]:
        """Every frame of a sequence in order, decoded."""
        meta = self.meta(seq_id)
        times, labels = self.labels(seq_id)
        if len(times) != meta.num_frames:
            raise DatasetFormatError(
                f"sequence {seq_id!r}: meta.json says {meta.num_frames} frames, labels.csv has {len(times)}"
            )
        for i in range(meta.num_frames):
            yield self._frame(seq_id, meta, i, times, labels)

    def stored_frames(self, seq_id: str) -> Iterator[StoredFrame]:
        """Every frame of a sequence in order, colour as its JPEG bytes (StoredFrame): the input the model's input
        path is given by the feature cache and batch scoring."""
        return stored_frames(self.root / "sequences" / seq_id, self.meta(seq_id))

    def frame_files(self, seq_id: str, index: int, meta: SequenceMeta | None = None) -> tuple[Path | None, Path]:
        """The colour JPEG (None for a depth-only sequence) and depth PNG of one frame, for readers that decode them
        their own way (the model's input path decodes JPEG straight to model resolution)."""
        seq_dir = self.root / "sequences" / seq_id
        has_color = (meta or self.meta(seq_id)).has_color
        return seq_dir / "rgb" / f"{index:06d}.jpg" if has_color else None, seq_dir / "depth" / f"{index:06d}.png"

    def has_color(self, seq_ids: Iterable[str] | None = None) -> bool:
        """Whether every one of these sequences (default: all) has colour."""
        return all(self.meta(s).has_color for s in (self.sequence_ids if seq_ids is None else seq_ids))

    def require_color(self, seq_ids: Iterable[str], needed_by: str) -> None:
        """Raise MissingColorError naming the depth-only sequences when a step needs colour."""
        missing = [s for s in seq_ids if not self.meta(s).has_color]
        if missing:
            shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
            raise MissingColorError(
                f"{needed_by} needs colour, but {len(missing)} sequence(s) of {self.root} are depth-only (no colour "
                f"camera): {shown}; use a depth-only model (fusion: depth) or a dataset with colour"
            )

    def stream(self, seq_id: str, name: str) -> np.ndarray:
        """An extra per-sequence stream (e.g. "skeleton", "inertial") as saved by the importer."""
        meta = self.meta(seq_id)
        if name not in meta.streams:
            raise DatasetFormatError(f"sequence {seq_id!r} has no {name!r} stream (it has {list(meta.streams)})")
        return np.asarray(np.load(self.root / "sequences" / seq_id / f"{name}.npy", allow_pickle=False))

    def _frame(
        self, seq_id: str, meta: SequenceMeta, index: int, times: list[float], labels: list[str | None]
    ) -> Frame:
        rgb_path, depth_path = self.frame_files(seq_id, index, meta)
        return Frame(
            rgb=read_rgb(rgb_path) if rgb_path is not None else None,
            depth=read_depth(depth_path),
            depth_scale=meta.depth_scale,
            timestamp=times[index],
            index=index,
            intrinsics=meta.intrinsics,
            depth_aligned=meta.depth_aligned,
            label=labels[index],
        )
