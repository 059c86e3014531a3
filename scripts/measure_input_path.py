"""Accuracy of a trained model through the fast input path (model.prepare_inputs) against the pre-v2 input path, on
the same windows of one split: the measurement behind docs/export.md's "Input path" table.

The pre-v2 path (PyTorch float resizes at camera resolution: bilinear + antialias colour after a full JPEG decode;
depth min-max at camera resolution, holes 0, then an area resize that averages holes in) lives only here, as the
reference of this measurement; it is not a library option. Its features go to a separate cache root
(CACHE_ROOT/pre-v2) so that they never mix with the library's caches.

    python scripts/measure_input_path.py models/default/model.safetensors DATASET --split test --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from model import Preprocessing
from model.backbones import IMAGENET_MEAN, IMAGENET_STD
from model.person import PersonLocator
from rgbd.dataset import Dataset
from rgbd.files import write_json_atomic
from training.baselines import bootstrap_ci, paired_difference
from training.evaluate import evaluate_streaming, evaluation_split, load_for_eval, protocol_spec
from training.features import FeatureExtractor, build_cache, ensure_features, load_cache


def pre_v2_inputs(
    color: np.ndarray | bytes, depth: np.ndarray, scale: float, pre: Preprocessing
) -> tuple[np.ndarray, ...]:
    """The input path before the fast path, as it was (model/preprocess.py at the parent of the fast-path commit)."""
    if isinstance(color, bytes):
        bgr = cv2.imdecode(np.frombuffer(color, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"expected an encoded colour image (JPEG or PNG), got {len(color)} undecodable bytes")
        color = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    x = torch.from_numpy(np.ascontiguousarray(color)).permute(2, 0, 1)[None].float().div_(255.0)
    if tuple(x.shape[-2:]) != tuple(pre.image_size):
        x = F.interpolate(x, size=pre.image_size, mode="bilinear", align_corners=False, antialias=True)
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    m = torch.from_numpy(depth.astype(np.int32))[None, None].float() * scale
    valid = (m >= pre.depth_min_m) & (m <= pre.depth_max_m)
    big = torch.finfo(torch.float32).max
    lo = torch.where(valid, m, big).amin(dim=(2, 3), keepdim=True)
    hi = torch.where(valid, m, -big).amax(dim=(2, 3), keepdim=True)
    d = torch.where(valid, (m - lo) / (hi - lo).clamp_min(1e-6), torch.zeros_like(m))
    if tuple(d.shape[-2:]) != tuple(pre.depth_size):
        d = F.interpolate(d, size=pre.depth_size, mode="area")
    return x[0].numpy(), d[0].numpy()


class PreV2Extractor(FeatureExtractor):
    def inputs(
        self, color: np.ndarray | bytes | None, depth: np.ndarray, scale: float, locator: PersonLocator | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if locator is not None:
            raise ValueError("the v2 input path this script measures has no person mask")
        if color is None:
            raise ValueError("the v2 input path this script measures is defined for RGB-D frames only")
        image, dmap = pre_v2_inputs(color, depth, scale, self.pre)
        return image, dmap


def evaluate(model: Any, cfg: Any, data: dict[str, Any]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []
    spec = protocol_spec(cfg, model.cfg, "streaming")
    result = evaluate_streaming(model, data, spec, records=records, batch_size=16, device=torch.device("cpu"))
    return result, records


def say(text: str) -> None:
    sys.stdout.write(text + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("dataset", type=Path)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="only the first N sequences of the split (time budget)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a shared machine)")
    p.add_argument("--cache-root", type=Path, default=None, help="feature caches (default: DATASET/features)")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, cfg, _ = load_for_eval(args.checkpoint)
    model.eval()
    pre = model.cfg.preprocessing
    dataset = Dataset(args.dataset)
    if dataset.classes != model.cfg.classes:
        sys.stderr.write(f"classes differ: model {model.cfg.classes}, dataset {dataset.classes}\n")
        return 2
    ids = evaluation_split(dataset, args.split)[: args.limit]
    t0 = time.perf_counter()
    cache_root = args.cache_root or args.dataset / "features"
    _, fast = ensure_features(
        dataset, model.cfg.backbone, pre, ids, expected_sha256=model.cfg.backbone_weights_sha256 or None,
        cache_root=cache_root, device="cpu",
    )  # fmt: skip
    t_fast = time.perf_counter() - t0
    base = FeatureExtractor.build(model.cfg.backbone, pre, device="cpu")
    old_ex = PreV2Extractor(base.backbone, base.digest, base.name, pre, base.device)
    t0 = time.perf_counter()
    folder = build_cache(dataset, old_ex, seq_ids=ids, cache_root=cache_root / "pre-v2")
    t_old = time.perf_counter() - t0
    old = load_cache(folder, ids)
    rows: dict[str, Any] = {}
    hits: dict[str, np.ndarray] = {}
    seqs: list[str] = []
    for name, data in (("pre-v2 input path", old), ("fast input path", fast)):
        result, records = evaluate(model, cfg, data)
        seqs = [r["seq"] for r in records]
        hits[name] = np.asarray([r["hit"] for r in records], dtype=np.float64)
        rows[name] = {
            "next_action_acc": result["next_action_acc"],
            "next_action_hit_rate": float(hits[name].mean()),
            "next_action_hit_rate_ci95": bootstrap_ci(seqs, hits[name]),
            "moc_horizon": result["moc_horizon"],
            "time_to_next_mae_s": result["time_to_next_mae_s"],
            "windows": len(records),
        }
    diff = paired_difference(seqs, hits["fast input path"], hits["pre-v2 input path"])
    report = {
        "checkpoint": args.checkpoint.name,
        "dataset": args.dataset.name,
        "split": args.split,
        "sequences": len(ids),
        "results": rows,
        "fast_minus_pre_v2": diff,
        "feature_cache_seconds": {"fast": round(t_fast, 1), "pre-v2": round(t_old, 1)},
    }
    say(json.dumps(report, indent=2))
    say(f"\n| {args.split} split, {len(ids)} sequences, {rows['fast input path']['windows']} windows | next-action "
          "accuracy (95 % interval) | MoC | time-to-next MAE |\n| --- | --- | --- | --- |")  # fmt: skip
    for name, r in rows.items():
        lo, hi = r["next_action_hit_rate_ci95"]
        say(f"| {name} | {r['next_action_hit_rate']:.3f} ({lo:.3f}-{hi:.3f}) | {r['moc_horizon']:.3f} | "
              f"{r['time_to_next_mae_s']:.2f} s |")  # fmt: skip
    lo, hi = diff["ci95"]
    say(f"| fast - pre-v2 (paired) | {diff['difference']:+.3f} ({lo:+.3f} to {hi:+.3f}): {diff['verdict']} | | |")
    if args.out:
        write_json_atomic(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
