"""How much would the current-action head gain from frames after the one it names? The served prediction is the
segment head at a window's last frame (nothing after it); the same frame is scored again in the window that ends
``--later`` frames after it, on the same windows, by how long the true action had lasted at that frame (the first
half second of an action against the rest). The measurement behind models/default/README.md's "Where it stands":
it bounds what a causal recipe or a smoothing delay could buy.

    python scripts/current_action_lookahead.py models/default/model.safetensors data/synth --split val --out FILE.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import R3D
from rgbd.dataset import Dataset
from rgbd.files import write_json_atomic
from training.baselines import bootstrap_ci, paired_difference, window_facts
from training.evaluate import ONSET_BINS_S, evaluation_split, iterate_outputs, load_for_eval, protocol_spec
from training.features import SequenceFeatures, ensure_features
from training.paths import recorded_path
from training.sampler import ProtocolSpec, Window, evaluation_windows, streaming_window, timeline

ONSET_S = ONSET_BINS_S[0]  # "the first half second of an action", r3d-eval's first current_action_acc_by_onset bin


def segment_predictions(
    model: R3D, data: dict[str, SequenceFeatures], windows: list[Window], spec: ProtocolSpec, back: int
) -> np.ndarray:
    """The current-action argmax at the frame ``back`` frames before each window's last one."""
    out: list[int] = []
    for ws, logits, batch in iterate_outputs(model, data, windows, spec):
        at = batch["valid"].sum(dim=1) - 1 - back
        out += logits.segment_logits[torch.arange(len(ws)), at].argmax(-1).tolist()
    return np.asarray(out)


def measure(checkpoint: Path, root: Path, split: str, later: int) -> dict[str, Any]:
    model, cfg, _ = load_for_eval(checkpoint)
    dataset = Dataset(root)
    ids = evaluation_split(dataset, split)
    _, data = ensure_features(
        dataset, model.cfg.backbone, model.cfg.preprocessing, ids,
        expected_sha256=model.cfg.backbone_weights_sha256 or None, device="cpu",
    )  # fmt: skip
    spec = protocol_spec(cfg, model.cfg, "streaming")
    served, extended = [], []
    for w in evaluation_windows(data, spec):  # the windows r3d-eval scores, those with `later` frames after them
        idx = timeline(data[w.seq], spec)
        if w.position + later <= len(idx):
            served.append(w)
            extended.append(streaming_window(data[w.seq], spec, idx, w.position + later))
    at_end = segment_predictions(model, data, served, spec, 0)
    with_later = segment_predictions(model, data, extended, spec, later)
    facts = [window_facts(data[w.seq], w, model.cfg.none_index) for w in served]
    truth = np.asarray([f.current for f in facts])
    early = np.asarray([f.current_for_s < ONSET_S for f in facts])
    seqs = np.asarray([w.seq for w in served])
    groups: dict[str, Any] = {}
    for name, keep in (("all", np.ones_like(early)), (f"first {ONSET_S:g} s", early), ("later", ~early)):
        a, b = (at_end == truth)[keep].astype(float), (with_later == truth)[keep].astype(float)
        groups[name] = {
            "windows": int(keep.sum()),
            "served": {"accuracy": float(a.mean()), "ci95": bootstrap_ci(list(seqs[keep]), a)},
            "with_later_frames": {"accuracy": float(b.mean()), "ci95": bootstrap_ci(list(seqs[keep]), b)},
            "later_minus_served": paired_difference(list(seqs[keep]), b, a),
        }
    return {"checkpoint": recorded_path(checkpoint), "split": split, "later_frames": later,
            "later_s": later / spec.fps, "groups": groups}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("dataset", type=Path)
    p.add_argument("--split", default="val", help="default: val (test stays for the model card's figures)")
    p.add_argument("--later", type=int, default=8, help="frames after the scored one (default 8: 0.53 s at 15 fps)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="write the result as JSON here")
    args = p.parse_args(argv)
    if args.later < 1:
        p.error(f"--later: expected at least 1 frame, got {args.later}")
    torch.set_num_threads(args.threads)
    result = measure(args.checkpoint, args.dataset, args.split, args.later)
    if args.out:
        write_json_atomic(args.out, result)
    for name, g in result["groups"].items():
        served, later = g["served"], g["with_later_frames"]
        sys.stdout.write(
            f"{name}: {g['windows']} windows; served {served['accuracy']:.1%} "
            f"[{served['ci95'][0]:.1%}, {served['ci95'][1]:.1%}], with {result['later_s']:.2f} s after it "
            f"{later['accuracy']:.1%}; difference {g['later_minus_served']['difference']:+.1%} "
            f"[{g['later_minus_served']['ci95'][0]:+.1%}, {g['later_minus_served']['ci95'][1]:+.1%}]\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
