"""UTD-MHAD (Chen, Jafari and Kehtarnavaz, ICIP 2015) from its .mat files into the common dataset format.

Original layout (as distributed; each modality in its own folder)::

    ROOT/
      Depth/a{A}_s{S}_t{T}_depth.mat        d_depth  uint16 (240, 320, N)  Kinect v1 depth, millimetres,
                                                                           background removed (0 = no data)
      Skeleton/a{A}_s{S}_t{T}_skeleton.mat  d_skel   (20, 3, N)            20 Kinect joints, x y z in metres
      Inertial/a{A}_s{S}_t{T}_inertial.mat  d_iner   (M, 6)                wrist/thigh sensor at 50 Hz:
                                                                           3-axis acceleration, 3-axis rotation

A = action 1..27, S = subject 1..8, T = trial 1..4. A folder may also sit one level down (ROOT/data/Depth/...).

Each clip becomes one depth-only sequence `a01_s1_t1` (no colour camera: has_color false), every frame labelled
with the clip's action, at 30 fps, depth_scale 0.001. Subject, trial and action number are in the provenance.
The skeleton and inertial streams are kept as skeleton.npy (N, 20, 3) and inertial.npy (M, 6) when present and
consistent. Problems are reported by clip: a missing or unreadable depth file skips the clip; a missing,
unreadable or inconsistent skeleton (frame count differing from depth) or inertial file is dropped and the depth
imported.

Split (--train-subjects, default the standard cross-subject protocol): subjects 1, 3, 5, 7 train, the others
test; validation is a seeded --val-fraction of each action's training clips, or (--val-subjects) whole training
subjects held out, so that a recipe is chosen on people the model has not seen, as the test subjects are
(--val-fraction 0 and no --val-subjects: every training subject's clip trains and nothing validates).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rgbd.dataset import DatasetWriter
from rgbd.frame import Frame
from training.importers import common
from training.importers import report as rp
from training.importers.report import ImportReport

logger = logging.getLogger(__name__)

# The 27 actions in the order of the dataset paper (Chen et al., ICIP 2015, Table 1); action A is ACTIONS[A - 1].
ACTIONS = (
    "right arm swipe to the left",
    "right arm swipe to the right",
    "right hand wave",
    "two hand front clap",
    "right arm throw",
    "cross arms in the chest",
    "basketball shoot",
    "right hand draw x",
    "right hand draw circle (clockwise)",
    "right hand draw circle (counter clockwise)",
    "draw triangle",
    "bowling (right hand)",
    "front boxing",
    "baseball swing from right",
    "tennis right hand forehand swing",
    "arm curl (two arms)",
    "tennis serve",
    "two hand push",
    "right hand knock on door",
    "right hand catch an object",
    "right hand pick up and throw",
    "jogging in place",
    "walking in place",
    "sit to stand",
    "stand to sit",
    "forward lunge (left foot forward)",
    "squat (two arms stretch out)",
)
FPS = 30.0  # Kinect v1
DEPTH_SCALE = 0.001  # millimetres
DEPTH_SHAPE = (240, 320)
SKELETON_JOINTS = 20
INERTIAL_CHANNELS = 6
CROSS_SUBJECT_TRAIN = frozenset({1, 3, 5, 7})
VAL_FRACTION = 0.15  # the default share of each action's training clips that validates

FILE_RE = re.compile(r"^a(\d+)_s(\d+)_t(\d+)_(depth|skeleton|inertial)\.mat$", re.IGNORECASE)
MODALITIES = {"depth": ("Depth", "d_depth"), "skeleton": ("Skeleton", "d_skel"), "inertial": ("Inertial", "d_iner")}


def resolve_val_fraction(val_fraction: float | None, val_subjects: set[int] | frozenset[int]) -> float:
    """The validation fraction a command meant: as given, else 0 with whole-subject validation, else VAL_FRACTION."""
    if val_fraction is not None:
        return val_fraction
    return 0.0 if val_subjects else VAL_FRACTION


@dataclass(frozen=True)
class Clip:
    action: int
    subject: int
    trial: int

    @property
    def id(self) -> str:
        return f"a{self.action:02d}_s{self.subject}_t{self.trial}"


def _modality_dir(root: Path, folder: str) -> Path | None:
    for candidate in (root / folder, root / "data" / folder):
        if candidate.is_dir():
            return candidate
    return None


def find_clips(root: Path) -> dict[Clip, dict[str, Path]]:
    """Every clip any modality folder has a file for -> {modality: path}."""
    clips: dict[Clip, dict[str, Path]] = {}
    for modality, (folder, _) in MODALITIES.items():
        d = _modality_dir(root, folder)
        if d is None:
            continue
        for path in sorted(d.iterdir()):
            m = FILE_RE.match(path.name)
            if m is None or m.group(4).lower() != modality:
                logger.info("ignoring %s: not an a<A>_s<S>_t<T>_%s.mat file", path, modality)
                continue
            clip = Clip(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            clips.setdefault(clip, {})[modality] = path
    return clips


def read_mat(path: Path, variable: str, report: ImportReport, clip: str) -> np.ndarray | None:
    """One variable of a MATLAB file, or None after reporting why it cannot be read."""
    import scipy.io  # the [full] extra; imported here so the other importers do not need it

    try:
        contents = scipy.io.loadmat(str(path), variable_names=[variable])
    except Exception as exc:  # scipy raises ValueError, OSError, MatReadError, TypeError on damaged files
        report.problem(rp.CORRUPT_FILE, clip, None, f"{path.name} cannot be read as a .mat file ({exc})")
        return None
    if variable not in contents:
        report.problem(rp.CORRUPT_FILE, clip, None, f"{path.name} has no variable {variable!r}")
        return None
    return np.asarray(contents[variable])


def read_depth(path: Path, report: ImportReport, clip: str) -> np.ndarray | None:
    """d_depth as uint16 (N, 240, 320) millimetres, or None after reporting."""
    raw = read_mat(path, "d_depth", report, clip)
    if raw is None:
        return None
    if raw.ndim != 3 or raw.shape[:2] != DEPTH_SHAPE or raw.shape[2] == 0:
        report.problem(
            rp.BAD_FRAME, clip, None, f"{path.name}: expected d_depth (240, 320, N) with N > 0, got {raw.shape}"
        )
        return None
    if raw.dtype != np.uint16:
        if not np.issubdtype(raw.dtype, np.number) or not np.isfinite(raw).all() or raw.min() < 0 or raw.max() > 65535:
            report.problem(rp.BAD_FRAME, clip, None, f"{path.name}: expected millimetres in 0..65535, got {raw.dtype}")
            return None
        raw = raw.astype(np.uint16)
    return np.ascontiguousarray(np.moveaxis(raw, 2, 0))


def read_skeleton(path: Path | None, frames: int, report: ImportReport, clip: str) -> np.ndarray | None:
    """d_skel as float32 (N, 20, 3) metres when it matches the depth frame count, else None after reporting."""
    if path is None:
        report.problem(rp.MISSING_FILE, clip, None, "no skeleton file (depth imported without it)")
        return None
    raw = read_mat(path, "d_skel", report, clip)
    if raw is None:
        return None
    if raw.ndim != 3 or raw.shape[:2] != (SKELETON_JOINTS, 3):
        report.problem(rp.BAD_FRAME, clip, None, f"{path.name}: expected d_skel (20, 3, N), got {raw.shape}")
        return None
    if raw.shape[2] != frames:
        report.problem(
            rp.COUNT_MISMATCH,
            clip,
            None,
            f"{path.name} has {raw.shape[2]} frames, the depth clip {frames}; skeleton dropped, depth imported",
        )
        return None
    return np.ascontiguousarray(np.moveaxis(raw, 2, 0).astype(np.float32))


def read_inertial(path: Path | None, report: ImportReport, clip: str) -> np.ndarray | None:
    """d_iner as float32 (M, 6), or None after reporting."""
    if path is None:
        report.problem(rp.MISSING_FILE, clip, None, "no inertial file (depth imported without it)")
        return None
    raw = read_mat(path, "d_iner", report, clip)
    if raw is None:
        return None
    if raw.ndim != 2 or raw.shape[1] != INERTIAL_CHANNELS or raw.shape[0] == 0:
        report.problem(rp.BAD_FRAME, clip, None, f"{path.name}: expected d_iner (M, 6), got {raw.shape}")
        return None
    return raw.astype(np.float32)


def _frames(depth: np.ndarray, label: str) -> Iterator[Frame]:
    for i, d in enumerate(depth):
        yield Frame(rgb=None, depth=d, depth_scale=DEPTH_SCALE, timestamp=i / FPS, index=i, label=label)


def cross_subject_splits(
    clips: list[Clip],
    train_subjects: frozenset[int],
    val_fraction: float,
    seed: int,
    val_subjects: frozenset[int] = frozenset(),
) -> dict[str, list[str]]:
    """Train subjects' clips -> train/val, the other subjects' -> test. Validation is either a seeded share of each
    action's training clips (val_fraction) or every clip of the training subjects in val_subjects (whole-subject
    validation; val_fraction must then be 0)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"expected a validation fraction in [0, 1), got {val_fraction!r}")
    if not val_subjects <= train_subjects:
        raise ValueError(
            f"validation subjects {sorted(val_subjects)} must be training subjects ({sorted(train_subjects)})"
        )
    if val_subjects and val_fraction > 0:
        raise ValueError(
            f"expected either a validation fraction or validation subjects, got both ({val_fraction!r} and "
            f"{sorted(val_subjects)})"
        )
    if val_subjects == train_subjects:
        raise ValueError(f"validation subjects {sorted(val_subjects)} would leave no training subject")
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    by_action: dict[int, list[str]] = {}
    for clip in clips:
        if clip.subject in val_subjects:
            out["val"].append(clip.id)
        elif clip.subject in train_subjects:
            by_action.setdefault(clip.action, []).append(clip.id)
        else:
            out["test"].append(clip.id)
    for action in sorted(by_action):
        ids = sorted(by_action[action])
        random.Random(f"{seed}-{action}").shuffle(ids)
        n_val = min(len(ids) - 1, round(val_fraction * len(ids))) if val_fraction > 0 else 0
        out["val"].extend(ids[:n_val])
        out["train"].extend(ids[n_val:])
    return {k: sorted(v) for k, v in out.items()}


