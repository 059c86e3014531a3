"""load_backend and the backends' shared contract: choice, info, ids, input checks, window limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import export.ort_backend
from export.backends import (
    AnticipatorResult,
    InferenceBackend,
    PyTorchBackend,
    available_backends,
    load_backend,
)
from export.errors import BackendUnavailableError
from export.ort_backend import OnnxRuntimeBackend
from model import WindowTooLongError


def test_auto_on_a_bundle_picks_onnxruntime_on_the_cpu_provider(tiny_bundle: Path) -> None:
    backend = load_backend(tiny_bundle, "auto")
    info = backend.info()
    assert backend.name == info["backend"] == "onnxruntime"
    assert info["providers"] == {"frame_encoder": ["CPUExecutionProvider"], "anticipator": ["CPUExecutionProvider"]}
    assert info["device"] == "cpu" and info["precision"] == "fp32"


def test_load_backend_onnxruntime_builds_each_session_once_with_the_thread_count(
    tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's start and reload go through here: each graph's session is built once (it used to be built
    twice, once with ONNX Runtime's default pools and again with the server's thread count)."""
    built: list[tuple[str, int | None]] = []
    real_make_session = export.ort_backend.make_session

    def counting_make_session(path: str, providers: list[str], threads: int | None = None) -> ort.InferenceSession:
        built.append((Path(path).name, threads))
        return real_make_session(path, providers, threads)

    monkeypatch.setattr(export.ort_backend, "make_session", counting_make_session)
    backend = load_backend(tiny_bundle, "onnxruntime", device="cpu", threads=1)
    assert isinstance(backend, OnnxRuntimeBackend)
    assert sorted(built) == [("anticipator.onnx", 1), ("frame_encoder.onnx", 1)]
    assert backend.frame_encoder.get_session_options().intra_op_num_threads == 1
    assert backend.anticipator.get_session_options().intra_op_num_threads == 1


def test_onnxruntime_sessions_do_not_spin_between_runs(tiny_bundle: Path) -> None:
    """Spinning intra-op threads burn the cores the server's decode threads need (export/ort_backend.py)."""
    backend = load_backend(tiny_bundle, "onnxruntime", device="cpu", threads=2)
    assert isinstance(backend, OnnxRuntimeBackend)
    for session in (backend.frame_encoder, backend.anticipator):
        assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_auto_on_a_checkpoint_picks_pytorch(tiny_checkpoint: Path) -> None:
    info = load_backend(tiny_checkpoint).info()
    assert (info["backend"], info["device"], info["precision"]) == ("pytorch", "cpu", "fp32")


def test_checkpoint_and_its_bundle_share_model_and_frame_encoder_ids(tiny_checkpoint: Path, tiny_bundle: Path) -> None:
    a, b = load_backend(tiny_checkpoint), load_backend(tiny_bundle, "pytorch")
    assert (a.model_id, a.frame_encoder_id) == (b.model_id, b.frame_encoder_id)
    assert len(a.model_id) == 16 and a.model_id != a.frame_encoder_id


def test_pytorch_backend_on_a_bundle_matches_onnxruntime(tiny_bundle: Path, ort_backend: OnnxRuntimeBackend) -> None:
    backend = load_backend(tiny_bundle, "pytorch", device="cpu")
    tokens = np.abs(np.random.default_rng(0).standard_normal((2, 9, 2, 128), dtype=np.float32))
    valid = np.ones((2, 9), bool)
    valid[1, :4] = False
    ref, got = backend.anticipate(tokens, valid), ort_backend.anticipate(tokens, valid)
    assert isinstance(ref, AnticipatorResult)
    assert ref.action_logits.shape == (2, 8, 4) and ref.segment_logits.shape == (2, 9, 3)
    assert ref.fused.dtype == np.float32
    torch.testing.assert_close(got.action_logits, ref.action_logits, rtol=1e-4, atol=1e-4)


