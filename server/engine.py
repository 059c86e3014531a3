"""The model behind the service: an inference backend (export.backends) plus what the server derives from its config.

``Engine`` adds the model's input contract (model.preprocess) and output decoding (model.decoding, current action =
softmax of the segmentation logits at the newest frame) to the backend: streaming sessions and batch jobs both go
through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.backends import load_backend
from export.interface import AnticipatorResult, InferenceBackend
from model import Preprocessing, R3DConfig, decode_timed, prepare_inputs
from model.person import PersonLocator
from model.preprocess import prepare_depth
from rgbd.frame import MissingColorError
from server.errors import ServerError
from server.protocol import CurrentAction, ErrorCode, FutureAction, ModelInfo, SessionCreate


def load_engine_backend(
    path: Path, backend: str, device: str | None, fp16: bool, threads: int | None = None
) -> InferenceBackend:
    """export.backends.load_backend with the server's settings ("auto" picks the best runtime for the bundle).

    ONNX Runtime gets ``threads`` intra-op threads: by default it sizes its pools (one per graph) to every core of
    the host, ignoring CPU affinity and the decode threads, and oversubscribes a shared or pinned machine. The
    sessions are built once, with that count (they used to be built twice: once with the default, then again).
    """
    return load_backend(path, backend, device=device, fp16=fp16, threads=threads)


@dataclass(frozen=True)
class ModelSpec:
    """What streaming needs to know about a model."""

    classes: tuple[str, ...]
    fps: float
    window_frames: int
    window_s: float
    horizon_s: float
    none_index: int
    preprocessing: Preprocessing
    uses_color: bool = True  # False: a depth-only model, which serves depth-only streams

    @classmethod
    def from_config(cls, cfg: R3DConfig) -> ModelSpec:
        return cls(
            tuple(cfg.classes), cfg.fps, cfg.window_frames, cfg.window_s, cfg.horizon_s, cfg.none_index,
            cfg.preprocessing, cfg.uses_color,
        )  # fmt: skip


class Engine:
    """One loaded model: preprocessing, the two inference calls, and decoding into wire types."""

    def __init__(self, backend: InferenceBackend, server_version: str, source: Path | None = None) -> None:
        self.backend = backend
        self.source = source
        self.spec = ModelSpec.from_config(backend.config)
        self.model_id = backend.model_id
        self.frame_encoder_id = backend.frame_encoder_id
        self.info = ModelInfo(
            model_id=backend.model_id,
            frame_encoder_id=backend.frame_encoder_id,
            backend=backend.name,
            classes=list(self.spec.classes),
            fps=self.spec.fps,
            window_s=self.spec.window_s,
            window_frames=self.spec.window_frames,
            horizon_s=self.spec.horizon_s,
            server_version=server_version,
            image_size=self.spec.preprocessing.image_size,
            depth_size=self.spec.preprocessing.depth_size,
            depth_range_m=(self.spec.preprocessing.depth_min_m, self.spec.preprocessing.depth_max_m),
            uses_color=self.spec.uses_color,
            backend_info=_jsonable(_public(backend.info())),
        )

    def prepare(
        self,
        color: np.ndarray | bytes | None,
        depth: np.ndarray,
        depth_scale: float,
        locator: PersonLocator | None = None,
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """JPEG bytes or decoded RGB uint8 (H, W, 3), and depth uint16 (h, w) -> image (3, H', W') and depth
        (D, h', w') float32: model.prepare_inputs, the same function the feature cache uses (ImageDecodeError when
        the JPEG cannot be decoded). color None (a depth-only frame) only for a depth-only model. locator: the
        stream's PersonLocator when the model's preprocessing has a person mask (Session.person_locator).

        A depth-only model gets no image (None), whether the frame has colour or not: its outputs do not depend on
        colour, so colour is neither decoded nor encoded (``encode(None, depths)``); its depth goes through the
        same function (model.prepare_depth, which prepare_inputs calls)."""
        if not self.spec.uses_color:
            return None, prepare_depth(depth, depth_scale, self.spec.preprocessing, locator)
        if color is None:
            raise MissingColorError(
                f"model {self.model_id} uses colour and depth; a depth-only frame (no colour) needs a depth-only "
                "model (fusion: depth)"
            )
        return prepare_inputs(color, depth, depth_scale, self.spec.preprocessing, locator)

    def check_stream(self, stream: SessionCreate) -> None:
        """Refuse, at hello, a depth-only stream this model cannot serve (it would see a blank image where it was
        trained on colour: no silent degraded mode)."""
        if not stream.color and self.spec.uses_color:
            raise ServerError(
                f"the hello declares a depth-only stream (color false), but model {self.model_id} uses colour and "
                "depth; serve a depth-only model (fusion: depth) for this camera, or send colour",
                code=ErrorCode.COLOR_REQUIRED,
            )

    def frame_shapes(self, stream: SessionCreate) -> tuple[tuple[int, int], tuple[int, int]]:
        """(colour (H, W), depth (H, W)) of the frames a stream sends: its camera's, or this model's input size."""
        pre = self.spec.preprocessing
        return stream.frame_shapes(pre.image_size, pre.depth_size)

    def encode(self, images: np.ndarray | None, depths: np.ndarray) -> np.ndarray:
        """(N, 3, H, W), (N, D, h, w) -> tokens (N, 2, C) float32; images None (a depth-only model): the colour
        backbone does not run (InferenceBackend.encode)."""
        return np.asarray(self.backend.encode(images, depths), dtype=np.float32)

    def encode_prepared(self, images: Sequence[np.ndarray | None], depths: Sequence[np.ndarray]) -> np.ndarray:
        """Frames as ``prepare`` gave them -> tokens (N, 2, C): their images stacked for a model that uses colour,
        none at all for a depth-only model (no colour work). Streaming, batch jobs and the cluster's encoder tier
        all encode through here."""
        if not self.spec.uses_color:
            return self.encode(None, np.stack(depths))
        stacked = [image for image in images if image is not None]
        if len(stacked) != len(images):
            raise MissingColorError(
                f"model {self.model_id} uses colour; {len(images) - len(stacked)} of {len(images)} frames have none"
            )
        return self.encode(np.stack(stacked), np.stack(depths))

    def anticipate(self, tokens: np.ndarray) -> AnticipatorResult:
        """One window of tokens (T, 2, C) -> the anticipator's outputs for a batch of one, every frame valid."""
        return self.anticipate_batch([tokens])[0]

    def anticipate_batch(self, windows: list[np.ndarray]) -> list[AnticipatorResult]:
        """Windows of tokens (T_i, 2, C) -> one Anticipator call -> each window's outputs as a batch of one.

        Windows of different lengths are padded at the end and masked (valid = False): positions count from each
        window's first frame and padded frames are never attended to, so a window's outputs are its own
        (tests/server/test_batched_ticks.py: parity with one call per window at 1e-5)."""
        lengths = [w.shape[0] for w in windows]
        t = max(lengths)
        tokens = np.zeros((len(windows), t, *windows[0].shape[1:]), np.float32)  # (B, T, 2, C)
        valid = np.zeros((len(windows), t), bool)
        for i, (w, n) in enumerate(zip(windows, lengths, strict=True)):
            tokens[i, :n] = w
            valid[i, :n] = True
        r = self.backend.anticipate(tokens, valid)
        return [
            AnticipatorResult(
                action_logits=r.action_logits[i : i + 1], duration_logits=r.duration_logits[i : i + 1],
                segment_logits=r.segment_logits[i : i + 1, :n], fused=r.fused[i : i + 1, :n],
            )
            for i, n in enumerate(lengths)
        ]  # fmt: skip

    def decode(self, result: AnticipatorResult) -> tuple[CurrentAction, list[FutureAction]]:
        """The anticipator's outputs (batch of one) -> the current action and the timed future actions."""
        names = self.spec.classes
        seg = torch.from_numpy(np.ascontiguousarray(result.segment_logits[0, -1], dtype=np.float32))
        probs = seg.softmax(-1).tolist()
        k = int(np.argmax(probs))
        current = CurrentAction(
            action=k, label=names[k], probability=probs[k], probabilities=dict(zip(names, probs, strict=True))
        )
        timed = decode_timed(
            torch.from_numpy(np.ascontiguousarray(result.action_logits[0], dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(result.duration_logits[0], dtype=np.float32)),
            self.spec.none_index,
            self.spec.horizon_s,
        )
        future = [
            FutureAction(
                action=a.action, label=names[a.action], start_s=a.start_s, duration_s=a.duration_s,
                probability=a.probability,
            )
            for a in timed
        ]  # fmt: skip
        return current, future


def _public(info: dict[str, Any]) -> dict[str, Any]:
    """The backend's description as clients see it: the model's file or folder by name, not by server path."""
    source = info.get("source")
    return info if source is None else {**info, "source": Path(str(source)).name}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)
