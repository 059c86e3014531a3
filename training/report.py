"""The comparisons this project publishes: R3D against the baselines on the synthetic benchmark, both protocols.

    python -m training.report --dataset data/synth --out reports/synthetic

Runs, each in OUT/runs/<protocol>-<variant>-s<seed>/ and resumable one by one (a finished run is skipped, an
interrupted one continues from its last completed epoch, so an interrupted report continues where it stopped):
  comparisons   {streaming, paper} x {rtf, rgb, depth, concat, attention, cen} x seeds
  ablations     paper protocol, R3D with exchange ratio 0.2 and 0.3, variance selection, temporal encoder off;
                streaming protocol, R3D with the paper's linear depth branch, the conv depth encoder, modality
                dropout (zeroed or darkened RGB features) and the decoder changes (value positions, small position init)
  candidates    streaming protocol, at every seed: R3D with the colour backbone on a person crop too (color_view),
                and with the person seen in more detail (depth at 120x160, person crop 64x32)
Every run is evaluated on the test split (never the checkpoint-selection split): MoC for the paper protocol,
next-action accuracy / MoC over the horizon / time-to-next-action error for the streaming one. Streaming results
also carry, on the same windows, the simple baselines (training.baselines), 95 % bootstrap intervals over test
sequences, and R3D - other differences as paired bootstraps with a verdict ("not distinguishable" when the interval
contains 0); a method's per-window hits are averaged over its seeds before pairing. Streaming runs are
also evaluated under every RGB and depth degradation at severity 2 (training/robustness.py; --degradations and
--severity choose). R3D's first seed gets the effective-rank analysis and Figure-2-style spectra. All runs share one
feature cache (computed once). Writes OUT/results.json, OUT/REPORT.md and OUT/rank_spectra.png.

Sizing to a machine: --protocols, --train-sequences / --val-sequences (the first N of each split; the test split is
always whole, so the intervals keep their width), fewer epochs and --ablation-seeds; REPORT.md says what was cut.
Run N shards at once (--shard I/N), one per core.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from model import load_checkpoint
from rgbd.dataset import Dataset
from rgbd.files import write_bytes_atomic, write_json_atomic
from training.baselines import bootstrap_ci, paired_difference
from training.config import load_config
from training.eval_cli import aggregate, finite_json
from training.evaluate import evaluate_checkpoint, evaluation_split, headline, protocol_spec
from training.features import ensure_features
from training.paths import recorded_command, recorded_path
from training.rank_analysis import analyse, plot_spectra, rank_table
from training.robustness import DEGRADATIONS, degradation_table
from training.train import STATE_FILE, train

logger = logging.getLogger(__name__)

RECIPES = {"streaming": "training/configs/service.yaml", "paper": "training/configs/paper.yaml"}
# name -> model overrides: the baselines are configurations of the same code (model/r3d.py FUSIONS)
VARIANTS: dict[str, dict[str, Any]] = {
    "rtf": {"model.fusion": "rtf"},
    "rgb": {"model.fusion": "rgb"},
    "depth": {"model.fusion": "depth"},
    "concat": {"model.fusion": "concat"},
    "attention": {"model.fusion": "attention"},
    "cen": {"model.fusion": "cen"},
}
ABLATIONS: dict[str, dict[str, Any]] = {
    "rtf-ratio0.2": {"model.exchange_ratio": 0.2},
    "rtf-ratio0.3": {"model.exchange_ratio": 0.3},
    "rtf-variance": {"model.selection": "variance"},
    "rtf-no-encoder": {"model.temporal_encoder": False},
}
# streaming-protocol ablations of the service recipe's choices (each relative to the recipe, one setting changed)
# (the person mask is an input of the person encoder only: the other depth encoders run without it)
STREAMING_ABLATIONS: dict[str, dict[str, Any]] = {
    "rtf-linear-depth": {"model.depth_encoder": "linear", "model.person_mask": "none"},
    "rtf-conv-depth": {"model.depth_encoder": "conv", "model.person_mask": "none"},
    "rtf-rgb-dropout-dark": {"optim.rgb_dropout": 0.3, "optim.rgb_dropout_mode": "dark"},
    "rtf-rgb-dropout-zero": {"optim.rgb_dropout": 0.3, "optim.rgb_dropout_mode": "zero"},
    "rtf-no-value-positions": {"model.decoder_value_positions": False},
    "rtf-position-init-1": {"model.position_init_std": 1.0},
}
# candidates for the service recipe: trained at every seed, as the methods are, so that their paired comparison
# with R3D is as strong as the methods'
STREAMING_CANDIDATES: dict[str, dict[str, Any]] = {
    "rtf-person-color": {"model.color_view": "frame+person"},
    "rtf-person-detail": {"model.depth_size": [120, 160], "model.person_crop": [64, 32]},
}
LABELS = {
    "rtf": "R3D (RTF)",
    "rgb": "RGB only (FUTR)",
    "depth": "depth only",
    "concat": "concatenation",
    "attention": "attention, no exchange (AFFT-style)",
    "cen": "hard exchange, no blending (CEN-style)",
    "rtf-ratio0.2": "R3D, exchange ratio 0.2",
    "rtf-ratio0.3": "R3D, exchange ratio 0.3",
    "rtf-variance": "R3D, variance selection",
    "rtf-no-encoder": "R3D, temporal encoder off",
    "rtf-linear-depth": "R3D, the paper's linear depth branch",
    "rtf-conv-depth": "R3D, conv depth encoder",
    "rtf-rgb-dropout-dark": "R3D, modality dropout with darkened RGB",
    "rtf-rgb-dropout-zero": "R3D, modality dropout with zeroed RGB",
    "rtf-no-value-positions": "R3D, decoder values without positions",
    "rtf-position-init-1": "R3D, positional table N(0, 1)",
    "rtf-person-color": "R3D, colour backbone on a person crop too",
    "rtf-person-detail": "R3D, depth at 120x160, person crop 64x32",
}


@dataclass(frozen=True)
class Run:
    protocol: str
    variant: str
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.protocol}-{self.variant}-s{self.seed}"


def plan(seeds: list[int], ablation_seeds: list[int], protocols: tuple[str, ...] = ("streaming", "paper")) -> list[Run]:
    # seed-major: a report cut short at a deadline has every method at its first seeds
    candidates = {v: {"model.fusion": "rtf", **o} for v, o in STREAMING_CANDIDATES.items()}
    runs = [Run(p, v, s, o) for p in ("streaming", "paper") for s in seeds
            for v, o in (VARIANTS | (candidates if p == "streaming" else {})).items()]  # fmt: skip
    runs += [Run("paper", v, s, {"model.fusion": "rtf", **o}) for v, o in ABLATIONS.items() for s in ablation_seeds]
    runs += [Run("streaming", v, s, {"model.fusion": "rtf", **o}) for v, o in STREAMING_ABLATIONS.items()
             for s in ablation_seeds]  # fmt: skip
    return [r for r in runs if r.protocol in protocols]


def run_one(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume) and evaluate one run; its eval.json marks it finished."""
    out = args.out / "runs" / run.name
    done = out / "eval.json"
    if done.is_file():
        return dict(json.loads(done.read_text()))
    epochs = args.streaming_epochs if run.protocol == "streaming" else args.paper_epochs
    overrides = {
        "data.dataset": str(args.dataset),
        "model.depth_size": list(args.depth_size),  # one feature cache for every run but those that set their own
        "optim.epochs": epochs,
        "optim.warmup_epochs": max(1.0, epochs / 10),
        "run.seed": run.seed,
        "run.out": str(out),
        "run.progress": False,
        "run.threads": args.threads,
        "data.windows_per_sequence": args.windows_per_sequence,  # streaming windows per sequence and epoch
        "data.max_train_sequences": args.train_sequences,  # 0: the whole split
        "data.max_val_sequences": args.val_sequences,
        **run.overrides,
    }
    cfg = load_config(RECIPES[run.protocol], overrides)
    result = train(cfg, resume=(out / STATE_FILE).exists())
    # the epochs' own times: a resumed run (or a finished one evaluated again) reports its whole training
    train_s = sum(float(h["time_s"]) for h in result.history)
    best = result.best
    evaluation = evaluate_checkpoint(best, args.dataset, split="test")
    record: dict[str, Any] = {
        "run": run.name,
        "protocol": run.protocol,
        "variant": run.variant,
        "seed": run.seed,
        "epochs": result.epochs,
        "train_seconds": train_s,
        "history": [{k: v for k, v in h.items() if isinstance(v, int | float)} for h in result.history],
        "headline": headline(evaluation),
        "evaluation": evaluation,
    }
    if run.protocol == "streaming" and (run.variant in VARIANTS or run.variant in STREAMING_CANDIDATES):
        record["robustness"] = {
            name: headline(
                evaluate_checkpoint(best, args.dataset, split="test", degradation=name, severity=args.severity)
            )
            for name in args.degradations
        }
    write_json_atomic(done, finite_json(record))
    return record


