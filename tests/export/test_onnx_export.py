"""ONNX export: checker, dynamic shapes, constants, and ONNX Runtime parity with PyTorch eager."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.backends import PyTorchBackend
from export.bundle import ANTICIPATOR_ONNX, FRAME_ENCODER_ONNX, REQUIRED, load_bundle
from export.errors import ExportError, ParityError
from export.onnx_export import check_onnx, export_anticipator, export_bundle
from export.ort_backend import OnnxRuntimeBackend
from export.parity import raise_on_failure, run_parity, synthetic_camera_frames
from model import FUSIONS, R3D
from tests.export.conftest import as_if_trained, kinect_frames, tiny_config
from tests.real_fixtures import real_fixture


def _window(b: int, t: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = np.maximum(rng.standard_normal((b, t, 2, c), dtype=np.float32), 0)
    valid = rng.random((b, t)) < 0.7
    valid[:, -1] = True
    return tokens, valid


def test_export_cli_writes_every_bundle_file_and_passing_parity(tiny_bundle: Path) -> None:
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    parity = json.loads((tiny_bundle / "parity.json").read_text())["onnxruntime"]

    assert set(REQUIRED) <= set(manifest["files"])
    assert parity["passed"] is True
    assert parity["max_abs"] <= parity["tolerance"] == 1e-4
    assert parity["T"] == [1, 7, 30, 64]
    assert {(c["graph"], c["inputs"]) for c in parity["cases"]} == {
        ("frame_encoder", "random"), ("frame_encoder", "camera"), ("anticipator", "random"), ("anticipator", "camera")
    }  # fmt: skip
    expected_camera = "kinect.npz" if kinect_frames() is not None else "synthetic camera frames"
    assert parity["camera_inputs"].endswith(expected_camera)


@pytest.mark.parametrize("name", [FRAME_ENCODER_ONNX, ANTICIPATOR_ONNX])
def test_onnx_checker_passes_on_exported_graph(tiny_bundle: Path, name: str) -> None:
    check_onnx(tiny_bundle / name)  # raises ExportError otherwise
    onnx.checker.check_model(str(tiny_bundle / name), full_check=True)


def test_onnx_checker_failure_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ExportError, match="broken.onnx fails the ONNX checker"):
        check_onnx(bad)


def test_graphs_have_dynamic_batch_and_window_length(tiny_bundle: Path) -> None:
    fe = ort.InferenceSession(str(tiny_bundle / FRAME_ENCODER_ONNX), providers=["CPUExecutionProvider"])
    ant = ort.InferenceSession(str(tiny_bundle / ANTICIPATOR_ONNX), providers=["CPUExecutionProvider"])
    shapes = {i.name: i.shape for i in fe.get_inputs()} | {i.name: (i.shape, i.type) for i in ant.get_inputs()}

    assert shapes["image"] == ["N", 3, 120, 160]
    assert shapes["depth"] == ["N", 1, 24, 32]
    assert shapes["tokens"] == (["B", "T", 2, 128], "tensor(float)")
    assert shapes["valid"] == (["B", "T"], "tensor(bool)")


def test_gamma_selection_channels_are_graph_constants_not_topk(tiny_bundle: Path) -> None:
    graph = onnx.load(str(tiny_bundle / ANTICIPATOR_ONNX)).graph
    ops = {n.op_type for n in graph.node}
    assert "TopK" not in ops
    assert "If" not in ops and "Loop" not in ops  # the window-length check left no branch in the graph


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("t", [1, 7, 64])
def test_anticipator_onnxruntime_matches_pytorch(
    torch_backend: PyTorchBackend, ort_backend: OnnxRuntimeBackend, t: int, batch: int
) -> None:
    tokens, valid = _window(batch, t, 128, seed=t * 10 + batch)
    ref, got = torch_backend.anticipate(tokens, valid), ort_backend.anticipate(tokens, valid)
    for name in ("action_logits", "duration_logits", "segment_logits", "fused"):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize("batch", [1, 3])
def test_frame_encoder_onnxruntime_matches_pytorch(
    torch_backend: PyTorchBackend, ort_backend: OnnxRuntimeBackend, batch: int
) -> None:
    rng = np.random.default_rng(batch)
    images = rng.standard_normal((batch, 3, 120, 160), dtype=np.float32)
    depths = rng.random((batch, 1, 24, 32), dtype=np.float32)
    torch.testing.assert_close(ort_backend.encode(images, depths), torch_backend.encode(images, depths),
                               rtol=1e-4, atol=1e-4)  # fmt: skip


def test_parity_on_real_kinect_frames(torch_backend: PyTorchBackend, ort_backend: OnnxRuntimeBackend) -> None:
    frames = kinect_frames()
    if frames is None:
        real_fixture("azure_kinect/recording.mkv")  # absent: skips, naming R3D_SHARED_DIR
    assert frames is not None
    report = run_parity(torch_backend, ort_backend, torch_backend.config, ts=(30,), batches=(2,), frames=frames)
    assert report["passed"], report["cases"]


def test_parity_beyond_tolerance_raises_naming_the_cases(
    torch_backend: PyTorchBackend, ort_backend: OnnxRuntimeBackend
) -> None:
    frames = synthetic_camera_frames(1, 120, 160)
    report = run_parity(torch_backend, ort_backend, torch_backend.config, ts=(1,), batches=(1,), frames=frames,
                        tolerance=0.0)  # fmt: skip
    assert report["passed"] is False
    with pytest.raises(ParityError, match=r"beyond the tolerance 0 .*frame_encoder random batch=1"):
        raise_on_failure(report)


def test_export_refuses_a_non_empty_out_folder(tiny_model: R3D, tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("keep me")
    with pytest.raises(ExportError, match="exists and is not empty.*--force"):
        export_bundle(tiny_model, tmp_path)
    assert (tmp_path / "old.txt").read_text() == "keep me"


def test_load_bundle_after_export_has_the_checkpoint_ids(tiny_bundle: Path, torch_backend: PyTorchBackend) -> None:
    bundle = load_bundle(tiny_bundle)
    assert (bundle.model_id, bundle.frame_encoder_id) == (torch_backend.model_id, torch_backend.frame_encoder_id)


VARIANTS = [(fusion, "gamma") for fusion in FUSIONS if fusion != "rtf"] + [("rtf", "variance")]


def _small_anticipator_matches_in_onnxruntime(tmp_path: Path, **overrides: object) -> Path:
    """Export a small anticipator (hidden 32, windows up to 16 frames) and compare ONNX Runtime with PyTorch on
    windows of 1, 7 and 16 frames with random padding; returns the exported file."""
    torch.manual_seed(1)
    cfg = tiny_config(hidden=32, heads=4, ffn=64, max_len=16, window_s=1.0, **overrides)
    model = as_if_trained(R3D(cfg, with_backbone=False))
    path = export_anticipator(model, tmp_path / "anticipator.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b, t in [(1, 1), (3, 7), (2, 16)]:  # T=1: every variance ties at 0, ties go to the lower channel everywhere
        tokens, valid = _window(b, t, 32, seed=b + t)
        with torch.no_grad():
            ref = model.anticipator(torch.from_numpy(tokens), torch.from_numpy(valid))
        got = session.run(None, {"tokens": tokens, "valid": valid})
        for name, r, g in zip(ref._fields, ref, got, strict=True):
            torch.testing.assert_close(torch.from_numpy(g), r, rtol=1e-4, atol=1e-4, msg=name)
    return path


@pytest.mark.parametrize(("fusion", "selection"), VARIANTS, ids=[f"{f}-{s}" for f, s in VARIANTS])
def test_fusion_variant_anticipator_onnxruntime_matches_pytorch(tmp_path: Path, fusion: str, selection: str) -> None:
    # a small anticipator per variant (the fuser is what differs); the full RTF model is the session bundle
    path = _small_anticipator_matches_in_onnxruntime(
        tmp_path, fusion=fusion, selection=selection, temporal_encoder=False
    )
    assert "TopK" not in {n.op_type for n in onnx.load(str(path)).graph.node}


def test_causal_encoder_anticipator_onnxruntime_matches_pytorch(tmp_path: Path) -> None:
    # the causal mask is built from `valid` inside the graph: every window length and padding pattern
    _small_anticipator_matches_in_onnxruntime(tmp_path, causal_encoder=True)
