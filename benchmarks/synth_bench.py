"""Benchmark of the synthetic world: `python -m benchmarks.synth_bench [--sequences 10 --frames 300 ...]`.

Measures rendering alone (one process) and full dataset generation (rendering, JPEG/PNG encoding, files,
previews) with a process pool, and extrapolates the full generation to the default world's size
(`SynthConfig().n_sequences`). Prints a table naming the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from training.synth.generate import generate_dataset
from training.synth.world import SynthConfig, SynthSequence

DEFAULT = SynthConfig()
FULL = DEFAULT.n_sequences  # the default world's size, which the full generation is extrapolated to


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    py = f"Python {platform.python_version()}, numpy {np.__version__}"
    return f"{platform.node()}: {model}, {cores} cores (load average {load}); {py}"


def bench_render(cfg: SynthConfig, n_frames: int) -> float:
    """Seconds to render n_frames of sequence 0 in this process (static scene included)."""
    t0 = time.perf_counter()
    seq = SynthSequence(cfg, 0)
    for i in range(min(n_frames, cfg.frames)):
        seq.render(i)
    return time.perf_counter() - t0


def bench_generate(cfg: SynthConfig, workers: int, previews: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="r3d-synth-bench-") as tmp:
        t0 = time.perf_counter()
        generate_dataset(Path(tmp) / "ds", cfg, workers=workers, previews=previews)
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.synth_bench", description=__doc__)
    p.add_argument("--sequences", type=int, default=10, help=f"sequences to generate (then extrapolated to {FULL})")
    p.add_argument("--frames", type=int, default=DEFAULT.frames)
    p.add_argument("--width", type=int, default=DEFAULT.width)
    p.add_argument("--height", type=int, default=DEFAULT.height)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--render-frames", type=int, default=150, help="frames for the render-only measurement")
    p.add_argument("--no-previews", action="store_true")
    args = p.parse_args(argv)
    cfg = SynthConfig(n_sequences=args.sequences, frames=args.frames, width=args.width, height=args.height)
    n_render = min(args.render_frames, cfg.frames)
    t_render = bench_render(cfg, n_render)
    t_gen = bench_generate(cfg, args.workers, not args.no_previews)
    n_frames = cfg.n_sequences * cfg.frames
    rows = [
        ("render only, 1 process", 1, n_render, t_render, float("nan")),
        (f"write dataset, {args.workers} workers", cfg.n_sequences, n_frames, t_gen, t_gen * FULL / cfg.n_sequences),
    ]
    out = sys.stdout
    out.write(f"machine: {machine()}\n")
    out.write(f"config: {cfg.width}x{cfg.height}, {cfg.frames} frames per sequence, previews {not args.no_previews}\n")
    cols = (
        ("stage", 28),
        ("seqs", 5),
        ("frames", 7),
        ("seconds", 8),
        ("seq/s", 7),
        ("frames/s", 8),
        (f"{FULL} seqs, min", 13),
    )
    out.write("| " + " | ".join(f"{c:<{w}}" for c, w in cols) + " |\n")
    out.write("|" + "|".join("-" * (w + 2) for _, w in cols) + "|\n")
    for name, n_seq, n_fr, secs, est in rows:
        cells = (
            name,
            n_seq,
            n_fr,
            f"{secs:.2f}",
            f"{n_seq / secs:.3f}",
            f"{n_fr / secs:.1f}",
            "" if est != est else f"{est / 60:.1f}",
        )
        out.write("| " + " | ".join(f"{str(v):<{w}}" for v, (_, w) in zip(cells, cols, strict=True)) + " |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