def curve_flattened(
    history: list[dict[str, Any]], key: str = "val_loss", window: int = 3, tolerance: float = 0.05
) -> bool | None:
    """True when the mean of `key` over the last `window` epochs is within `tolerance` (relative) of the window before;
    None when the history is too short. The validation loss is the curve that says whether more epochs would help."""
    losses = [h[key] for h in history if isinstance(h.get(key), float)]
    if len(losses) < 2 * window:
        return None
    last, before = np.mean(losses[-window:]), np.mean(losses[-2 * window : -window])
    return bool(abs(before - last) <= tolerance * abs(before))


def rank_section(records: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Effective-rank analysis of R3D's first seed under the paper protocol, per observation ratio."""
    first = next((r for r in records if r["protocol"] == "paper" and r["variant"] == "rtf"), None)
    if first is None:
        return {}
    path = args.out / "runs" / first["run"] / "best.safetensors"
    model, meta = load_checkpoint(path, with_backbone=False)
    dataset = Dataset(args.dataset)
    ids = evaluation_split(dataset, "test")
    _, data = ensure_features(dataset, model.cfg.backbone, model.cfg.preprocessing, ids, progress=False)
    cfg = load_config(RECIPES["paper"], {"data.dataset": str(args.dataset)})
    results, spectra = analyse(model, data, protocol_spec(cfg, model.cfg, "paper"), [0.2, 0.3, 0.5, 0.7])
    plot_spectra(args.out / "rank_spectra.png", spectra, title=f"R3D tokens before/after RTF ({first['run']})")
    return {"run": first["run"], "per_ratio": results}


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean / std over seeds of every headline metric, per protocol and variant."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        groups.setdefault(r["protocol"], {}).setdefault(r["variant"], []).append(r)
    return {
        protocol: {
            variant: {
                "seeds": [r["seed"] for r in rs],
                "headline": aggregate([r["headline"] for r in rs]),
                **(
                    {"robustness": aggregate([r["robustness"] for r in rs])}
                    if all("robustness" in r for r in rs)
                    else {}
                ),
                "train_seconds": float(np.sum([r["train_seconds"] for r in rs])),
                "val_loss_flat": [curve_flattened(r["history"]) for r in rs],
                "train_loss_flat": [curve_flattened(r["history"], "train_loss") for r in rs],
            }
            for variant, rs in by_variant.items()
        }
        for protocol, by_variant in groups.items()
    }


HIGHER_IS_BETTER = {"moc_standard": True, "next_action_acc": True, "moc_horizon": True, "time_to_next_mae_s": False}


def _cell(stat: dict[str, float] | None, scale: float = 1.0) -> str:
    if not stat or not math.isfinite(stat["mean"]):
        return "n/a"
    return f"{stat['mean'] * scale:.2f} ± {stat['std'] * scale:.2f}"


def verdicts(summary: dict[str, Any]) -> list[str]:
    """Plain statements: R3D against the best baseline on every headline metric, in points (or seconds)."""
    lines = []
    for protocol, variants in summary.items():
        if "rtf" not in variants:
            continue
        for metric, higher in HIGHER_IS_BETTER.items():
            ours = variants["rtf"]["headline"].get(metric)
            rivals = {v: s["headline"][metric] for v, s in variants.items() if v in VARIANTS and v != "rtf"
                      and metric in s["headline"]}  # fmt: skip
            if not ours or not rivals:
                continue
            pick = max if higher else min
            best_v = pick(rivals, key=lambda v: rivals[v]["mean"])
            scale, unit = (1.0, " s") if metric == "time_to_next_mae_s" else (100.0, " points")
            delta = (ours["mean"] - rivals[best_v]["mean"]) * scale * (1 if higher else -1)
            word = "wins" if delta > 0 else "loses"
            noise = max(ours["std"], rivals[best_v]["std"]) * scale
            within = " — within one seed standard deviation, so not a clear difference" if abs(delta) <= noise else ""
            lines.append(
                f"- {protocol}, {metric}: R3D {word} against the best baseline ({LABELS[best_v]}) by "
                f"{abs(delta):.2f}{unit} ({_cell(ours, scale)} vs {_cell(rivals[best_v], scale)}){within}."
            )
    return lines


# what a streaming test window counts as a hit, per compared accuracy
HITS = {
    "next_action": lambda w: float(w["hit"]),
    "current_action": lambda w: float(w["current_pred"] == w["current"]),  # the current action at the last frame
}


def paired_comparisons(records: list[dict[str, Any]], target: str = "next_action") -> dict[str, Any]:
    """Streaming protocol, test windows: every method's accuracy (`target`, one of HITS) with its 95 % interval over
    sequences, and R3D minus each as a paired bootstrap difference (hits averaged over each method's seeds). The
    simple baselines predict the next action, so they join the next-action comparison only."""
    hit = HITS[target]
    hits: dict[str, list[list[float]]] = {}
    seqs: list[str] = []
    baseline_rows: dict[str, list[float]] = {}
    for r in records:
        windows = r["evaluation"].get("windows") if r["protocol"] == "streaming" else None
        if windows and target == "current_action":  # as r3d-eval counts it: windows whose current action is known
            windows = [w for w in windows if w["current"] >= 0]
        if not windows:
            continue
        ws = [w["seq"] for w in windows]
        if seqs and ws != seqs:
            raise ValueError(f"run {r['run']} was evaluated on other windows than the first run; expected the same")
        seqs = ws
        hits.setdefault(r["variant"], []).append([hit(w) for w in windows])
        if r["variant"] == "rtf" and not baseline_rows and target == "next_action":
            names = [k.removeprefix("hit_") for k in windows[0] if k.startswith("hit_")]
            baseline_rows = {f"baseline: {n}": [float(w[f"hit_{n}"]) for w in windows] for n in names}
    if "rtf" not in hits:
        return {}
    means = {v: np.mean(h, axis=0) for v, h in hits.items()} | {k: np.asarray(v) for k, v in baseline_rows.items()}
    ours = means["rtf"]
    return {
        "windows": len(seqs),
        "sequences": len(set(seqs)),
        "methods": {
            name: {
                "accuracy": float(h.mean()),
                "ci95": bootstrap_ci(seqs, h),
                **({} if name == "rtf" else {"r3d_minus": paired_difference(seqs, ours, h)}),
            }
            for name, h in means.items()
        },
    }


def comparison_lines(comparisons: dict[str, Any], what: str = "next-action accuracy") -> list[str]:
    if not comparisons:
        return []
    lines = [
        "",
        f"## Streaming {what} with 95 % intervals ({comparisons['windows']} test windows, "
        f"{comparisons['sequences']} sequences; bootstrap over sequences; R3D - method paired on the same windows)",
        "",
        "| method | accuracy | 95 % interval | R3D - method [95 % interval] | verdict |",
        "|---|---|---|---|---|",
    ]
    for name, m in comparisons["methods"].items():
        lo, hi = m["ci95"]
        label = LABELS.get(name, name)
        diff = ""
        verdict = ""
        if "r3d_minus" in m:
            d = m["r3d_minus"]
            diff = f"{d['difference'] * 100:+.1f} [{d['ci95'][0] * 100:+.1f}, {d['ci95'][1] * 100:+.1f}]"
            verdict = {"first better": "R3D better", "second better": "R3D worse"}.get(d["verdict"], d["verdict"])
        lines.append(f"| {label} | {m['accuracy'] * 100:.1f} | [{lo * 100:.1f}, {hi * 100:.1f}] | {diff} | {verdict} |")
    return lines


def markdown(
    summary: dict[str, Any],
    rank: dict[str, Any],
    meta: dict[str, Any],
    comparisons: dict[str, Any] | None = None,
    current: dict[str, Any] | None = None,
) -> str:
    lines = ["# R3D on the synthetic RGB-D benchmark", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    lines += ["", "## Where R3D wins and where it does not", ""] + verdicts(summary)
    lines += comparison_lines(comparisons or {})
    lines += comparison_lines(current or {}, "current-action accuracy (the last observed frame)")
    for protocol, variants in summary.items():
        metrics = [m for m in HIGHER_IS_BETTER if any(m in s["headline"] for s in variants.values())]
        lines += ["", f"## {protocol} protocol (test split, mean ± std over seeds, percentages)", ""]
        head = "| model | seeds | " + " | ".join(metrics) + " | val loss flat | train loss flat |"
        lines += [head, "|---" * (len(metrics) + 4) + "|"]
        for v, s in variants.items():
            cells = [_cell(s["headline"].get(m), 1.0 if m == "time_to_next_mae_s" else 100.0) for m in metrics]
            flat = [f"{sum(bool(f) for f in s[k])}/{len(s[k])}" for k in ("val_loss_flat", "train_loss_flat")]
            lines.append(f"| {LABELS[v]} | {len(s['seeds'])} | " + " | ".join(cells + flat) + " |")
        robust = {v: s["robustness"] for v, s in variants.items() if "robustness" in s}
        if robust:
            lines += ["", f"### Robustness ({protocol}, {meta['robustness']}, next-action accuracy %)", ""]
            names = [n for n in DEGRADATIONS if any(n in rob for rob in robust.values())]
            lines += [degradation_table(names), ""]
            lines += ["| model | clean | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
            for v, rob in robust.items():
                clean = _cell(variants[v]["headline"].get("next_action_acc"), 100.0)
                cells = [_cell(rob.get(n, {}).get("next_action_acc"), 100.0) for n in names]
                lines.append(f"| {LABELS[v]} | {clean} | " + " | ".join(cells) + " |")
    if rank:
        lines += ["", f"## Effective rank ({rank['run']}, paper protocol, test split)", ""]
        lines += [rank_table(rank["per_ratio"]), "", "Spectra: rank_spectra.png"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--dataset", type=Path, default=Path("data/synth"), help="the synthetic benchmark (r3d-data synth)")
    p.add_argument("--out", type=Path, default=Path("reports/synthetic"), help="report folder (default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 10, 13452], help="seeds (default: %(default)s)")
    p.add_argument(
        "--ablation-seeds", type=int, nargs="+", default=[1], help="seeds of the ablations (default: %(default)s)"
    )
    p.add_argument(
        "--streaming-epochs", type=int, default=12, help="epochs of each streaming run (default: %(default)s)"
    )
    p.add_argument(
        "--paper-epochs", type=int, default=12, help="epochs of each paper-protocol run (default: %(default)s)"
    )
    p.add_argument("--depth-size", type=int, nargs=2, default=[60, 80], metavar=("H", "W"), help="depth map size")
    p.add_argument("--windows-per-sequence", type=int, default=8, help="streaming training windows per sequence/epoch")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (1 is fastest on a busy machine)")
    p.add_argument(
        "--protocols",
        nargs="+",
        choices=("streaming", "paper"),
        default=["streaming", "paper"],
        help="protocols to run (default: both)",
    )
    p.add_argument(
        "--train-sequences",
        type=int,
        default=0,
        help="train on the first N sequences of the train split (0, the default: all of it)",
    )
    p.add_argument(
        "--val-sequences",
        type=int,
        default=0,
        help="select checkpoints on the first N of the val split (0, the default: all of it)",
    )
    p.add_argument(
        "--degradations",
        nargs="*",
        choices=list(DEGRADATIONS),
        default=list(DEGRADATIONS),
        help="degradations the streaming comparisons are evaluated under (default: all)",
    )
    p.add_argument("--severity", type=int, choices=(1, 2, 3), default=2, help="their severity (default: 2)")
    p.add_argument("--only", nargs="*", default=None, help="run only these run names (e.g. streaming-rtf-s1)")
    p.add_argument("--shard", default="0/1", help="I/N: this process trains every N-th run from I (run N at once)")
    p.add_argument("--report-only", action="store_true", help="write the report from the finished runs; train none")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    shard, shards = (int(x) for x in args.shard.split("/"))
    runs = [r for r in plan(args.seeds, args.ablation_seeds, tuple(args.protocols))
            if args.only is None or r.name in args.only]  # fmt: skip
    started = time.perf_counter()
    for run in tqdm([] if args.report_only else runs[shard::shards], desc=f"report runs (shard {args.shard})",
                    unit="run"):  # fmt: skip
        run_one(run, args)
    # the report covers every finished run; another shard may still be working on the rest
    finished = [args.out / "runs" / r.name / "eval.json" for r in runs]
    records = [json.loads(f.read_text()) for f in finished if f.is_file()]
    missing = [r.name for r, f in zip(runs, finished, strict=True) if not f.is_file()]
    summary = summarise(records)
    comparisons = paired_comparisons(records)
    current = paired_comparisons(records, "current_action")
    rank = rank_section(records, args)
    dataset = Dataset(args.dataset)
    meta = {
        "dataset": f"{recorded_path(dataset.root)} ({len(dataset.sequence_ids)} sequences: "
        + ", ".join(f"{s} {len(dataset.split(s))}" for s in ("train", "val", "test"))
        + f"; {dataset.fps:g} fps)",
        "epochs": ", ".join(f"{p} {getattr(args, f'{p}_epochs')}" for p in args.protocols),
        "seeds": f"{args.seeds} (ablations: {args.ablation_seeds})",
        "runs": f"{len(records)} finished" + (f", {len(missing)} missing: {', '.join(missing)}" if missing else ""),
        "streaming windows per sequence and epoch": args.windows_per_sequence,
        "sized to fit": f"protocols {' and '.join(args.protocols)}; train sequences "
        f"{args.train_sequences or 'all'}, validation sequences {args.val_sequences or 'all'} (test: the whole split)",
        "robustness": f"{', '.join(args.degradations) or 'none'} at severity {args.severity}",
        "training time (all runs' epochs, h)": round(sum(r["train_seconds"] for r in records) / 3600, 2),
        "this invocation's wall time (min)": round((time.perf_counter() - started) / 60, 1),
        "command": recorded_command("python -m training.report", sys.argv[1:] if argv is None else argv),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"meta": meta, "summary": summary, "comparisons": comparisons, "current_action_comparisons": current,
               "rank": rank}  # fmt: skip
    write_json_atomic(args.out / "results.json", finite_json(results))
    write_bytes_atomic(args.out / "REPORT.md", markdown(summary, rank, meta, comparisons, current).encode())
    logger.info("wrote %s", args.out / "REPORT.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
