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

    # the colour token of the all-zero image (blank_color_token), computed on first use
    _blank_color_token: np.ndarray | None = None

    def encode(self, images: np.ndarray | None, depths: np.ndarray) -> np.ndarray:
        """Normalised images (N, 3, H, W) and depth inputs (N, D, h, w) (model.preprocess) -> tokens (N, 2, C).

        images None: no colour work at all, for a depth-only model only (config.uses_color false, whose outputs do not
        depend on the colour token). The colour token is then the all-zero image's (``blank_color_token``), the
        token those frames got when the backbone ran on that image (bit-identical), and only the depth branch runs.
        """
        pre = self.config.preprocessing
        if images is None:
            if self.config.uses_color:
                raise ValueError(
                    f"expected images: model {self.model_id} uses colour (fusion {self.config.fusion!r}); only a "
                    "depth-only model (fusion 'depth') encodes frames without colour"
                )
            depths = _float_array(depths, "depths", (None, pre.depth_channels, *pre.depth_size))
            tokens = np.empty((depths.shape[0], 2, self.config.hidden), np.float32)
            if depths.shape[0]:
                tokens[:, 0] = self.blank_color_token()
                tokens[:, 1] = self._encode_depth(depths)
            return tokens
        images = _float_array(images, "images", (None, 3, *pre.image_size))
        depths = _float_array(depths, "depths", (images.shape[0], pre.depth_channels, *pre.depth_size))
        if images.shape[0] == 0:
            return np.zeros((0, 2, self.config.hidden), np.float32)
        return self._encode(images, depths)

    def blank_color_token(self) -> np.ndarray:
        """The colour token (C,) of the all-zero image (model.prepare_inputs' image for a frame without colour),
        computed once by the whole frame encoder, so that it is exactly the token a per-frame run would give."""
        if self._blank_color_token is None:
            pre = self.config.preprocessing
            image = np.zeros((1, 3, *pre.image_size), np.float32)
            depth = np.zeros((1, pre.depth_channels, *pre.depth_size), np.float32)
            self._blank_color_token = np.array(self._encode(image, depth)[0, 0], np.float32)
        return self._blank_color_token

    def _encode_depth(self, depths: np.ndarray) -> np.ndarray:
        """Depth inputs (N, D, h, w) -> depth tokens (N, C). This default runs the whole frame encoder on all-zero
        images (a runtime that cannot run the depth branch alone, e.g. a TensorRT engine, saves nothing);
        the PyTorch and ONNX Runtime backends run the depth branch only."""
        pre = self.config.preprocessing
        images = np.zeros((depths.shape[0], 3, *pre.image_size), np.float32)
        return self._encode(images, depths)[:, 1]

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
