"""Next-action accuracy of a bundle's fp32 and int8 frame encoders on the same windows of a test split; records the
result in the bundle's parity report (export.int8.record_int8_accuracy), which decides whether the server uses int8.

Glue between `training` (evaluation windows and metrics) and `export` (the bundle), which may not import each other.
Every frame goes through model.prepare_inputs (the served input path), then through each ONNX frame encoder; both
token streams go through the same PyTorch anticipator (the bundle's checkpoint) and training.evaluate's streaming
evaluation (tokens are held in float16 between the two, as cached features are; that rounding, ~5e-4 relative, is
far below the int8 error).

    python scripts/int8_accuracy.py BUNDLE DATASET [--split test] [--limit N] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from tqdm import tqdm

from export.bundle import CHECKPOINT, FRAME_ENCODER_INT8_ONNX, FRAME_ENCODER_ONNX, load_bundle
from export.int8 import record_int8_accuracy
from model import prepare_inputs
from model.r3d import AnticipatorOutput
from rgbd.dataset import Dataset, read_depth
from training.baselines import bootstrap_ci, paired_difference
from training.evaluate import evaluate_streaming, evaluation_split, load_for_eval, protocol_spec
from training.features import SequenceFeatures


class TokenModel(torch.nn.Module):
    """The anticipator fed with precomputed tokens through evaluate_streaming's feature slot ((T, 2C) per frame)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.cfg, self.anticipator = model.cfg, model.anticipator

    def forward_features(self, features: torch.Tensor, depths: torch.Tensor, valid: torch.Tensor) -> AnticipatorOutput:
        b, t = valid.shape
        return self.anticipator(features.float().view(b, t, 2, -1), valid)


def token_sequences(dataset: Dataset, ids: list[str], sessions: dict[str, ort.InferenceSession], pre: Any) -> dict:
    out: dict[str, dict[str, SequenceFeatures]] = {name: {} for name in sessions}
    index = {c: i for i, c in enumerate(dataset.classes)}
    for seq_id in tqdm(ids, desc="sequences"):
        meta = dataset.meta(seq_id)
        times, labels = dataset.labels(seq_id)
        locator = pre.locator()
        inputs = [prepare_inputs(rgb.read_bytes() if rgb else None, read_depth(dep), meta.depth_scale, pre, locator)
                  for rgb, dep in (dataset.frame_files(seq_id, i, meta) for i in range(meta.num_frames))]  # fmt: skip
        images, depths = np.stack([i for i, _ in inputs]), np.stack([d for _, d in inputs])
        ints = np.array([-1 if lab is None else index[lab] for lab in labels], dtype=np.int64)
        for name, session in sessions.items():
            chunks = [session.run(["tokens"], {"image": images[s : s + 16], "depth": depths[s : s + 16]})[0]
                      for s in range(0, len(images), 16)]  # fmt: skip
            tokens = np.concatenate(chunks)
            flat = tokens.reshape(len(tokens), -1).astype(np.float16)
            no_depth = np.zeros((len(tokens), 1, 1, 1), np.float16)  # the tokens already hold depth
            out[name][seq_id] = SequenceFeatures(seq_id, flat, no_depth, ints, np.asarray(times, dtype=np.float64))
    return out


def say(text: str) -> None:
    sys.stdout.write(text + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("dataset", type=Path)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="only the first N sequences of the split (time budget)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dry-run", action="store_true", help="print, do not record in the bundle")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    bundle = load_bundle(args.bundle)
    model, cfg, _ = load_for_eval(bundle.file(CHECKPOINT))
    model.eval()
    dataset = Dataset(args.dataset)
    if dataset.classes != model.cfg.classes:
        sys.stderr.write(f"classes differ: model {model.cfg.classes}, dataset {dataset.classes}\n")
        return 2
    ids = evaluation_split(dataset, args.split)[: args.limit]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sessions = {name: ort.InferenceSession(str(bundle.file(f)), opts, providers=["CPUExecutionProvider"])
                for name, f in (("fp32", FRAME_ENCODER_ONNX), ("int8", FRAME_ENCODER_INT8_ONNX))}  # fmt: skip
    data = token_sequences(dataset, ids, sessions, model.cfg.preprocessing)
    spec = protocol_spec(cfg, model.cfg, "streaming")
    token_model = TokenModel(model)
    hits, results, seqs = {}, {}, []
    for name, seqdata in data.items():
        records: list[dict[str, Any]] = []
        results[name] = evaluate_streaming(token_model, seqdata, spec, records=records)  # type: ignore[arg-type]
        seqs = [r["seq"] for r in records]
        hits[name] = np.asarray([r["hit"] for r in records], dtype=np.float64)
    accuracy = {
        "fp32": float(hits["fp32"].mean()),
        "int8": float(hits["int8"].mean()),
        "fp32_ci95": bootstrap_ci(seqs, hits["fp32"]),
        "int8_ci95": bootstrap_ci(seqs, hits["int8"]),
        "int8_minus_fp32_paired": paired_difference(seqs, hits["int8"], hits["fp32"]),
        "metric": "next-action accuracy (streaming windows, training.evaluate), 95 % intervals over sequences",
        "dataset": args.dataset.name,
        "split": args.split,
        "sequences": len(ids),
        "windows": len(seqs),
        "moc_horizon": {name: r["moc_horizon"] for name, r in results.items()},
    }
    say(json.dumps(accuracy, indent=2))
    if not args.dry_run:
        bundle = record_int8_accuracy(args.bundle, accuracy)
        say("int8 served by default: {} ({})".format(*bundle.int8_status()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
