"""DARai (Daily Activity Recordings for AI) from its released frame layout into the common dataset format.

Accepted layout (the released RGB archives name frames <subject>_<session>_<frame>; docs/dataset_format.md)::

    ROOT/
      RGB/<Activity>/camera_<c>_fps_15/<SS>_<ss>_<frame>.png|.jpg     colour frames, 15 fps
      Depth/<Activity>/depth_<c>/<SS>_<ss>_<frame>.png                 depth, 16-bit PNG, millimetres
      Labels/<Activity>/<SS>_<ss>.csv                                  header frame,L1,L2,L3; one row per frame

<Activity> is the L1 activity (e.g. "Making pancake"), <SS> the subject, <ss> the session, <frame> the frame
number (any zero padding), <c> the camera view (1 or 2). L2 actions are the targets. As the authors prepared it,
a recording is cut into clips wherever the colour frame numbers jump (each gap starts a new sequence) and each
activity is split 70/20/10; here that split is drawn over recordings (subject_session), so the clips and camera
views of one recording never straddle splits. --subsample 15 keeps every 15th frame of each clip (15 fps -> 1 fps,
the authors' setting).
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from rgbd.dataset import DatasetWriter
from rgbd.frame import Frame
from training.importers import common
from training.importers import report as rp
from training.importers.report import ImportReport

logger = logging.getLogger(__name__)

FPS = 15.0
FRACTIONS: common.Fractions = (0.7, 0.2, 0.1)
CAMERA_RE = re.compile(r"^camera_(\d+)_fps_15$")
FRAME_RE = re.compile(r"^(\d+)_(\d+)_(\d+)\.(png|jpg|jpeg)$", re.IGNORECASE)
DEPTH_RE = re.compile(r"^(\d+)_(\d+)_(\d+)\.png$", re.IGNORECASE)


@dataclass(frozen=True)
class Recording:
    """One camera's frames of one session of one activity."""

    activity: str
    camera: int
    subject: str
    session: str
    rgb: dict[int, Path]

    @property
    def name(self) -> str:
        return f"{self.activity}/camera_{self.camera}/{self.subject}_{self.session}"


def cut_at_gaps(numbers: Sequence[int]) -> list[list[int]]:
    """Split sorted frame numbers into runs of consecutive numbers."""
    clips: list[list[int]] = []
    for n in numbers:
        if clips and n == clips[-1][-1] + 1:
            clips[-1].append(n)
        else:
            clips.append([n])
    return clips


def read_labels(path: Path, report: ImportReport, sequence: str) -> dict[int, str | None] | None:
    """frame -> L2 label (None where empty) from a label CSV; None (reported) when the file is unusable."""
    if not path.is_file():
        return None
    labels: dict[int, str | None] = {}
    with path.open(newline="", errors="replace") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in reader.fieldnames or []]
        if "frame" not in fields or "L2" not in fields:
            report.problem(
                rp.BAD_ANNOTATION, sequence, None, f"{path}: expected a header with frame,L1,L2,L3, got {fields!r}"
            )
            return None
        for lineno, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            try:
                frame = int(row["frame"])
            except ValueError:
                detail = f"{path.name} line {lineno}: frame {row['frame']!r} is not a number"
                report.problem(rp.BAD_ANNOTATION, sequence, None, detail)
                continue
            labels[frame] = row["L2"] or None
    return labels


def find_recordings(root: Path, cameras: set[int] | None) -> list[Recording]:
    recordings: list[Recording] = []
    for activity_dir in sorted(p for p in (root / "RGB").iterdir() if p.is_dir()):
        for camera_dir in sorted(p for p in activity_dir.iterdir() if p.is_dir()):
            cm = CAMERA_RE.match(camera_dir.name)
            if cm is None:
                logger.info("ignoring %s: not a camera_<c>_fps_15 folder", camera_dir)
                continue
            camera = int(cm.group(1))
            if cameras is not None and camera not in cameras:
                continue
            sessions: dict[tuple[str, str], dict[int, Path]] = {}
            for p in camera_dir.iterdir():
                fm = FRAME_RE.match(p.name)
                if fm:
                    sessions.setdefault((fm.group(1), fm.group(2)), {})[int(fm.group(3))] = p
            for (subject, session), files in sorted(sessions.items()):
                recordings.append(Recording(activity_dir.name, camera, subject, session, files))
    return recordings


def _depth_files(root: Path, rec: Recording) -> dict[int, Path]:
    folder = root / "Depth" / rec.activity / f"depth_{rec.camera}"
    files: dict[int, Path] = {}
    if folder.is_dir():
        for p in folder.iterdir():
            m = DEPTH_RE.match(p.name)
            if m and (m.group(1), m.group(2)) == (rec.subject, rec.session):
                files[int(m.group(3))] = p
    return files


