"""What a synthetic dataset's split holds, counted on the streaming evaluation windows:
`python -m training.synth.stats DATASET [--split test] [--config service] [--json PATH]`, or for a world
configuration without rendering it, `python -m training.synth.stats --world [--sequences 500 --seed 0]`.

The windows are the ones `r3d-eval` scores (`training.sampler.evaluation_windows` with the recipe's protocol: ends
every `val_stride_s` seconds from `min_observed_s`, each with a full horizon), so the counts are those of the
benchmark. A window "ends" in a frame range when its last observed frame lies in it. Counted per window:

- `dark`: the last observed frame is in a dark stretch (`provenance.dark_frames`): colour is noise, only depth sees;
- `crate_height` (`low` / `tall`): the window ends while the person walks to the crate, whose height alone
  (colour-identical, flat-shaded) decides the next action (`sit_down` or `bend`);
- `cup_colour`: the window ends in `reach` / `pick_up` of a cup, whose colour alone decides the next action;
- `depth_only`: dark or crate_height (either one).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rgbd.dataset import Dataset
from rgbd.files import write_json_atomic
from training.config import load_config, recipe_path
from training.evaluate import protocol_spec
from training.features import SequenceFeatures
from training.sampler import ProtocolSpec, evaluation_windows
from training.synth.actions import ACTIONS
from training.synth.generate import split_of
from training.synth.world import SynthConfig, SynthSequence

DEFAULT_RECIPE = "service"


@dataclass
class SplitStats:
    split: str
    spec: ProtocolSpec
    sequences: int = 0
    frames: int = 0
    windows: int = 0
    window_counts: Counter[str] = field(default_factory=Counter)  # kind -> windows that end in it
    label_frames: Counter[str] = field(default_factory=Counter)  # class -> frames
    activities: Counter[str] = field(default_factory=Counter)  # the sequences' (first) activity
    crates: Counter[str] = field(default_factory=Counter)  # low / tall
    world_versions: Counter[str] = field(default_factory=Counter)

    def share(self, kind: str) -> float:
        return self.window_counts[kind] / self.windows if self.windows else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "sequences": self.sequences,
            "frames": self.frames,
            "windows": self.windows,
            "window_counts": dict(sorted(self.window_counts.items())),
            "window_shares": {k: round(self.share(k), 4) for k in sorted(self.window_counts)},
            "label_frames": dict(sorted(self.label_frames.items())),
            "activities": dict(sorted(self.activities.items())),
            "crates": dict(sorted(self.crates.items())),
            "world_versions": dict(sorted(self.world_versions.items())),
        }


def service_spec(config: str | Path = DEFAULT_RECIPE, classes: list[str] | None = None) -> ProtocolSpec:
    """The streaming protocol of a training recipe, as `r3d-eval` builds it."""
    cfg = load_config(recipe_path(config))
    return protocol_spec(cfg, cfg.model.to_r3d(classes or ["a", "b"]), "streaming")


def _in(ranges: list[tuple[int, int]], frame: int) -> bool:
    return any(a <= frame < b for a, b in ranges)


def _count(
    out: SplitStats, sid: str, times: list[float], labels: list[str | None], prov: dict[str, Any], activity: str
) -> None:
    out.sequences += 1
    out.frames += len(labels)
    out.label_frames.update(lab for lab in labels if lab is not None)
    out.activities[activity] += 1
    out.world_versions[str(prov.get("world_version", 1))] += 1
    if "crate" in prov:
        out.crates[str(prov["crate"])] += 1
    dark = [(int(a), int(b)) for a, b in prov.get("dark_frames", [])]
    decisions = prov.get("decisions", [])
    n = len(labels)
    seq = SequenceFeatures(
        id=sid,
        rgb=np.zeros((n, 0), np.float16),
        depth=np.zeros((n, 1, 0, 0), np.float16),
        labels=np.zeros(n, np.int64),
        timestamps=np.asarray(times, np.float64),
    )
    for w in evaluation_windows({sid: seq}, out.spec):
        last = int(w.observed[-1])
        out.windows += 1
        kinds = {"dark"} if _in(dark, last) else set()
        for d in decisions:
            if int(d["start"]) <= last < int(d["end"]):
                kinds |= {str(d["kind"]), f"{d['kind']}:{d['cue']}"}
        if kinds & {"dark", "crate_height"}:
            kinds.add("depth_only")
        out.window_counts.update(kinds)


def split_stats(root: str | Path, split: str = "test", spec: ProtocolSpec | None = None) -> SplitStats:
    """Count the windows of a dataset's `split` that end dark or inside a recorded decision, and its labels."""
    ds = Dataset(root)
    out = SplitStats(split, spec or service_spec(classes=ds.classes))
    for sid in ds.split(split):
        meta = ds.meta(sid)
        times, labels = ds.labels(sid)
        _count(out, sid, times, labels, dict(meta.provenance or {}), str(meta.activity))
    return out


