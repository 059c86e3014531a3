"""TensorRT engines: built, stamped and checked where tensorrt and CUDA exist; refused with the reason elsewhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from export.backends import load_backend, tensorrt_unavailable_reason
from export.bundle import load_bundle
from export.cli import main
from export.errors import BackendUnavailableError, ExportError
from export.tensorrt_build import build_engines, engine_sources, fp16_graph, profiles
from export.tensorrt_runtime import tensorrt_version_problem
from tests.export.conftest import tiny_config

REASON = tensorrt_unavailable_reason()
needs_tensorrt = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def test_profiles_take_min_opt_max_from_the_config() -> None:
    shapes = profiles(tiny_config(), encoder_batch=32, anticipator_batch=4)
    assert shapes["frame_encoder"]["image"] == [(1, 3, 120, 160), (8, 3, 120, 160), (32, 3, 120, 160)]
    assert shapes["frame_encoder"]["depth"] == [(1, 1, 24, 32), (8, 1, 24, 32), (32, 1, 24, 32)]
    assert shapes["anticipator"]["tokens"] == [(1, 1, 2, 128), (1, 30, 2, 128), (4, 64, 2, 128)]  # window 2 s x 15 fps
    assert shapes["anticipator"]["valid"] == [(1, 1), (1, 30), (4, 64)]


@pytest.mark.skipif(REASON is None, reason="tensorrt and CUDA are present")
def test_tensorrt_command_is_refused_with_the_missing_piece(
    tiny_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tensorrt", str(tiny_bundle)]) == 1
    assert f"cannot build TensorRT engines: {REASON}" in capsys.readouterr().err
    with pytest.raises(BackendUnavailableError, match=f"tensorrt backend: {REASON}"):
        load_backend(tiny_bundle, "tensorrt")


@pytest.fixture(scope="module")
def engine_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("trt") / "bundle"))
    build_engines(folder, precisions=("fp16", "fp32"), encoder_batch=8, anticipator_batch=4)
    return folder


@needs_tensorrt
def test_engines_are_stamped_and_listed_in_the_manifest(engine_bundle: Path) -> None:
    import tensorrt as trt

    bundle = load_bundle(engine_bundle)
    stamp = bundle.engines()
    assert stamp["tensorrt"] == trt.__version__ and stamp["gpu"]["name"]
    expected = {f"{g}.{p}.engine" for g in ("frame_encoder", "anticipator") for p in ("fp16", "fp32")}
    assert set(stamp["engines"]) == expected
    for name, entry in stamp["engines"].items():
        assert bundle.has(f"engines/{name}")
        assert entry["onnx_sha256"] == bundle.manifest["files"][entry["onnx"]]["sha256"]
    assert bundle.has("engines/timing.cache")


@needs_tensorrt
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_engine_parity_against_onnxruntime_passed(engine_bundle: Path, precision: str) -> None:
    report = json.loads((engine_bundle / "parity.json").read_text())[f"tensorrt_{precision}"]
    assert report["passed"] and report["max_abs"] <= report["tolerance"]


@needs_tensorrt
def test_auto_picks_tensorrt_and_chunks_batches_beyond_the_profile(engine_bundle: Path) -> None:
    backend = load_backend(engine_bundle, "auto")
    ort_backend = load_backend(engine_bundle, "onnxruntime", device="cpu")
    images = np.random.default_rng(0).standard_normal((11, 3, 120, 160), dtype=np.float32)  # profile max is 8
    depths = np.random.default_rng(1).random((11, 1, 24, 32), dtype=np.float32)
    assert backend.info()["backend"] == "tensorrt" and backend.info()["precision"] == "fp32"
    np.testing.assert_allclose(backend.encode(images, depths), ort_backend.encode(images, depths), atol=1e-3)


@pytest.mark.parametrize(("version", "problem"), [("10.13.3.9", None), ("11.4.0", None), ("9.2.0", "10.x, 11.x"),
                                                  ("12.0.1", "10.x, 11.x"), ("unknown", "cannot read")])  # fmt: skip
def test_version_check_names_the_supported_versions(version: str, problem: str | None) -> None:
    found = tensorrt_version_problem(version)
    assert found is None if problem is None else (problem in found and version in found)  # type: ignore[operator]


def test_int8_engines_need_the_bundles_qdq_frame_encoder(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    assert engine_sources(bundle, "fp16") == {"frame_encoder": ("frame_encoder.onnx", "fp16"),
                                              "anticipator": ("anticipator.onnx", "fp16")}  # fmt: skip
    with pytest.raises(ExportError, match="r3d-export int8"):
        engine_sources(bundle, "int8")


def test_int8_engines_need_symmetric_activations(tmp_path: Path, tiny_bundle: Path) -> None:
    """ONNX Runtime's fast CPU graph has uint8 activations; TensorRT's Q/DQ needs symmetric int8 ones."""
    from export.int8 import add_int8

    folder = Path(shutil.copytree(tiny_bundle, tmp_path / "b"))
    bundle = add_int8(folder, calibration_frames=8, parity_frames=8)
    assert bundle.parity["frame_encoder_int8"]["activations"] == "uint8"
    with pytest.raises(ExportError, match="--int8-activations int8"):
        engine_sources(bundle, "int8")
    bundle = add_int8(folder, calibration_frames=8, parity_frames=8, activations="int8")
    assert engine_sources(bundle, "int8")["frame_encoder"] == ("frame_encoder.int8.onnx", "int8")


@pytest.mark.parametrize("graph", ["frame_encoder", "anticipator"])
def test_fp16_graph_keeps_float32_io_and_matches_fp32_in_onnx_runtime(
    tiny_bundle: Path, tmp_path: Path, graph: str
) -> None:
    """The graph TensorRT 11 builds fp16 engines from: weights in fp16, I/O float32, within the fp16 tolerance."""
    pytest.importorskip("onnxconverter_common", reason="onnxconverter-common (the [tensorrt] extra) is not installed")
    import onnx
    import onnxruntime as ort

    from export.int8 import camera_inputs
    from export.parity import FP16_TOLERANCE

    bundle = load_bundle(tiny_bundle)
    fp16_graph(bundle.file(f"{graph}.onnx"), tmp_path / "half.onnx")
    half = onnx.load(str(tmp_path / "half.onnx"))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in half.graph.initializer)
    assert {v.type.tensor_type.elem_type for v in half.graph.output} == {onnx.TensorProto.FLOAT}
    cfg = bundle.config
    if graph == "frame_encoder":
        images, depths = camera_inputs(cfg.preprocessing, 3, seed=2)
        feed = {"image": images, "depth": depths}
    else:
        rng = np.random.default_rng(0)
        feed = {"tokens": np.maximum(rng.standard_normal((2, 30, 2, cfg.hidden), dtype=np.float32), 0),
                "valid": np.ones((2, 30), bool)}  # fmt: skip
    cpu = ["CPUExecutionProvider"]
    ref = ort.InferenceSession(str(bundle.file(f"{graph}.onnx")), providers=cpu).run(None, feed)
    got = ort.InferenceSession(str(tmp_path / "half.onnx"), providers=cpu).run(None, feed)
    for r, g in zip(ref, got, strict=True):
        assert g.dtype == np.float32 and float(np.abs(r - g).max()) <= FP16_TOLERANCE
