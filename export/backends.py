"""One inference interface over PyTorch, ONNX Runtime and TensorRT (DESIGN.md: FrameEncoder + Anticipator).

    backend = load_backend("bundle/", "auto")           # tensorrt > onnxruntime for bundles; pytorch for checkpoints
    tokens = backend.encode(images, depths)             # (N, 3, H, W) f32 normalised, (N, 1, h, w) f32 -> (N, 2, C)
    result = backend.anticipate(window, valid)          # (B, T, 2, C) f32, (B, T) bool -> AnticipatorResult
    backend.info()                                      # backend, device / providers actually used, precision, ids

Preprocessing (uint8 camera frames -> float tensors) stays outside, in model.preprocess. Inputs are checked here
once for every backend; a window longer than the positional table raises model.errors.WindowTooLongError.
"""

from __future__ import annotations

import importlib.util
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.bundle import CHECKPOINT, Bundle, load_bundle, model_identity
from export.errors import BackendUnavailableError, BundleError
from model.checkpoint import load_checkpoint
from model.errors import WindowTooLongError
from model.r3d import R3D, R3DConfig

logger = logging.getLogger(__name__)

BACKENDS = ("pytorch", "onnxruntime", "tensorrt")


@dataclass(frozen=True)
class AnticipatorResult:
    """The Anticipator's outputs as float32 numpy arrays."""

    action_logits: np.ndarray  # (B, Q, K+1), NONE last
    duration_logits: np.ndarray  # (B, Q)
    segment_logits: np.ndarray  # (B, T, K)
    fused: np.ndarray  # (B, T, C)


def _float_array(x: np.ndarray, name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """Check rank, fixed dims and a floating dtype; returns a C-contiguous float32 array."""
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"expected {name} as a float32 array of shape {_fmt(shape)}, got {got}")
    if x.ndim != len(shape) or any(s is not None and s != g for s, g in zip(shape, x.shape, strict=False)):
        raise ValueError(f"expected {name} float32 {_fmt(shape)}, got {x.dtype} {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _fmt(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"


class InferenceBackend(ABC):
    """FrameEncoder and Anticipator of one model on one runtime."""

    name: str
    config: R3DConfig
    model_id: str
    frame_encoder_id: str

    def encode(self, images: np.ndarray, depths: np.ndarray) -> np.ndarray:
        """Normalised images (N, 3, H, W) and depth maps (N, 1, h, w) in [0, 1] -> tokens (N, 2, C) float32."""
        pre = self.config.preprocessing
        images = _float_array(images, "images", (None, 3, *pre.image_size))
        depths = _float_array(depths, "depths", (images.shape[0], 1, *pre.depth_size))
        if images.shape[0] == 0:
            return np.zeros((0, 2, self.config.hidden), np.float32)
        return self._encode(images, depths)

    def anticipate(self, tokens: np.ndarray, valid: np.ndarray) -> AnticipatorResult:
        """Token windows (B, T, 2, C) and valid (B, T) bool, at least one True per row -> AnticipatorResult."""
        tokens = _float_array(tokens, "tokens", (None, None, 2, self.config.hidden))
        b, t = tokens.shape[:2]
        if t > self.config.max_len:
            raise WindowTooLongError(f"token window of {t} frames exceeds the positional table ({self.config.max_len})")
        if not isinstance(valid, np.ndarray) or valid.dtype != np.bool_ or valid.shape != (b, t):
            got = f"{valid.dtype} {valid.shape}" if isinstance(valid, np.ndarray) else type(valid).__name__
            raise ValueError(f"expected valid as bool ({b}, {t}), got {got}")
        if b == 0 or t == 0:
            raise ValueError(f"expected at least one window of at least one frame, got tokens {tokens.shape}")
        empty = np.flatnonzero(~valid.any(axis=1))
        if empty.size:
            raise ValueError(f"expected at least one valid frame per window, rows {empty.tolist()} have none")
        return self._anticipate(tokens, np.ascontiguousarray(valid))

    @abstractmethod
    def _encode(self, images: np.ndarray, depths: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _anticipate(self, tokens: np.ndarray, valid: np.ndarray) -> AnticipatorResult: ...

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Backend name, device or providers actually used, precision, model ids and library versions."""

    def _base_info(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model_id": self.model_id,
            "frame_encoder_id": self.frame_encoder_id,
            "classes": list(self.config.classes),
            "max_len": self.config.max_len,
            "fps": self.config.fps,
        }


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
    path: str | Path, backend: str = "auto", *, device: str | None = None, fp16: bool = False
) -> InferenceBackend:
    """A checkpoint file (.safetensors: pytorch) or a bundle folder (any backend) -> a ready backend.

    "auto": tensorrt when the bundle has engines of the requested precision and tensorrt + CUDA are present, else
    onnxruntime (CUDA provider when present, else CPU) for fp32 bundles, pytorch for checkpoints and for fp16 (or
    device="cuda" with a CPU-only onnxruntime) without engines.
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
        backend_obj = _from_bundle(bundle, backend, device=device, fp16=fp16)
    else:
        raise BundleError(f"expected a checkpoint .safetensors file or a bundle folder, got {str(p)!r} (not found)")
    logger.info("loaded %s on backend %s (%s)", p, backend_obj.name, backend_obj.info().get("device"))
    return backend_obj


def _from_bundle(bundle: Bundle, backend: str, *, device: str | None, fp16: bool) -> InferenceBackend:
    if backend == "pytorch":
        return PyTorchBackend.from_bundle(bundle, device=device, fp16=fp16)
    if backend == "onnxruntime":
        if fp16:
            raise BackendUnavailableError("onnxruntime backend runs the fp32 graphs; for fp16 use tensorrt or pytorch")
        from export.ort_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend.from_bundle(bundle, device=device)
    reason = tensorrt_unavailable_reason()
    if reason:
        raise BackendUnavailableError(f"tensorrt backend: {reason}")
    from export.tensorrt_runtime import TensorRTBackend

    return TensorRTBackend.from_bundle(bundle, device=device, fp16=fp16)
