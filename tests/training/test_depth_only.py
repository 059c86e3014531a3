"""Depth-only data end to end on the training side: the format's has_color, the feature cache without colour,
training and evaluation of the depth-only model, and a clear refusal for models that need colour."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from model import R3D, R3DConfig, prepare_inputs
from rgbd.dataset import Dataset, DatasetWriter
from rgbd.frame import Frame, MissingColorError
from tests.training.train_fixtures import CLASSES, FPS, FRAMES, make_tiny_dataset, one_thread, tiny_config
from training.evaluate import evaluate_checkpoint
from training.features import FeatureExtractor, build_cache, cache_dir, load_cache
from training.train import train


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def depth_only_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dataset with its colour removed: the same depth and labels, has_color false."""
    rgbd_root = make_tiny_dataset(tmp_path_factory.mktemp("rgbd") / "tiny")
    source = Dataset(rgbd_root)
    root = tmp_path_factory.mktemp("depth") / "tiny-depth"
    writer = DatasetWriter(root, name="tiny-depth", classes=CLASSES, fps=FPS, source="test")
    for seq in source.sequence_ids:
        frames = (Frame(None, f.depth, f.depth_scale, f.timestamp, f.index, label=f.label) for f in source.frames(seq))
        writer.add_sequence(seq, frames, fps=FPS)
    (root / "splits.json").write_text((rgbd_root / "splits.json").read_text())
    return root


def test_old_meta_without_has_color_reads_as_rgbd_and_a_mixed_sequence_is_refused(tmp_path: Path) -> None:
    root = make_tiny_dataset(tmp_path / "old", n_sequences=1)
    meta_path = root / "sequences" / "seq00" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["has_color"], meta["streams"]
    meta_path.write_text(json.dumps(meta))  # as written before depth-only datasets existed
    ds = Dataset(root)
    assert ds.meta("seq00").has_color and ds.frame("seq00", 0).rgb is not None
    writer = DatasetWriter(tmp_path / "mixed", name="m", classes=CLASSES, fps=FPS, source="test")
    depth = np.ones((4, 4), np.uint16)
    frames = [Frame(np.zeros((4, 4, 3), np.uint8), depth, 0.001, 0.0), Frame(None, depth, 0.001, 0.1, 1)]
    with pytest.raises(ValueError, match="either RGB-D or depth-only throughout"):
        writer.add_sequence("s", frames, fps=FPS)


def test_cache_of_a_depth_only_dataset_holds_depth_and_the_no_colour_features(depth_only_dataset: Path) -> None:
    cfg = tiny_config(depth_only_dataset, depth_only_dataset.parent / "unused")
    pre = cfg.model.preprocessing()
    extractor = FeatureExtractor.build("efficientnet_lite0", pre, device="cpu")
    ds = Dataset(depth_only_dataset)
    folder = build_cache(ds, extractor, seq_ids=["seq00"], progress=False)
    seq = load_cache(folder, ["seq00"])["seq00"]
    assert not seq.has_color and seq.rgb.shape == (FRAMES, 1280) and seq.depth.shape == (FRAMES, 1, 30, 40)
    # the rows are what the server computes for a depth-only frame: the backbone on prepare_inputs' zero image
    image, depth = prepare_inputs(None, ds.frame("seq00", 4).depth, 0.001, pre)
    assert not image.any()
    np.testing.assert_array_equal(seq.rgb[4], extractor.rgb(image[None], depth[None])[0])
    np.testing.assert_array_equal(seq.depth[4], depth.astype(np.float16))
    assert folder == cache_dir(depth_only_dataset, extractor.spec())


def test_a_model_that_uses_colour_refuses_a_depth_only_dataset(depth_only_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingColorError, match="model.fusion 'rtf' needs colour.*depth-only.*fusion: depth"):
        train(tiny_config(depth_only_dataset, tmp_path / "rtf"))


def test_depth_only_model_trains_and_evaluates_on_depth_only_data(depth_only_dataset: Path, tmp_path: Path) -> None:
    overrides = {"model.fusion": "depth", "model.depth_encoder": "conv", "model.depth_input": "metric"}
    result = train(tiny_config(depth_only_dataset, tmp_path / "depth", **overrides))
    assert result.best.is_file() and np.isfinite(result.best_metric)
    metrics = evaluate_checkpoint(result.best, depth_only_dataset, split="test", progress=False, device="cpu")
    assert metrics["sequences"] == len(Dataset(depth_only_dataset).split("test")) and metrics["windows"]
    assert 0.0 <= metrics["streaming"]["current_action_acc"] <= 1.0


def test_depth_only_model_output_does_not_depend_on_the_image() -> None:
    cfg = R3DConfig(
        classes=CLASSES,
        fusion="depth",
        depth_encoder="conv",
        hidden=32,
        ffn=64,
        max_len=16,
        window_s=1.0,
        horizon_s=1.0,
    )
    assert not cfg.uses_color and R3DConfig(classes=CLASSES).uses_color
    model = R3D(cfg, with_backbone=False).eval()
    depth = torch.rand(1, 5, cfg.preprocessing.depth_channels, *cfg.preprocessing.depth_size)
    valid = torch.ones(1, 5, dtype=torch.bool)
    a = model.forward_features(torch.zeros(1, 5, cfg.feature_dim), depth, valid)
    b = model.forward_features(torch.randn(1, 5, cfg.feature_dim), depth, valid)
    torch.testing.assert_close(a.segment_logits, b.segment_logits)
    torch.testing.assert_close(a.action_logits, b.action_logits)
