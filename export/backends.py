"""One inference interface over PyTorch, ONNX Runtime and TensorRT (docs/architecture.md: FrameEncoder + Anticipator).

    backend = load_backend("bundle/", "auto")           # tensorrt > onnxruntime for bundles; pytorch for checkpoints
    tokens = backend.encode(images, depths)             # (N, 3, H, W) f32 normalised, (N, D, h, w) f32 -> (N, 2, C)
    result = backend.anticipate(window, valid)          # (B, T, 2, C) f32, (B, T) bool -> AnticipatorResult
    backend.info()                                      # backend, device / providers actually used, precision, ids

Preprocessing (uint8 camera frames -> float tensors) stays outside, in model.preprocess. Inputs are checked here
once for every backend; a window longer than the positional table raises model.errors.WindowTooLongError.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.bundle import CHECKPOINT, Bundle, load_bundle, model_identity
from export.errors import BackendUnavailableError, BundleError
from export.interface import AnticipatorResult, InferenceBackend
from model.checkpoint import load_checkpoint
from model.r3d import R3D

logger = logging.getLogger(__name__)

BACKENDS = ("pytorch", "onnxruntime", "tensorrt")


class PyTorchBackend(InferenceBackend):
    """Eager PyTorch on CPU or CUDA, fp32 or (CUDA only) fp16."""

    name = "pytorch"

    def __init__(
        self,
        model: R3D,
        *,
        device: str | None = None,
        fp16: bool = False,
        source: str = "",
        ids: tuple[str, str] | None = None,
    ) -> None:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError("pytorch backend: device 'cuda' requested but torch sees no CUDA device")
        if fp16 and dev.type != "cuda":
            raise BackendUnavailableError(f"pytorch backend: fp16 needs a CUDA device, got device {str(dev)!r}")
        if model.frame_encoder.backbone is None:
            raise ValueError("expected an R3D model built with its backbone, got one without (with_backbone=False)")
        self.config = model.cfg
        self.model_id, self.frame_encoder_id = ids or model_identity(model)
        self.device, self.dtype, self.source = dev, torch.float16 if fp16 else torch.float32, source
        self.model = model.eval().to(dev, self.dtype)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | None = None, fp16: bool = False) -> PyTorchBackend:
        model, _ = load_checkpoint(path)
        return cls(model, device=device, fp16=fp16, source=str(path), ids=None)

    @classmethod
    def from_bundle(cls, bundle: Bundle, *, device: str | None = None, fp16: bool = False) -> PyTorchBackend:
        model, _ = load_checkpoint(bundle.file(CHECKPOINT))
        ids = (bundle.model_id, bundle.frame_encoder_id)
        return cls(model, device=device, fp16=fp16, source=str(bundle.path), ids=ids)

    def _in(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(self.device, self.dtype, non_blocking=True)

    @staticmethod
    def _out(x: torch.Tensor) -> np.ndarray:
        return x.float().cpu().numpy()

    @torch.inference_mode()
    def _encode(self, images: np.ndarray, depths: np.ndarray) -> np.ndarray:
        return self._out(self.model.frame_encoder(self._in(images), self._in(depths)))

    @torch.inference_mode()
    def _encode_depth(self, depths: np.ndarray) -> np.ndarray:
        return self._out(self.model.frame_encoder.depth_proj(self._in(depths)))  # the depth branch alone

    @torch.inference_mode()
    def _anticipate(self, tokens: np.ndarray, valid: np.ndarray) -> AnticipatorResult:
        out = self.model.anticipator(self._in(tokens), torch.from_numpy(valid).to(self.device))
        return AnticipatorResult(*(self._out(o) for o in out))

    def info(self) -> dict[str, Any]:
        info = self._base_info() | {
            "device": str(self.device),
            "precision": "fp16" if self.dtype == torch.float16 else "fp32",
            "source": self.source,
            "threads": torch.get_num_threads(),
            "versions": {"torch": torch.__version__, "numpy": np.__version__},
        }
        if self.device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(self.device)
        return info


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _ort_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def tensorrt_unavailable_reason() -> str | None:
    """Why TensorRT engines cannot run here, or None when they can."""
    if not _has("tensorrt"):
        return "tensorrt is not installed"
    from importlib.metadata import PackageNotFoundError, version

    from export.tensorrt_runtime import tensorrt_version_problem

    try:
        problem = tensorrt_version_problem(version("tensorrt"))
    except PackageNotFoundError:  # a tensorrt module without its distribution metadata (e.g. a system install)
        import tensorrt

        problem = tensorrt_version_problem(tensorrt.__version__)
    if problem:
        return problem
    if not torch.cuda.is_available():
        return "no CUDA device"
    return None


def available_backends() -> list[str]:
    """Backends that can run on this machine, best last-resort first: always pytorch."""
    names = ["pytorch"]
    if _has("onnxruntime"):
        names.append("onnxruntime")
    if tensorrt_unavailable_reason() is None:
        names.append("tensorrt")
    return names


def _bundle_has_engines(bundle: Bundle, fp16: bool) -> bool:
    precision = "fp16" if fp16 else "fp32"
    stamp = bundle.engines()
    return any(e.get("precision") == precision for e in stamp.get("engines", {}).values())


def load_backend(
    path: str | Path,
    backend: str = "auto",
    *,
    device: str | None = None,
    fp16: bool = False,
    threads: int | None = None,
) -> InferenceBackend:
    """A checkpoint file (.safetensors: pytorch) or a bundle folder (any backend) -> a ready backend.

    "auto": tensorrt when the bundle has engines of the requested precision and tensorrt + CUDA are present, else
    onnxruntime (CUDA provider when present, else CPU) for fp32 bundles, pytorch for checkpoints and for fp16 (or
    device="cuda" with a CPU-only onnxruntime) without engines. ``threads``: ONNX Runtime's intra-op threads per
    graph (None: its default, every core of the host); the other backends ignore it.
    """
    if backend not in (*BACKENDS, "auto"):
        raise ValueError(f"expected backend one of {[*BACKENDS, 'auto']}, got {backend!r}")
    p = Path(path)
    if p.is_file():
        if backend not in ("pytorch", "auto"):
            raise BackendUnavailableError(
                f"{p} is a checkpoint, which runs on the pytorch backend only; for {backend!r} export a bundle "
                f"first: r3d-export {p} --out BUNDLE"
            )
        backend_obj: InferenceBackend = PyTorchBackend.from_checkpoint(p, device=device, fp16=fp16)
    elif p.is_dir():
        bundle = load_bundle(p)
        if backend == "auto":
            if tensorrt_unavailable_reason() is None and _bundle_has_engines(bundle, fp16):
                backend = "tensorrt"
            elif fp16 or not _has("onnxruntime") or (device or "").startswith("cuda") and not _ort_has_cuda():
                backend = "pytorch"  # fp16, or CUDA asked for, without engines: PyTorch runs them, ORT would not
            else:
                backend = "onnxruntime"
        backend_obj = _from_bundle(bundle, backend, device=device, fp16=fp16, threads=threads)
    else:
        raise BundleError(f"expected a checkpoint .safetensors file or a bundle folder, got {str(p)!r} (not found)")
    logger.info("loaded %s on backend %s (%s)", p.name, backend_obj.name, backend_obj.info().get("device"))
    return backend_obj


def _from_bundle(
    bundle: Bundle, backend: str, *, device: str | None, fp16: bool, threads: int | None
) -> InferenceBackend:
    if backend == "pytorch":
        return PyTorchBackend.from_bundle(bundle, device=device, fp16=fp16)
    if backend == "onnxruntime":
        if fp16:
            raise BackendUnavailableError("onnxruntime backend runs the fp32 graphs; for fp16 use tensorrt or pytorch")
        from export.ort_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend.from_bundle(bundle, device=device, threads=threads)
    reason = tensorrt_unavailable_reason()
    if reason:
        raise BackendUnavailableError(f"tensorrt backend: {reason}")
    from export.tensorrt_runtime import TensorRTBackend

    return TensorRTBackend.from_bundle(bundle, device=device, fp16=fp16)