def import_utd_mhad(
    root: Path,
    out: Path,
    *,
    train_subjects: frozenset[int] = CROSS_SUBJECT_TRAIN,
    val_fraction: float = VAL_FRACTION,
    val_subjects: frozenset[int] = frozenset(),
    seed: int = 0,
    progress: bool = True,
) -> ImportReport:
    """Import UTD-MHAD from `root` into a new depth-only dataset at `out`, split by subject (cross_subject_splits)."""
    root, out = Path(root), Path(out)
    cross_subject_splits([], train_subjects, val_fraction, seed, val_subjects)  # a bad split is refused before reading
    if _modality_dir(root, "Depth") is None:
        raise FileNotFoundError(f"{root} has no Depth/ folder (nor data/Depth/): expected UTD-MHAD's layout (--help)")
    common.prepare_output(out)
    report = ImportReport(source="utd-mhad")
    clips = find_clips(root)
    writer = DatasetWriter(
        out,
        name="utd-mhad",
        classes=ACTIONS,
        fps=FPS,
        source="utd-mhad",
        provenance={
            "original_root": str(root.resolve()),
            "citation": "C. Chen, R. Jafari, N. Kehtarnavaz, UTD-MHAD: A Multimodal Dataset for Human Action "
            "Recognition Utilizing a Depth Camera and a Wearable Inertial Sensor, ICIP 2015",
        },
    )
    written: list[Clip] = []
    for clip in tqdm(sorted(clips, key=lambda c: c.id), desc="utd-mhad", unit="clip", disable=not progress):
        report.sequences_seen += 1
        files = clips[clip]
        if not 1 <= clip.action <= len(ACTIONS):
            report.skip_sequence(clip.id, f"action {clip.action} is not one of 1..27", kind=rp.UNKNOWN_LABEL)
            continue
        if "depth" not in files:
            present = ", ".join(sorted(files))
            report.skip_sequence(clip.id, f"no depth file ({present} only)", kind=rp.MISSING_FILE)
            continue
        depth = read_depth(files["depth"], report, clip.id)
        if depth is None:
            report.skip_sequence(clip.id, f"depth file {files['depth'].name} is unusable", kind=rp.CORRUPT_FILE)
            continue
        streams: dict[str, np.ndarray] = {}
        skeleton = read_skeleton(files.get("skeleton"), len(depth), report, clip.id)
        if skeleton is not None:
            streams["skeleton"] = skeleton
        inertial = read_inertial(files.get("inertial"), report, clip.id)
        if inertial is not None:
            streams["inertial"] = inertial
        label = ACTIONS[clip.action - 1]
        provenance: dict[str, Any] = {
            "action": clip.action,
            "subject": clip.subject,
            "trial": clip.trial,
            "files": {m: p.name for m, p in sorted(files.items())},
        }
        meta = writer.add_sequence(
            clip.id, _frames(depth, label), fps=FPS, activity=label, provenance=provenance, streams=streams
        )
        report.wrote_sequence(meta.num_frames)
        written.append(clip)
    splits = cross_subject_splits(written, train_subjects, val_fraction, seed, val_subjects)
    total = max(1, len(written))
    shares = (len(splits["train"]) / total, len(splits["val"]) / total, len(splits["test"]) / total)
    common.save_splits(
        out,
        splits,
        seed,
        shares,
        group_by="subject",
        protocol="cross-subject",
        train_subjects=sorted(train_subjects),
        val_fraction=val_fraction,
        val_subjects=sorted(val_subjects),
    )
    common.finish(writer, report, modalities=["depth"])
    return report
