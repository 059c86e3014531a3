"""`r3d-data import utkinect|ntu|darai|utd-mhad|recording`: convert public RGB-D action datasets (in their
original layouts) and labelled camera recordings into the common dataset format (docs/dataset_format.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tqdm.contrib.logging import logging_redirect_tqdm

from training.importers import common, darai, ntu, utd_mhad, utkinect
from training.importers.report import ImportReport

RAW = argparse.RawDescriptionHelpFormatter


def parse_int_set(text: str) -> set[int]:
    """'1-10,23' -> {1, ..., 10, 23}."""
    out: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                out |= set(range(int(a), int(b) + 1))
            elif part:
                out.add(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers and ranges like '1-10,23', got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
    return out


def parse_cameras(text: str) -> set[int] | None:
    """'all' -> None (every camera view), '1,2' -> {1, 2}."""
    return None if text.strip().lower() == "all" else parse_int_set(text)


def read_class_file(path: str) -> list[str]:
    """One class name per line (blank lines and lines starting with # ignored)."""
    p = Path(path)
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"class list {p} does not exist")
    names = [s.strip() for s in p.read_text().splitlines() if s.strip() and not s.strip().startswith("#")]
    if not names:
        raise argparse.ArgumentTypeError(f"class list {p} is empty: expected one class name per line")
    return names


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _common_args(p: argparse.ArgumentParser, fractions: tuple[float, float, float]) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed of the split shuffle (default: 0)")
    p.add_argument(
        "--split",
        type=float,
        nargs=3,
        metavar=("TRAIN", "VAL", "TEST"),
        default=list(fractions),
        help="split fractions (default: %(default)s)",
    )
    p.add_argument(
        "--rgb-width",
        type=int,
        default=None,
        metavar="W",
        help="downscale colour to this width, keeping the aspect ratio (default: keep the original size)",
    )
    p.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality of the stored colour (default: 90)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _finish(report: ImportReport) -> int:
    sys.stdout.write(report.summary())
    return 0


def run_utkinect(args: argparse.Namespace) -> int:
    with logging_redirect_tqdm():
        report = utkinect.import_utkinect(
            Path(args.root),
            Path(args.out),
            seed=args.seed,
            fractions=common.check_fractions(args.split),
            fps=args.fps,
            rgb_width=args.rgb_width,
            jpeg_quality=args.jpeg_quality,
            progress=not args.no_progress,
        )
    return _finish(report)


def run_ntu(args: argparse.Namespace) -> int:
    with logging_redirect_tqdm():
        report = ntu.import_ntu(
            Path(args.root),
            Path(args.out),
            seed=args.seed,
            fractions=common.check_fractions(args.split),
            actions=args.actions,
            rgb_width=args.rgb_width,
            jpeg_quality=args.jpeg_quality,
            progress=not args.no_progress,
        )
    return _finish(report)


def run_darai(args: argparse.Namespace) -> int:
    with logging_redirect_tqdm():
        report = darai.import_darai(
            Path(args.root),
            Path(args.out),
            seed=args.seed,
            fractions=common.check_fractions(args.split),
            cameras=args.camera,
            activities=set(args.activity) if args.activity else None,
            classes=args.classes,
            subsample=args.subsample,
            min_frames=args.min_frames,
            depth_scale=args.depth_scale,
            rgb_width=args.rgb_width,
            jpeg_quality=args.jpeg_quality,
            progress=not args.no_progress,
        )
    return _finish(report)


def run_utd_mhad(args: argparse.Namespace) -> int:
    with logging_redirect_tqdm():
        report = utd_mhad.import_utd_mhad(
            Path(args.root),
            Path(args.out),
            train_subjects=frozenset(args.train_subjects),
            val_fraction=utd_mhad.resolve_val_fraction(args.val_fraction, args.val_subjects),
            val_subjects=frozenset(args.val_subjects),
            seed=args.seed,
            progress=not args.no_progress,
        )
    return _finish(report)


def run_recording(args: argparse.Namespace) -> int:
    from training.importers import recordings  # needs rgbd.open (pyrealsense2, av) only here

    with logging_redirect_tqdm():
        report = recordings.import_recordings(
            [Path(p) for p in args.recordings],
            Path(args.out),
            labels=[Path(p) for p in args.labels] if args.labels else None,
            classes=args.classes,
            background=args.background,
            fps=args.fps,
            seed=args.seed,
            fractions=common.check_fractions(args.split),
            rgb_width=args.rgb_width,
            jpeg_quality=args.jpeg_quality,
            progress=not args.no_progress,
        )
    return _finish(report)


