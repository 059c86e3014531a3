"""A depth-only model encodes frames without colour work: encode(None, depths) gives the tokens the whole frame
encoder gives on the all-zero image (what prepare_inputs feeds for a frame without colour), bit for bit, on PyTorch
and ONNX Runtime, and the colour backbone runs once (the blank colour token), not per frame."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from export.backends import PyTorchBackend
from export.bundle import ANTICIPATOR_ONNX, FRAME_ENCODER_ONNX
from export.interface import AnticipatorResult
from export.ort_backend import OnnxRuntimeBackend, depth_branch
from model import R3D
from tests.export.conftest import as_if_trained, tiny_config


@pytest.fixture(scope="module")
def depth_only_model(tiny_model: R3D) -> R3D:
    """A depth-only model with the session's tiny model's frame encoder (FrameEncoder does not depend on the fusion,
    so the tiny bundle's frame encoder graph is this model's too: no second export)."""
    torch.manual_seed(1)
    model = R3D(tiny_config(fusion="depth"))
    model.frame_encoder.load_state_dict(tiny_model.frame_encoder.state_dict())
    return as_if_trained(model)


@pytest.fixture(scope="module")
def depth_only_ort(depth_only_model: R3D, tiny_bundle: Path) -> OnnxRuntimeBackend:
    """ONNX Runtime with the tiny bundle's frame encoder graph under the depth-only config (encode only: its
    anticipator graph is the RGB-D model's)."""
    return OnnxRuntimeBackend(tiny_bundle / FRAME_ENCODER_ONNX, tiny_bundle / ANTICIPATOR_ONNX, depth_only_model.cfg,
                              ids=("depth-only", "depth-only"), device="cpu")  # fmt: skip


def _depths(n: int, seed: int = 0) -> np.ndarray:
    pre = tiny_config().preprocessing
    return np.random.default_rng(seed).random((n, pre.depth_channels, *pre.depth_size), dtype=np.float32)


def _blank_images(n: int) -> np.ndarray:
    return np.zeros((n, 3, *tiny_config().preprocessing.image_size), np.float32)


@pytest.mark.parametrize("n", [1, 3, 8])
def test_depth_only_encode_without_images_gives_the_blank_image_tokens(
    depth_only_model: R3D, depth_only_ort: OnnxRuntimeBackend, n: int
) -> None:
    for backend in (PyTorchBackend(depth_only_model, device="cpu", source="test"), depth_only_ort):
        before = backend.encode(_blank_images(n), _depths(n))  # what the server ran before: the backbone on zeros
        after = backend.encode(None, _depths(n))
        assert after.dtype == np.float32 and after.shape == before.shape == (n, 2, depth_only_model.cfg.hidden)
        assert np.array_equal(after[:, 1], before[:, 1]), backend.name  # depth tokens: bit for bit
        blank = backend.encode(_blank_images(1), _depths(1))[0, 0]
        assert all(np.array_equal(token, blank) for token in after[:, 0])  # the one-image blank token
        # the backbone's own batch-size variation (PyTorch: up to 5e-7 between a batch of 1 and of 3)
        np.testing.assert_allclose(after[:, 0], before[:, 0], rtol=0, atol=1e-5)


def test_depth_only_predictions_before_and_after_are_bit_identical(depth_only_model: R3D) -> None:
    """The depth fusion's outputs do not depend on the colour token, so the Anticipator gives the same bits on the
    window encoded either way."""
    backend = PyTorchBackend(depth_only_model, device="cpu", source="test")
    t = 12
    before = backend.encode(_blank_images(t), _depths(t))[None]
    after = backend.encode(None, _depths(t))[None]
    valid = np.ones((1, t), bool)
    got, expected = backend.anticipate(after, valid), backend.anticipate(before, valid)
    for field in dataclasses.fields(AnticipatorResult):
        assert np.array_equal(getattr(got, field.name), getattr(expected, field.name)), field.name


def test_pytorch_depth_only_encode_runs_the_backbone_once_not_per_frame(depth_only_model: R3D) -> None:
    backend = PyTorchBackend(depth_only_model, device="cpu", source="test")
    backbone = backend.model.frame_encoder.backbone
    assert backbone is not None
    images_seen: list[int] = []
    hook = backbone.register_forward_hook(lambda _m, args, _out: images_seen.append(args[0].shape[0]))
    try:
        for i in range(4):
            backend.encode(None, _depths(5, seed=i))
    finally:
        hook.remove()
    assert images_seen == [1]  # the blank colour token, computed once from one all-zero image


class _CountingSession:
    """An ONNX Runtime session that counts its runs (the real session runs them)."""

    def __init__(self, session: Any) -> None:
        self.session, self.runs = session, 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.runs += 1
        return self.session.run(*args, **kwargs)


def test_onnxruntime_depth_only_encode_runs_only_the_depth_branch_per_frame(
    depth_only_ort: OnnxRuntimeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = depth_only_ort
    assert "depth_branch" in backend.info()["providers"]
    backend.blank_color_token()  # once, at first use (the server's warm-up)
    full, branch = _CountingSession(backend.frame_encoder), _CountingSession(backend.depth_encoder)
    monkeypatch.setattr(backend, "frame_encoder", full)
    monkeypatch.setattr(backend, "depth_encoder", branch)
    for i in range(4):
        backend.encode(None, _depths(5, seed=i))
    assert (full.runs, branch.runs) == (0, 4)


def test_depth_branch_reads_only_the_depth_input_and_holds_no_backbone(tiny_bundle: Path) -> None:
    full = onnx.load(str(tiny_bundle / FRAME_ENCODER_ONNX))
    cut = depth_branch(tiny_bundle / FRAME_ENCODER_ONNX)
    assert cut is not None
    branch = onnx.load_from_string(cut[0])
    assert [i.name for i in branch.graph.input] == ["depth"] and [o.name for o in branch.graph.output] == [cut[1]]
    convs = [sum(n.op_type == "Conv" for n in g.graph.node) for g in (full, branch)]
    assert convs[1] == 0 < convs[0]  # the linear depth encoder: none of EfficientNet's convolutions


def test_encode_without_images_is_refused_for_a_model_that_uses_colour(torch_backend: PyTorchBackend) -> None:
    with pytest.raises(ValueError, match="expected images: model .* uses colour"):
        torch_backend.encode(None, _depths(2))
