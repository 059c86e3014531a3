"""`r3d-data inspect DATASET`: statistics of a dataset in the common format, and a label-distribution plot.

Prints sequences, frames, durations and subjects (where the provenance names them) per split, the modalities
(sequences with colour, depth-only sequences, extra streams such as skeleton or inertial), every class's frame
count and share with the number and durations of its segments (runs of one label), and sequence durations; writes
a bar chart of frames per class and split as a PNG (default: DATASET.label_distribution.png beside the dataset
folder). Reads labels.csv and meta.json only, never the images.
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rgbd.dataset import SPLITS, Dataset
from rgbd.files import write_bytes_atomic

UNLABELLED = "(unlabelled)"
NO_SPLIT = "(none)"


@dataclass
class Durations:
    """Running min / mean / max of durations in seconds."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    def describe(self) -> str:
        if not self.values:
            return "n=0"
        v = self.values
        return f"n={len(v)} mean={sum(v) / len(v):.2f} min={min(v):.2f} max={max(v):.2f}"


@dataclass
class SplitStats:
    sequences: int = 0
    frames: int = 0
    seconds: float = 0.0
    subjects: set[str] = field(default_factory=set)


@dataclass
class DatasetStats:
    """Everything `inspect` reports, computed from labels and metadata."""

    name: str
    source: str
    fps: float
    classes: list[str]
    background: str | None
    splits: dict[str, SplitStats]
    class_frames: dict[str, dict[str, int]]  # class -> split -> frames
    class_segments: dict[str, Durations]
    segments: Durations
    sequences: Durations
    with_color: int = 0
    depth_only: int = 0
    streams: dict[str, int] = field(default_factory=dict)  # extra stream name -> sequences holding it

    @property
    def total_frames(self) -> int:
        return sum(s.frames for s in self.splits.values())


def segments_of(times: list[float], labels: list[str | None], fps: float) -> list[tuple[str | None, float]]:
    """(label, seconds) of each run of equal labels; a run lasts until the next run's first timestamp, and the
    last run one frame period past its last timestamp."""
    runs: list[tuple[str | None, float]] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            end = times[i] if i < len(labels) else times[-1] + 1.0 / fps
            runs.append((labels[start], end - times[start]))
            start = i
    return runs


def compute_stats(ds: Dataset, split: str = "all") -> DatasetStats:
    """Statistics of every sequence (or of one split's)."""
    split_of = {seq: name for name in SPLITS for seq in ds.splits.get(name, [])}
    wanted = ds.split(split)
    names = [*SPLITS, NO_SPLIT]
    stats = DatasetStats(
        name=ds.name,
        source=str(ds.info.get("source", "?")),
        fps=ds.fps,
        classes=list(ds.classes),
        background=ds.background_class,
        splits={n: SplitStats() for n in names},
        class_frames={c: dict.fromkeys(names, 0) for c in [*ds.classes, UNLABELLED]},
        class_segments={c: Durations() for c in ds.classes},
        segments=Durations(),
        sequences=Durations(),
    )
    for seq in wanted:
        meta = ds.meta(seq)
        times, labels = ds.labels(seq)
        if not times:
            continue
        where = split_of.get(seq, NO_SPLIT)
        seconds = times[-1] - times[0] + 1.0 / meta.fps
        s = stats.splits[where]
        s.sequences += 1
        s.frames += len(times)
        s.seconds += seconds
        if meta.provenance.get("subject") is not None:
            s.subjects.add(str(meta.provenance["subject"]))
        stats.sequences.add(seconds)
        if meta.has_color:
            stats.with_color += 1
        else:
            stats.depth_only += 1
        for name in meta.streams:
            stats.streams[name] = stats.streams.get(name, 0) + 1
        for label in labels:
            key = label if label in stats.class_frames else UNLABELLED
            stats.class_frames[key][where] += 1
        for label, duration in segments_of(times, labels, meta.fps):
            if label is not None and label in stats.class_segments:
                stats.class_segments[label].add(duration)
                stats.segments.add(duration)
    return stats


