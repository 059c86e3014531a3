"""`r3d-compare A B`: two streaming evaluations (r3d-eval's results.json) paired over the same windows.

Both evaluations must be of the same dataset, split and windows (r3d-eval writes one record per window: its sequence,
true previous / current / next action, how long the current action had been going, and the model's predictions).
For next-action accuracy, current-action (last frame) accuracy, and current-action accuracy by how long the action
had been going (training.evaluate.onset_masks), it prints each side's accuracy with a 95 % bootstrap interval over
sequences and A - B as a paired bootstrap difference with its interval and a verdict (training.baselines).

    r3d-eval runs/service-e40/best.safetensors data/synth --split val --out runs/e40-val
    r3d-eval models/default/model.safetensors data/synth --split val --out runs/default-val
    r3d-compare runs/e40-val runs/default-val --names "40 epochs" default --out runs/e40-vs-default.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rgbd.files import write_json_atomic
from training.baselines import bootstrap_ci, paired_difference
from training.evaluate import onset_masks
from training.paths import recorded_path

FACT_KEYS = ("seq", "previous", "current", "next", "current_for_s")  # what makes two records the same window


class CompareError(ValueError):
    """Two evaluations that cannot be paired, or a file that is not a streaming evaluation."""


@dataclass(frozen=True)
class Evaluation:
    """One checkpoint's per-window records from an r3d-eval results.json."""

    source: str
    checkpoint: str
    dataset: str
    split: str
    windows: list[dict[str, Any]]


def load_evaluation(path: str | Path, index: int = 0) -> Evaluation:
    """The `index`-th checkpoint's clean streaming windows of results.json at `path` (a file or its folder)."""
    p = Path(path)
    file = p / "results.json" if p.is_dir() else p
    if not file.is_file():
        raise CompareError(f"{file}: no such file; expected r3d-eval's results.json or the folder that holds it")
    try:
        report = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CompareError(f"{file}: not readable as JSON ({exc})") from exc
    results = report.get("results") if isinstance(report, dict) else None
    if not isinstance(results, list) or not results:
        raise CompareError(f"{file}: no 'results' list; expected a results.json written by r3d-eval")
    if not 0 <= index < len(results):
        raise CompareError(f"{file}: checkpoint index {index} out of range; it holds {len(results)} checkpoint(s)")
    clean = results[index].get("clean", {})
    windows = clean.get("windows")
    if not windows:
        raise CompareError(
            f"{file}: checkpoint {index} has no per-window records (protocol {clean.get('protocol')!r}); "
            "expected a streaming evaluation by r3d-eval"
        )
    return Evaluation(
        recorded_path(file),
        str(clean.get("checkpoint", "?")),
        str(report.get("dataset", "?")),
        str(report.get("split", "?")),
        windows,
    )


def check_same_windows(a: Evaluation, b: Evaluation) -> None:
    """Raise CompareError unless `a` and `b` evaluated the same dataset, split and windows, in the same order."""
    if (a.dataset, a.split) != (b.dataset, b.split):
        raise CompareError(
            f"{a.source} is {a.dataset!r} split {a.split!r}, {b.source} is {b.dataset!r} split {b.split!r}; "
            "expected the same dataset and split"
        )
    if len(a.windows) != len(b.windows):
        raise CompareError(
            f"{a.source} has {len(a.windows)} windows, {b.source} {len(b.windows)}; expected the same windows "
            "(the same streaming protocol: fps, window, horizon, stride)"
        )
    for i, (wa, wb) in enumerate(zip(a.windows, b.windows, strict=True)):
        fa, fb = ({k: w.get(k) for k in FACT_KEYS} for w in (wa, wb))
        if fa != fb:
            raise CompareError(f"window {i} differs: {fa} in {a.source}, {fb} in {b.source}; expected the same windows")


def _hits(e: Evaluation) -> dict[str, np.ndarray]:
    """Per window, 1.0 where the model named the next / the current action right."""
    return {
        kind: np.array([w[f"{kind}_pred"] == w[kind] for w in e.windows], dtype=np.float64)
        for kind in ("next", "current")
    }


