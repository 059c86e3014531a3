"""A tiny dataset in the common format and a tiny training recipe, shared by the training/evaluation tests.

Eight sequences of 30 frames at 10 fps, 160x120, three labels in runs; colour and depth both depend on the label
(plus noise), so a few steps of training have something to learn. The real backbone caches its features once per
test session (about 240 frames).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rgbd.dataset import DatasetWriter
from rgbd.frame import Frame
from training.config import TrainConfig, load_config

CLASSES = ["walk", "sit", "drink"]
FPS = 10.0
FRAMES = 30
COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.float32)


def _frames(seq: int, rng: np.random.Generator) -> list[Frame]:
    cuts = np.sort(rng.choice(np.arange(5, FRAMES - 5), size=2, replace=False))
    labels = np.zeros(FRAMES, dtype=int)
    order = rng.permutation(3)
    labels[: cuts[0]], labels[cuts[0] : cuts[1]], labels[cuts[1] :] = order
    frames = []
    for i, lab in enumerate(labels):
        rgb = np.clip(COLOURS[lab] + rng.normal(0, 30, (120, 160, 3)), 0, 255).astype(np.uint8)
        depth = np.full((120, 160), 1000 + 700 * lab, dtype=np.float64) + rng.normal(0, 20, (120, 160))
        depth[:, : 20 + 10 * lab] = 0  # some invalid pixels
        frames.append(
            Frame(rgb, depth.astype(np.uint16), 0.001, i / FPS, index=i, label=CLASSES[lab] if i != 3 else None)
        )
    return frames


def make_tiny_dataset(root: Path, n_sequences: int = 8) -> Path:
    writer = DatasetWriter(root, name="tiny", classes=CLASSES, fps=FPS, source="test")
    rng = np.random.default_rng(0)
    for s in range(n_sequences):
        writer.add_sequence(f"seq{s:02d}", _frames(s, rng), fps=FPS)
    writer.write_splits(seed=0, fractions=(0.5, 0.25, 0.25))
    return root


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One torch thread: as fast for these tiny workloads, and far faster than two spinning OpenMP threads when a
    shared 2-core machine is busy with other work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def shared_tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dataset with its clean feature cache, built once per test session (tests must not modify it);
    each test module wraps it in its own `tiny_dataset` fixture."""
    root = tmp_path_factory.getbasetemp() / "r3d_tiny_dataset"
    if not (root / "splits.json").is_file():
        make_tiny_dataset(root)
        from rgbd.dataset import Dataset
        from training.features import FeatureExtractor, build_cache

        cfg = tiny_config(root, root.parent / "unused")
        extractor = FeatureExtractor.build("efficientnet_lite0", cfg.model.preprocessing(), device="cpu")
        with one_thread():
            build_cache(Dataset(root), extractor, progress=False)
    return root


TINY_RECIPE: dict[str, Any] = {
    "data.protocol": "streaming",
    "data.windows_per_sequence": 3,
    "data.min_observed_s": 0.5,
    "data.val_stride_s": 0.5,
    "model.hidden": 32,
    "model.ffn": 64,
    "model.max_len": 64,
    "model.fps": FPS,
    "model.window_s": 2.0,
    "model.horizon_s": 1.0,
    "model.depth_size": (30, 40),
    "model.image_size": (60, 80),  # a quarter of the backbone's cost; the frames stay 160x120
    "optim.batch_size": 4,
    "optim.epochs": 2,
    "optim.warmup_epochs": 1,
    "run.progress": False,
    "run.device": "cpu",  # bit-exact determinism and resume are promised on CPU
    "run.threads": 1,  # a tiny model: one thread is as fast, and far faster on a busy shared machine
    "run.seed": 1,
}


def tiny_config(dataset: Path, out: Path, **overrides: Any) -> TrainConfig:
    values = {**TINY_RECIPE, "data.dataset": str(dataset), "run.out": str(out), **overrides}
    return load_config(None, values)