def format_stats(stats: DatasetStats) -> str:
    """The printed report (one table per aspect, plain text)."""
    out = io.StringIO()
    w = out.write
    w(f"dataset {stats.name} (source {stats.source}), {len(stats.classes)} classes")
    w(f", background {stats.background}" if stats.background else "")
    w(f", {stats.fps:g} fps\n")
    streams = "".join(f", {name} {n}" for name, n in sorted(stats.streams.items()))
    w(f"modalities: RGB-D {stats.with_color}, depth-only {stats.depth_only} sequences{streams}\n\n")
    named = any(s.subjects for s in stats.splits.values())  # the subjects column where the provenance has them
    w(f"{'split':<8} {'sequences':>9} {'frames':>8} {'seconds':>9}{'  subjects' if named else ''}\n")
    for name, s in stats.splits.items():
        if name == NO_SPLIT and s.sequences == 0:
            continue
        subjects = "  " + (",".join(sorted(s.subjects, key=lambda x: (len(x), x))) or "-") if named else ""
        w(f"{name:<8} {s.sequences:>9} {s.frames:>8} {s.seconds:>9.2f}{subjects}\n")
    total = SplitStats(
        sum(s.sequences for s in stats.splits.values()),
        stats.total_frames,
        sum(s.seconds for s in stats.splits.values()),
    )
    w(f"{'total':<8} {total.sequences:>9} {total.frames:>8} {total.seconds:>9.2f}\n\n")
    width = max(12, *(len(c) for c in stats.class_frames))
    w(f"{'class':<{width}} {'frames':>8} {'share':>7} {'segments':>8} {'mean_s':>7} {'min_s':>7} {'max_s':>7}\n")
    for cls, per_split in stats.class_frames.items():
        frames = sum(per_split.values())
        if cls == UNLABELLED and frames == 0:
            continue
        share = 100.0 * frames / total.frames if total.frames else 0.0
        seg = stats.class_segments.get(cls)
        if seg is not None and seg.values:
            v = seg.values
            durations = f"{len(v):>8} {sum(v) / len(v):>7.2f} {min(v):>7.2f} {max(v):>7.2f}"
        else:
            durations = f"{0 if seg is not None else '-':>8} {'-':>7} {'-':>7} {'-':>7}"
        w(f"{cls:<{width}} {frames:>8} {share:>6.1f}% {durations}\n")
    w(f"\nsegment durations (s): {stats.segments.describe()}\n")
    w(f"sequence durations (s): {stats.sequences.describe()}\n")
    return out.getvalue()


def plot_stats(stats: DatasetStats, path: Path) -> None:
    """Horizontal bars of frames per class, stacked by split, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = [c for c, per in stats.class_frames.items() if c != UNLABELLED or sum(per.values()) > 0]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.3 * len(classes)))
    left = [0] * len(classes)
    for split in [*SPLITS, NO_SPLIT]:
        counts = [stats.class_frames[c][split] for c in classes]
        if any(counts):
            ax.barh(classes, counts, left=left, label=split)
            left = [a + b for a, b in zip(left, counts, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("frames")
    ax.set_title(f"{stats.name}: frames per class ({stats.total_frames} frames)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="split")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def default_plot_path(root: Path) -> Path:
    root = root.resolve()
    return root.parent / f"{root.name}.label_distribution.png"


def run(args: argparse.Namespace) -> int:
    root = Path(args.dataset)
    stats = compute_stats(Dataset(root), args.split)
    plot = Path(args.out) if args.out else default_plot_path(root)
    plot_stats(stats, plot)
    sys.stdout.write(format_stats(stats) + f"plot: {plot}\n")
    return 0


def register(subparsers: Any) -> None:
    """Add `inspect` to r3d-data's sub-parsers."""
    p = subparsers.add_parser(
        "inspect",
        help="print a dataset's statistics and plot its label distribution",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", help="dataset folder in the common format")
    p.add_argument("--split", default="all", choices=[*SPLITS, "all"], help="only this split (default: all)")
    p.add_argument("--out", default=None, help="PNG path of the plot (default: DATASET.label_distribution.png)")
    p.set_defaults(func=run)
