"""`r3d-data synth`: generate the synthetic RGB-D activity world as a dataset in the common format."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from typing import Any

from tqdm import tqdm

from training.synth.generate import generate_dataset
from training.synth.world import SynthConfig

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the `synth` sub-command to an argparse subparsers object."""
    d = SynthConfig()
    p = subparsers.add_parser(
        "synth",
        help="generate the synthetic RGB-D activity world",
        description="Render a person performing activities in a room to RGB and depth (mm) with sensor artefacts, "
        "and write the common dataset format, contact-sheet previews and optional RealSense .db3 recordings.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument(
        "--sequences", type=int, default=d.n_sequences, help="number of sequences (0: no dataset, only --recordings)"
    )
    p.add_argument("--frames", type=int, default=d.frames, help="frames per sequence")
    p.add_argument("--width", type=int, default=d.width, help="image width")
    p.add_argument("--height", type=int, default=d.height, help="image height")
    p.add_argument("--fps", type=float, default=d.fps, help="frames per second")
    p.add_argument("--seed", type=int, default=d.seed, help="master seed (sequence i uses seed and i)")
    p.add_argument("--dark-rate", type=float, default=d.dark_rate, help="dark stretches per minute, on average")
    p.add_argument("--max-range", type=float, default=d.max_range, help="depth sensor range in metres")
    p.add_argument(
        "--recordings",
        type=int,
        default=0,
        help="write the first K test sequences (with --sequences 0: sequences 0..K-1) as .db3 recordings",
    )
    p.add_argument("--workers", type=int, default=2, help="processes rendering sequences in parallel")
    p.add_argument("--no-previews", action="store_true", help="skip the contact sheets in DIR/previews")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the sequences of this configuration already complete in --out and render only the others "
        "(finishes an interrupted run, or extends a world to more --sequences: splits follow the index)",
    )
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    return SynthConfig(
        n_sequences=args.sequences,
        frames=args.frames,
        width=args.width,
        height=args.height,
        fps=args.fps,
        seed=args.seed,
        dark_rate=args.dark_rate,
        max_range=args.max_range,
    )


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)

    def progress(it: Iterator[Any], n: int) -> Iterator[Any]:
        # also into a log file (not a terminal): a line every 30 s instead of a redrawn bar
        every = 0.1 if sys.stderr.isatty() else 30.0
        return iter(tqdm(it, total=n, desc="synth", unit="seq", mininterval=every))

    result = generate_dataset(
        args.out,
        cfg,
        workers=args.workers,
        previews=not args.no_previews,
        recordings=args.recordings,
        overwrite=args.overwrite,
        resume=args.resume,
        progress=None if args.no_progress else progress,
    )
    if not result.sequence_ids:
        where = result.root / "recordings"
        sys.stdout.write(f"wrote {len(result.recordings)} recordings of {cfg.frames} frames to {where}\n")
        return 0
    counts = {s: len(v) for s, v in result.splits.items()}
    sys.stdout.write(
        f"wrote {len(result.sequence_ids)} sequences x {cfg.frames} frames ({cfg.width}x{cfg.height} @ {cfg.fps:g} fps)"
        f" to {result.root}; splits {counts}; {len(result.recordings)} recordings\n"
    )
    return 0