def compare(a: Evaluation, b: Evaluation) -> list[dict[str, Any]]:
    """One row per measure: windows, each side's accuracy and interval, and the paired difference A - B."""
    check_same_windows(a, b)
    seqs = np.array([w["seq"] for w in a.windows])
    known = np.array([w["current"] >= 0 for w in a.windows])  # a window before any labelled action has no current
    measures = {"next action": ("next", np.ones(len(seqs), dtype=bool)), "current action": ("current", known)}
    measures |= {f"current action, going {b}": ("current", m & known) for b, m in onset_masks(a.windows).items()}
    hits_a, hits_b = _hits(a), _hits(b)
    rows = []
    for name, (kind, mask) in measures.items():
        if not mask.any():  # e.g. no window ends in an action's first half second
            continue
        s, ha, hb = list(seqs[mask]), hits_a[kind][mask], hits_b[kind][mask]
        rows.append(
            {
                "measure": name,
                "windows": int(mask.sum()),
                "sequences": len(set(s)),
                "a": float(ha.mean()),
                "a_ci95": bootstrap_ci(s, ha),
                "b": float(hb.mean()),
                "b_ci95": bootstrap_ci(s, hb),
                "a_minus_b": paired_difference(s, ha, hb),
            }
        )
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _interval(ci: list[float], signed: bool = False) -> str:
    f = "{:+.1f}" if signed else "{:.1f}"
    return f"[{f.format(100 * ci[0])}, {f.format(100 * ci[1])}]"


def markdown(rows: list[dict[str, Any]], names: tuple[str, str], a: Evaluation, b: Evaluation) -> str:
    na, nb = names
    verdicts = {"first better": f"{na} better", "second better": f"{nb} better"}
    lines = [
        f"# {na} against {nb}, paired over the same {len(a.windows)} windows ({a.dataset}, {a.split} split)",
        "",
        f"- {na}: {a.checkpoint} ({a.source})",
        f"- {nb}: {b.checkpoint} ({b.source})",
        "",
        "95 % intervals by bootstrap over sequences; the difference is paired (training.baselines).",
        "",
        f"| measure | windows | {na} | {nb} | {na} - {nb} (points) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["a_minus_b"]
        lines.append(
            f"| {r['measure']} | {r['windows']} | {_pct(r['a'])} {_interval(r['a_ci95'])} | "
            f"{_pct(r['b'])} {_interval(r['b_ci95'])} | {100 * d['difference']:+.1f} "
            f"{_interval(d['ci95'], signed=True)} | "
            f"{verdicts.get(d['verdict'], d['verdict'])} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="r3d-compare",
        description="Pair two streaming evaluations of r3d-eval over the same windows: each side's accuracy with "
        "its 95 % interval, and A - B as a paired bootstrap difference with a verdict.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("a", type=Path, help="A: r3d-eval's results.json, or its folder")
    p.add_argument("b", type=Path, help="B: the same, for the other model")
    p.add_argument("--names", nargs=2, metavar=("A", "B"), default=("A", "B"), help="labels (default: A B)")
    p.add_argument("--index-a", type=int, default=0, help="which checkpoint of A's file (default: the first)")
    p.add_argument("--index-b", type=int, default=0, help="which checkpoint of B's file (default: the first)")
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        a, b = load_evaluation(args.a, args.index_a), load_evaluation(args.b, args.index_b)
        rows = compare(a, b)
    except CompareError as exc:
        sys.stderr.write(f"r3d-compare: {exc}\n")
        return 2
    names = (args.names[0], args.names[1])
    if args.out is not None:
        sources = {"a": [names[0], a.checkpoint, a.source], "b": [names[1], b.checkpoint, b.source]}
        write_json_atomic(args.out, {"dataset": a.dataset, "split": a.split, "compared": sources, "rows": rows})
    sys.stdout.write(markdown(rows, names, a, b))
    return 0


if __name__ == "__main__":
    sys.exit(main())
