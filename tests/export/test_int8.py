"""r3d-export int8: a real ONNX Runtime static quantisation of the tiny model's frame encoder, its token parity, and
the rule that serves it by default only once its measured accuracy change is within a point."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export.bundle import FRAME_ENCODER_INT8_ONNX, INT8_REPORT, load_bundle
from export.cli import main
from export.errors import BundleError, ExportError
from export.int8 import INT8_TOLERANCE, camera_inputs, record_int8_accuracy
from export.ort_backend import OnnxRuntimeBackend
from tests.training.train_fixtures import shared_tiny_dataset


@pytest.fixture(scope="module")
def int8_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny bundle plus an int8 frame encoder calibrated on a small dataset in the common format."""
    dataset = shared_tiny_dataset(tmp_path_factory)
    out = tmp_path_factory.mktemp("int8") / "bundle"
    shutil.copytree(tiny_bundle, out)
    assert main(["int8", str(out), "--calibration", str(dataset), "--calibration-frames", "16"]) == 0
    return out


def test_int8_graph_is_qdq_per_channel_and_runs_in_onnx_runtime(int8_bundle: Path) -> None:
    bundle = load_bundle(int8_bundle)  # the manifest lists and hashes the new graph
    assert bundle.has(FRAME_ENCODER_INT8_ONNX)
    graph = onnx.load(str(bundle.file(FRAME_ENCODER_INT8_ONNX))).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    inits = {i.name: i for i in graph.initializer}
    per_channel = [
        n
        for n in graph.node
        if n.op_type == "DequantizeLinear" and len(inits.get(n.input[1], onnx.TensorProto()).dims) == 1
    ]
    assert per_channel, "expected per-channel weight scales"
    images, depths = camera_inputs(bundle.config.preprocessing, 2, seed=3)
    session = ort.InferenceSession(str(bundle.file(FRAME_ENCODER_INT8_ONNX)), providers=["CPUExecutionProvider"])
    (tokens,) = session.run(["tokens"], {"image": images, "depth": depths})
    assert tokens.shape == (2, 2, bundle.config.hidden) and np.isfinite(tokens).all()


def test_int8_parity_report_is_within_tolerance_on_held_out_frames(int8_bundle: Path) -> None:
    report = load_bundle(int8_bundle).parity[INT8_REPORT]
    assert report["passed"] and 0 < report["value"] <= report["tolerance"] == INT8_TOLERANCE
    assert all(0 < c["relative_mean_abs"] <= INT8_TOLERANCE and c["max_abs"]["tokens"] > 0 for c in report["cases"])
    assert {c["inputs"] for c in report["cases"]} >= {"synthetic camera frames (other seed)"}
    assert any("not used for calibration" in c["inputs"] for c in report["cases"])
    assert report["accuracy"] is None and "frames of" in report["calibration"]
    assert report["activations"] == "uint8"  # asymmetric uint8: ONNX Runtime's fast x86 path


def test_int8_is_served_by_default_only_with_a_measured_change_within_one_point(
    int8_bundle: Path, tmp_path: Path
) -> None:
    path = tmp_path / "b"
    shutil.copytree(int8_bundle, path)
    unmeasured = OnnxRuntimeBackend.from_bundle(load_bundle(path), device="cpu")
    assert unmeasured.encoder_precision == "fp32"
    assert not load_bundle(path).int8_status()[0]
    record_int8_accuracy(path, {"fp32": 0.400, "int8": 0.392, "split": "test", "windows": 600})
    bundle = load_bundle(path)
    assert bundle.int8_status()[0]
    served = OnnxRuntimeBackend.from_bundle(bundle, device="cpu")
    assert served.encoder_precision == "int8" and served.info()["frame_encoder_precision"]["precision"] == "int8"
    assert OnnxRuntimeBackend.from_bundle(bundle, device="cpu", int8=False).encoder_precision == "fp32"
    images, depths = camera_inputs(bundle.config.preprocessing, 2, seed=4)
    assert served.encode(images, depths).shape == (2, 2, bundle.config.hidden)
    record_int8_accuracy(path, {"fp32": 0.400, "int8": 0.385})
    ok, why = load_bundle(path).int8_status()
    assert not ok and "1.5 points" in why
    assert OnnxRuntimeBackend.from_bundle(load_bundle(path), device="cpu").encoder_precision == "fp32"


def test_altered_int8_graph_is_refused_and_accuracy_needs_an_int8_bundle(
    int8_bundle: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    path = tmp_path / "b"
    shutil.copytree(int8_bundle, path)
    with open(path / FRAME_ENCODER_INT8_ONNX, "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=FRAME_ENCODER_INT8_ONNX):
        load_bundle(path)
    with pytest.raises(ExportError, match="no int8 frame encoder"):
        record_int8_accuracy(tiny_bundle, {"fp32": 0.4, "int8": 0.4})
