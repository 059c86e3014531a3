"""The one interface every inference backend implements (PyTorch, ONNX Runtime, TensorRT), and its result type."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.errors import WindowTooLongError
from model.r3d import R3DConfig


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
        """Normalised images (N, 3, H, W) and depth inputs (N, D, h, w) (model.preprocess) -> tokens (N, 2, C)."""
        pre = self.config.preprocessing
        images = _float_array(images, "images", (None, 3, *pre.image_size))
        depths = _float_array(depths, "depths", (images.shape[0], pre.depth_channels, *pre.depth_size))
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