def test_available_backends_lists_what_runs_here() -> None:
    names = available_backends()
    assert names[:2] == ["pytorch", "onnxruntime"]
    assert ("tensorrt" in names) == (torch.cuda.is_available() and _has_tensorrt())


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("which", ["torch_backend", "ort_backend"])
def test_window_longer_than_the_positional_table_raises(which: str, request: pytest.FixtureRequest) -> None:
    backend: InferenceBackend = request.getfixturevalue(which)
    tokens = np.zeros((1, 65, 2, 128), np.float32)
    with pytest.raises(WindowTooLongError, match="65 frames exceeds the positional table \\(64\\)"):
        backend.anticipate(tokens, np.ones((1, 65), bool))


@pytest.mark.parametrize("which", ["torch_backend", "ort_backend"])
def test_encode_returns_two_tokens_per_frame_and_handles_empty_batches(
    which: str, request: pytest.FixtureRequest
) -> None:
    backend: InferenceBackend = request.getfixturevalue(which)
    tokens = backend.encode(np.zeros((2, 3, 120, 160), np.float32), np.zeros((2, 1, 24, 32), np.float32))
    empty = backend.encode(np.zeros((0, 3, 120, 160), np.float32), np.zeros((0, 1, 24, 32), np.float32))
    assert (tokens.shape, tokens.dtype, empty.shape) == ((2, 2, 128), np.float32, (0, 2, 128))


@pytest.mark.parametrize(
    ("images", "depths", "message"),
    [
        (np.zeros((1, 3, 120, 160), np.uint8), np.zeros((1, 1, 24, 32), np.float32),
         r"expected images as a float32 array of shape \(\*, 3, 120, 160\), got uint8 \(1, 3, 120, 160\)"),
        (np.zeros((1, 3, 240, 320), np.float32), np.zeros((1, 1, 24, 32), np.float32),
         r"expected images float32 \(\*, 3, 120, 160\), got float32 \(1, 3, 240, 320\)"),
        (np.zeros((2, 3, 120, 160), np.float32), np.zeros((1, 1, 24, 32), np.float32),
         r"expected depths float32 \(2, 1, 24, 32\), got float32 \(1, 1, 24, 32\)"),
    ],
)  # fmt: skip
def test_encode_rejects_bad_inputs_with_expected_and_got(
    ort_backend: OnnxRuntimeBackend, images: np.ndarray, depths: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ort_backend.encode(images, depths)


def test_anticipate_rejects_a_window_without_valid_frames(ort_backend: OnnxRuntimeBackend) -> None:
    valid = np.ones((2, 4), bool)
    valid[1] = False
    with pytest.raises(ValueError, match=r"at least one valid frame per window, rows \[1\] have none"):
        ort_backend.anticipate(np.zeros((2, 4, 2, 128), np.float32), valid)


def test_anticipate_rejects_a_non_bool_mask(ort_backend: OnnxRuntimeBackend) -> None:
    with pytest.raises(ValueError, match=r"expected valid as bool \(1, 4\), got int64 \(1, 4\)"):
        ort_backend.anticipate(np.zeros((1, 4, 2, 128), np.float32), np.ones((1, 4), np.int64))


def test_checkpoint_on_onnxruntime_is_refused_with_the_export_command(tiny_checkpoint: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="runs on the pytorch backend only.*r3d-export"):
        load_backend(tiny_checkpoint, "onnxruntime")


def test_fp16_without_cuda_is_refused(tiny_checkpoint: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: fp16 runs")
    with pytest.raises(BackendUnavailableError, match="fp16 needs a CUDA device"):
        load_backend(tiny_checkpoint, fp16=True)


def test_onnxruntime_cuda_without_the_cuda_provider_is_refused(tiny_bundle: Path) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(BackendUnavailableError, match="device 'cuda' needs CUDAExecutionProvider"):
        load_backend(tiny_bundle, "onnxruntime", device="cuda")


def test_unknown_backend_name_is_refused(tiny_bundle: Path) -> None:
    with pytest.raises(ValueError, match=r"expected backend one of \['pytorch', 'onnxruntime', 'tensorrt', 'auto'\]"):
        load_backend(tiny_bundle, "openvino")


def test_pytorch_backend_cpu_info_names_device_and_versions(torch_backend: PyTorchBackend) -> None:
    info = torch_backend.info()
    assert info["versions"]["torch"] == torch.__version__
    assert info["classes"] == ["walk", "sit", "drink"] and info["max_len"] == 64
