"""`r3d-eval CHECKPOINT [CHECKPOINT ...] DATASET`: evaluate trained models on the test split.

Writes results.json and results.md to --out (default: CHECKPOINT's folder/eval-<dataset>-<split>). With several
checkpoints (the paper's seeds 1, 10, 13452) every figure is reported as mean and sample standard deviation.

    r3d-eval runs/paper-s1/best.safetensors runs/paper-s10/best.safetensors data/utkinect --ratios 0.2 0.3
    r3d-eval runs/service/best.safetensors data/synth --rank --robustness
    r3d-eval runs/service/best.safetensors data/synth --summary --out models/default   # the contract summary

Streaming results carry, on the same windows, the simple baselines (majority; true current action -> its most
frequent follower; true previous + current action; the model's current action -> follower), 95 % bootstrap
intervals over test sequences and paired model - baseline differences (training.baselines).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import R3DError
from rgbd.dataset import Dataset
from rgbd.files import write_bytes_atomic, write_json_atomic
from training import rank_analysis
from training.config import PROTOCOLS, STANDARD_HORIZONS
from training.evaluate import (
    PAPER_RATIOS,
    evaluate_checkpoint,
    evaluation_split,
    headline,
    load_for_eval,
    protocol_spec,
)
from training.features import ensure_features
from training.paths import recorded_path
from training.robustness import DEGRADATIONS, SEVERITIES, degradation_table
from training.summary import contract_summary

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="r3d-eval",
        description="Evaluate R3D checkpoints on a dataset's test split: MoC (paper protocol) or next-action "
        "accuracy, MoC over the horizon and time-to-next-action error (streaming), effective-rank analysis "
        "and robustness to degraded RGB or depth.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="CHECKPOINT... DATASET", help="checkpoints, then the dataset")
    p.add_argument("--split", default="test", choices=["test", "val", "train", "all"], help="default: test")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None, help="default: the protocol the model trained with")
    p.add_argument("--ratios", type=float, nargs="+", default=list(PAPER_RATIOS), help="paper: observation ratios")
    p.add_argument("--horizons", type=float, nargs="+", default=list(STANDARD_HORIZONS), help="paper: horizons")
    p.add_argument("--rank", action="store_true", help="effective-rank analysis and spectra plots")
    p.add_argument("--robustness", action="store_true", help="evaluate with each degradation at each severity")
    p.add_argument(
        "--summary",
        action="store_true",
        help="the contract summary (streaming): also rgb_dark severity 3, dead channels and test ECE; written as the "
        "top-level 'summary' of results.json (training/summary.py)",
    )
    p.add_argument(
        "--stride-s",
        type=float,
        default=None,
        help="streaming: a window ends every STRIDE_S seconds (default: the recipe's data.val_stride_s); denser "
        "windows give paired comparisons more to resample, not a figure comparable with the recipe's",
    )
    p.add_argument("--degradations", nargs="+", default=sorted(DEGRADATIONS), choices=sorted(DEGRADATIONS))
    p.add_argument("--severities", type=int, nargs="+", default=list(SEVERITIES), choices=list(SEVERITIES))
    p.add_argument(
        "--cache-root", type=Path, default=None, help="root of the feature caches (default DATASET/features)"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    p.add_argument("--out", type=Path, default=None, help="output folder")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is best on a busy shared machine)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--log-level", default="INFO")
    return p


def aggregate(results: list[Any]) -> Any:
    """Mean/std over checkpoints of every numeric leaf present in all results (nested dicts kept)."""
    first = results[0]
    if isinstance(first, dict):
        keys = [k for k in first if all(isinstance(r, dict) and k in r for r in results)]
        return {k: agg for k in keys if (agg := aggregate([r[k] for r in results])) not in (None, {})}
    if all(isinstance(r, int | float) and not isinstance(r, bool) for r in results):
        values = np.array(results, dtype=np.float64)
        finite = values[np.isfinite(values)]
        std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
        return {"mean": float(np.mean(finite)) if len(finite) else math.nan, "std": std, "n": len(finite)}
    return None


def finite_json(obj: Any) -> Any:
    """NaN and infinities become null, so results.json is strict JSON."""
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fmt(stat: dict[str, float]) -> str:
    if not math.isfinite(stat["mean"]):
        return "n/a"
    return f"{stat['mean']:.4f}" + (f" ± {stat['std']:.4f}" if stat["n"] > 1 else "")


def _baseline_lines(results: list[dict[str, Any]]) -> list[str]:
    """Per checkpoint: the model and the baselines on the same windows, 95 % intervals, paired differences."""
    lines: list[str] = []
    for i, res in enumerate(results):
        s = res["clean"].get("streaming", {})
        if "baselines" not in s:
            continue
        ci = s["ci95"]
        lines += ["", f"### Checkpoint {i + 1}: next-action accuracy against simple baselines (same windows)", ""]
        lines += [
            "| predictor | accuracy | 95 % interval | model - it [95 % interval] | verdict |",
            "|---|---|---|---|---|",
        ]
        lo, hi = ci["next_action_acc"]
        lines.append(f"| the model | {s['next_action_acc']:.3f} | [{lo:.3f}, {hi:.3f}] | | |")
        for name, acc in s["baselines"].items():
            lo, hi = ci[f"baseline_{name}"]
            d = s["model_minus_baseline"][name]
            dlo, dhi = d["ci95"]
            lines.append(
                f"| {name} | {acc:.3f} | [{lo:.3f}, {hi:.3f}] | {d['difference']:+.3f} [{dlo:+.3f}, {dhi:+.3f}] "
                f"| {d['verdict'].replace('first', 'model').replace('second', 'baseline')} |"
            )
        lo, hi = ci["current_action_acc"]
        lines.append(f"\nCurrent-action (last frame) accuracy: {s['current_action_acc']:.3f} [{lo:.3f}, {hi:.3f}].")
        if "summary" in res:
            lines += ["", "| summary | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in res["summary"].items() if not isinstance(v, dict)]
        if "dead_channels" in res:
            dead = res["dead_channels"]
            lines.append(f"\nDead token channels (zero on every frame): RGB {dead['rgb']}, depth {dead['depth']}.")
    return lines


def markdown(report: dict[str, Any]) -> str:
    agg = report["aggregate"]
    lines = [f"# R3D evaluation on {report['dataset']} ({report['split']} split)", ""]
    lines.append(f"Checkpoints ({len(report['checkpoints'])}): " + ", ".join(report["checkpoints"]))
    lines.append("Values: mean ± sample standard deviation over checkpoints." if len(report["checkpoints"]) > 1 else "")
    clean = agg["clean"]
    if "paper" in clean:
        moc = clean["paper"]["moc"]
        betas = list(next(iter(moc.values())))
        lines += ["", "## MoC (paper protocol)", "", "| alpha | " + " | ".join(f"beta {b}" for b in betas) + " |"]
        lines.append("|---" * (len(betas) + 1) + "|")
        lines += [f"| {a} | " + " | ".join(_fmt(row[b]) for b in betas) + " |" for a, row in moc.items()]
    if "streaming" in clean:
        lines += ["", "## Streaming metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in clean["streaming"].items() if "mean" in v]
        lines += _baseline_lines(report["results"])
    if "robustness" in agg:
        rob = agg["robustness"]
        cols = list(next(iter(rob.values())))
        lines += ["", "## Robustness", "", degradation_table(), ""]
        lines += ["| condition | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(_fmt(row[c]) for c in cols) + " |" for name, row in rob.items()]
    if "rank" in agg:
        lines += [
            "",
            "## Effective rank (mean over windows)",
            "",
            "| ratio | " + " | ".join(rank_analysis.KINDS) + " | G_rgb | G_depth | H |",
            "|---" * 9 + "|",
        ]
        for ratio, r in agg["rank"].items():
            cols = [f"erank_{k}" for k in rank_analysis.KINDS] + ["gain_rgb", "gain_depth", "harmonic"]
            lines.append(f"| {ratio} | " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _evaluate_one(path: Path, dataset_root: Path, args: argparse.Namespace, out: Path, i: int) -> dict[str, Any]:
    common: dict[str, Any] = {
        "split": args.split,
        "protocol": args.protocol,
        "ratios": args.ratios,
        "horizons": args.horizons,
        "cache_root": args.cache_root,
        "batch_size": args.batch_size,
        "progress": not args.no_progress,
        "device": args.device,
        "stride_s": args.stride_s,
    }
    result: dict[str, Any] = {"clean": evaluate_checkpoint(path, dataset_root, **common)}
    if args.robustness:
        rob = {"clean": headline(result["clean"])}
        for name in args.degradations:
            for sev in args.severities:
                res = evaluate_checkpoint(path, dataset_root, degradation=name, severity=sev, **common)
                rob[f"{name}-s{sev}"] = headline(res)
        result["robustness"] = rob
    if args.rank:
        model, cfg, _ = load_for_eval(path)
        dataset = Dataset(dataset_root)
        ids = evaluation_split(dataset, args.split)
        _, data = ensure_features(
            dataset,
            model.cfg.backbone,
            model.cfg.preprocessing,
            ids,
            cache_root=args.cache_root,
            expected_sha256=model.cfg.backbone_weights_sha256 or None,
            progress=False,
            device=args.device,
        )
        spec = protocol_spec(cfg, model.cfg, args.protocol)
        ranks, spectra = rank_analysis.analyse(model, data, spec, args.ratios)
        rank_analysis.plot_spectra(out / f"spectra-{i}.png", spectra, title=f"{path} ({model.cfg.fusion})")
        result["rank"] = ranks
        result["dead_channels"] = rank_analysis.dead_channels(model, data)
    if args.summary:
        summary_kw = {"split": args.split, "cache_root": args.cache_root, "batch_size": args.batch_size}
        result["summary"] = contract_summary(
            path, dataset_root, result["clean"], device=args.device, progress=not args.no_progress, **summary_kw
        )
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("r3d-eval")
    if len(args.paths) < 2:
        log.error("expected one or more checkpoints and then a dataset folder, got %s", [str(p) for p in args.paths])
        return 2
    *checkpoints, dataset_root = args.paths
    if args.stride_s is not None and (args.stride_s <= 0 or args.summary):
        why = "a positive number of seconds" if args.stride_s <= 0 else "no --summary (defined on the recipe's windows)"
        log.error("--stride-s %g: expected %s", args.stride_s, why)
        return 2
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    try:
        dataset = Dataset(dataset_root)
        out = args.out or checkpoints[0].parent / f"eval-{dataset.name}-{args.split}"
        out.mkdir(parents=True, exist_ok=True)
        per = [_evaluate_one(p, dataset_root, args, out, i) for i, p in enumerate(checkpoints)]
    except (R3DError, ValueError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    report: dict[str, Any] = {
        "dataset": dataset.name,
        "dataset_root": recorded_path(dataset_root),
        "split": args.split,
        "checkpoints": [recorded_path(p) for p in checkpoints],
        "results": per,
        "aggregate": aggregate(per),
    }
    if args.summary and len(per) == 1:
        report = {"summary": per[0]["summary"], **report}  # the contract: one model's summary at the top level
    if args.robustness:
        report["degradations"] = {n: {"modality": d.modality, "levels": d.levels} for n, d in DEGRADATIONS.items()}
    write_json_atomic(out / "results.json", finite_json(report))
    md = markdown(report)
    write_bytes_atomic(out / "results.md", md.encode())
    sys.stdout.write(md)
    log.info("results written to %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