def world_stats(cfg: SynthConfig, split: str = "test", spec: ProtocolSpec | None = None) -> SplitStats:
    """The same counts for a world configuration without rendering it (plans only; what `r3d-data synth` with
    this configuration would write)."""
    out = SplitStats(split, spec or service_spec(classes=list(ACTIONS)))
    for i in range(cfg.n_sequences):
        if split not in ("all", split_of(i)):
            continue
        seq = SynthSequence(cfg, i)
        times = [k / cfg.fps for k in range(cfg.frames)]
        _count(out, seq.id, times, list(seq.labels), json.loads(json.dumps(seq.provenance())), seq.activity)
    return out


def format_stats(st: SplitStats) -> str:
    spec = st.spec
    lines = [
        f"split {st.split}: {st.sequences} sequences, {st.frames} frames, {st.windows} streaming windows "
        f"(ends every {spec.stride_s:g} s from {spec.min_observed_s:g} s, window {spec.window_s:g} s, "
        f"horizon {spec.horizon_s:g} s, {spec.fps:g} fps)",
        f"world versions: {dict(sorted(st.world_versions.items()))}; crates: {dict(sorted(st.crates.items()))}",
        "",
        "| windows that end ... | windows | share |",
        "| --- | --- | --- |",
    ]
    for kind in sorted(st.window_counts):
        lines.append(f"| {kind} | {st.window_counts[kind]} | {100 * st.share(kind):.1f} % |")
    lines += ["", "| label | frames | share |", "| --- | --- | --- |"]
    for lab, n in st.label_frames.most_common():
        lines.append(f"| {lab} | {n} | {100 * n / max(st.frames, 1):.1f} % |")
    lines += ["", "| activity (first of the sequence) | sequences |", "| --- | --- |"]
    lines += [f"| {a} | {n} |" for a, n in sorted(st.activities.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.synth.stats",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", nargs="?", help="dataset folder written by `r3d-data synth` (or use --world)")
    p.add_argument("--world", action="store_true", help="count a world configuration without rendering it")
    p.add_argument("--sequences", type=int, default=SynthConfig().n_sequences, help="with --world: sequences")
    p.add_argument("--seed", type=int, default=SynthConfig().seed, help="with --world: master seed")
    p.add_argument("--split", default="test", help="train, val, test or all (default: test)")
    p.add_argument("--config", default=DEFAULT_RECIPE, help="training recipe whose streaming protocol to count")
    p.add_argument("--json", help="also write the counts to this JSON file")
    args = p.parse_args(argv)
    if (args.dataset is None) == (not args.world):
        p.error("expected a dataset folder or --world (not both)")
    try:
        if args.world:
            spec = service_spec(args.config, list(ACTIONS))
            st = world_stats(SynthConfig(n_sequences=args.sequences, seed=args.seed), args.split, spec)
        else:
            spec = service_spec(args.config, Dataset(args.dataset).classes)
            st = split_stats(args.dataset, args.split, spec)
    except (ValueError, FileNotFoundError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(format_stats(st))
    if args.json:
        write_json_atomic(Path(args.json), st.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