def _frames(
    seq: str,
    rec: Recording,
    numbers: list[int],
    depth: dict[int, Path],
    labels: dict[int, str | None],
    classes: set[str],
    report: ImportReport,
    depth_scale: float,
    rgb_width: int | None,
) -> Iterator[Frame]:
    shapes = common.ShapeCheck(report, seq)
    unlabelled: list[int] = []
    unknown: dict[str, list[int]] = {}
    index = 0
    for number in numbers:
        if number not in depth:
            report.problem(rp.MISSING_FILE, seq, number, f"no depth frame {number} for {rec.name}", frames_skipped=1)
            continue
        rgb = common.read_colour(rec.rgb[number], report, seq, number)
        if rgb is None:
            continue
        d = common.read_depth_png(depth[number], report, seq, number)
        if d is None:
            continue
        rgb = common.resize_to_width(rgb, rgb_width)
        if not shapes.ok(rgb, d, number):
            continue
        label = labels.get(number)
        if number not in labels:
            unlabelled.append(number)
        elif label is not None and label not in classes:
            unknown.setdefault(label, []).append(number)
            label = None
        yield Frame(
            rgb=rgb,
            depth=d,
            depth_scale=depth_scale,
            timestamp=(number - numbers[0]) / FPS,
            index=index,
            depth_aligned=False,
            label=label,
        )
        index += 1
    if unlabelled:
        report.problem(
            rp.MISSING_LABEL,
            seq,
            f"{unlabelled[0]}..{unlabelled[-1]}",
            f"{len(unlabelled)} frames have no row in the label CSV; kept unlabelled",
            labels_dropped=len(unlabelled),
        )
    for label, frames in unknown.items():
        report.problem(
            rp.UNKNOWN_LABEL,
            seq,
            f"{frames[0]}..{frames[-1]}",
            f"L2 label {label!r} is not in the class list; its {len(frames)} frames are kept unlabelled",
            labels_dropped=len(frames),
        )


def collect_classes(root: Path, recordings: list[Recording]) -> list[str]:
    """Every L2 label in the label CSVs of the recordings' sessions, sorted."""
    seen: set[str] = set()
    quiet = ImportReport(source="darai")  # problems are reported when each recording is imported
    for path in sorted({root / "Labels" / r.activity / f"{r.subject}_{r.session}.csv" for r in recordings}):
        labels = read_labels(path, quiet, path.stem) or {}
        seen |= {v for v in labels.values() if v}
    return sorted(seen)


def import_darai(
    root: Path,
    out: Path,
    *,
    seed: int = 0,
    fractions: common.Fractions = FRACTIONS,
    cameras: set[int] | None = None,
    activities: set[str] | None = None,
    classes: list[str] | None = None,
    subsample: int = 1,
    min_frames: int = 2,
    depth_scale: float = 0.001,
    rgb_width: int | None = None,
    jpeg_quality: int = 90,
    progress: bool = True,
) -> ImportReport:
    """Import DARai from `root` into a new dataset at `out`; cameras None = every camera view."""
    root, out = Path(root), Path(out)
    if not (root / "RGB").is_dir():
        raise FileNotFoundError(
            f"{root / 'RGB'} is missing: expected DARai's layout RGB/, Depth/, Labels/ (see --help)"
        )
    if subsample < 1 or min_frames < 1:
        raise ValueError(f"expected --subsample >= 1 and --min-frames >= 1, got {subsample} and {min_frames}")
    common.prepare_output(out)
    recordings = find_recordings(root, cameras)
    if activities is not None:
        missing = activities - {r.activity for r in recordings}
        if missing:
            raise ValueError(f"activities {sorted(missing)!r} have no frames under {root / 'RGB'}")
        recordings = [r for r in recordings if r.activity in activities]
    class_list = list(classes) if classes else collect_classes(root, recordings)
    if not class_list:
        raise ValueError(
            f"no L2 label found in {root / 'Labels'}: expected <Activity>/<SS>_<ss>.csv with columns frame,L1,L2,L3"
        )
    report = ImportReport(source="darai")
    fps = FPS / subsample
    writer = DatasetWriter(
        out,
        name="darai",
        classes=class_list,
        fps=fps,
        source="darai",
        provenance={
            "original_root": str(root.resolve()),
            "subsample": subsample,
            "original_fps": FPS,
            "label_level": "L2",
            "rgb_width": rgb_width,
        },
        jpeg_quality=jpeg_quality,
    )
    strata: dict[str, dict[str, list[str]]] = {}
    for rec in tqdm(recordings, desc="darai", unit="rec", disable=not progress):
        base = f"{common.slug(rec.activity)}_cam{rec.camera}_{rec.subject}_{rec.session}"
        clips = cut_at_gaps(sorted(rec.rgb))
        report.sequences_seen += len(clips)
        label_path = root / "Labels" / rec.activity / f"{rec.subject}_{rec.session}.csv"
        labels = read_labels(label_path, report, base)
        if labels is None:
            for k, clip in enumerate(clips, start=1):
                detail = f"label file {label_path} is missing or unusable"
                report.skip_sequence(f"{base}_{k}", detail, frames=len(clip[::subsample]), kind=rp.MISSING_FILE)
            continue
        depth = _depth_files(root, rec)
        for k, clip in enumerate(clips, start=1):
            seq = f"{base}_{k}"
            kept = clip[::subsample]
            if len(kept) < min_frames:
                report.skip_sequence(
                    seq,
                    f"{len(kept)} frames after subsampling, fewer than --min-frames {min_frames}",
                    frames=len(kept),
                    kind=rp.SHORT_CLIP,
                )
                continue
            provenance = {
                "activity": rec.activity,
                "camera": rec.camera,
                "subject": rec.subject,
                "session": rec.session,
                "first_frame_number": clip[0],
                "last_frame_number": clip[-1],
                "clip": k,
            }
            frames = _frames(seq, rec, kept, depth, labels, set(class_list), report, depth_scale, rgb_width)
            meta = common.write_sequence(
                writer, report, seq, frames, fps=fps, activity=rec.activity, provenance=provenance
            )
            if meta is not None:
                strata.setdefault(rec.activity, {}).setdefault(f"{rec.subject}_{rec.session}", []).append(seq)
    splits = common.grouped_splits(strata, seed, fractions)
    common.save_splits(out, splits, seed, fractions, group_by="activity, then recording (subject_session)")
    common.finish(writer, report)
    return report