def register(subparsers: Any) -> None:
    """Add `import` and its sub-verbs to r3d-data's sub-parsers."""
    parser = subparsers.add_parser(
        "import",
        help="import a public RGB-D action dataset or labelled recordings into the common format",
        description=__doc__,
        formatter_class=RAW,
    )
    sub = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")

    p = sub.add_parser("utkinect", help="UTKinect-Action3D", description=utkinect.__doc__, formatter_class=RAW)
    p.add_argument("root", help="UTKinect folder holding actionLabel.txt, RGB/ and depth/")
    p.add_argument("out", help="new dataset folder to write")
    p.add_argument("--fps", type=positive_float, default=utkinect.FPS, help="rate of the frame numbers (default: 30)")
    _common_args(p, (0.7, 0.15, 0.15))
    p.set_defaults(func=run_utkinect)

    p = sub.add_parser("ntu", help="NTU RGB+D (60 classes)", description=ntu.__doc__, formatter_class=RAW)
    p.add_argument("root", help="folder holding nturgb+d_rgb/ and nturgb+d_depth_masked/")
    p.add_argument("out", help="new dataset folder to write")
    p.add_argument(
        "--actions", type=parse_int_set, default=None, help="import only these action numbers, e.g. '1-10,23'"
    )
    _common_args(p, ntu.FRACTIONS)
    p.set_defaults(func=run_ntu)

    p = sub.add_parser("darai", help="DARai (L2 action labels)", description=darai.__doc__, formatter_class=RAW)
    p.add_argument("root", help="DARai folder holding RGB/, Depth/ and Labels/")
    p.add_argument("out", help="new dataset folder to write")
    p.add_argument(
        "--camera", type=parse_cameras, default=None, help="camera views to import: '1', '1,2' or 'all' (default: all)"
    )
    p.add_argument("--activity", action="append", help="import only this L1 activity (repeatable)")
    p.add_argument(
        "--classes",
        type=read_class_file,
        default=None,
        help="file with the L2 class names, one a line "
        "(default: every L2 label found); other labels are reported and their frames kept unlabelled",
    )
    p.add_argument("--subsample", type=int, default=1, help="keep every Nth frame of each clip (authors: 15)")
    p.add_argument("--min-frames", type=int, default=2, help="skip clips shorter than this after subsampling")
    p.add_argument("--depth-scale", type=positive_float, default=0.001, help="metres per depth unit (default: mm)")
    _common_args(p, darai.FRACTIONS)
    p.set_defaults(func=run_darai)

    p = sub.add_parser(
        "utd-mhad", help="UTD-MHAD (depth only; cross-subject split)", description=utd_mhad.__doc__, formatter_class=RAW
    )
    p.add_argument("root", help="UTD-MHAD folder holding Depth/ (and Skeleton/, Inertial/), or data/Depth/ ...")
    p.add_argument("out", help="new dataset folder to write")
    p.add_argument(
        "--train-subjects",
        type=parse_int_set,
        default=set(utd_mhad.CROSS_SUBJECT_TRAIN),
        help="subjects whose clips train (and validate); the others test (default: 1,3,5,7, the standard "
        "cross-subject protocol)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="share of each action's training clips held out for validation (default 0.15; 0 without "
        "--val-subjects: all training clips train)",
    )
    p.add_argument(
        "--val-subjects",
        type=parse_int_set,
        default=set(),
        help="training subjects held out whole for validation instead (e.g. 7: train on 1,3,5, validate on people "
        "the model has not seen)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the validation draw (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_utd_mhad)

    p = sub.add_parser(
        "recording",
        help="RealSense .bag/.db3 or Azure Kinect .mkv recordings with label CSVs",
        description=RECORDING_HELP,
        formatter_class=RAW,
    )
    p.add_argument("out", help="new dataset folder to write")
    p.add_argument("recordings", nargs="+", help="recording files (.bag, .db3, .mkv)")
    p.add_argument(
        "--labels",
        action="append",
        help="label CSV for each recording, in the same order (default: <recording>.csv next to each recording)",
    )
    p.add_argument(
        "--classes",
        type=read_class_file,
        default=None,
        help="file with the class names, one a line (default: every label found in the CSVs)",
    )
    p.add_argument(
        "--background",
        default=None,
        help="class for frames outside every labelled range (default: leave them unlabelled)",
    )
    p.add_argument("--fps", type=positive_float, default=None, help="nominal frame rate (default: from timestamps)")
    _common_args(p, (0.7, 0.15, 0.15))
    p.set_defaults(func=run_recording)


RECORDING_HELP = """Import labelled camera recordings: RealSense .bag (ROS1) / .db3 (ROS2) and Azure Kinect .mkv.

Each recording becomes one sequence named after its file; frames are read with rgbd.open.open_source.
Labels come from a CSV per recording (--labels, or <recording>.csv beside it), in one of two forms:

    start,end,label        seconds from the recording's first frame, start inclusive, end exclusive
    frame,label            0-based index of the frame in the recording

Frames outside every range are unlabelled, or get --background. A recording without a label CSV is imported
unlabelled (with a warning).
"""
