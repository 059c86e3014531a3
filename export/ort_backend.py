"""The ONNX Runtime backend: a bundle's two graphs in InferenceSessions.

onnxruntime-gpu silently falls back to the CPU provider when CUDA cannot start, so the providers a session
actually uses (session.get_providers()) are what info() reports, and an explicit device="cuda" that ends up on
the CPU is refused rather than served slowly.

On the CPU the frame encoder is the bundle's int8 graph when the bundle allows it (Bundle.int8_status: measured
accuracy change within a point) unless int8=False; int8=True asks for it regardless (the benchmark, experiments).

A depth-only model (config.uses_color false) also gets a third session: the frame encoder graph's depth branch alone,
cut out of the same graph at load (``depth_branch``), so its frames never run the colour backbone; its tokens are
the full graph's, bit for bit (tests/export/test_depth_only_encode.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort

from export.bundle import (
    ANTICIPATOR_ONNX,
    ANTICIPATOR_OUTPUTS,
    FRAME_ENCODER_INT8_ONNX,
    FRAME_ENCODER_ONNX,
    FRAME_ENCODER_OUTPUTS,
    Bundle,
)
from export.errors import BackendUnavailableError
from export.interface import AnticipatorResult, InferenceBackend
from model.r3d import R3DConfig

logger = logging.getLogger(__name__)

# device -> providers asked for, best first
_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def requested_providers(device: str | None) -> list[str]:
    """Providers to ask for: device None / "auto" means CUDA when this onnxruntime build has it, else CPU."""
    available = ort.get_available_providers()
    if device in (None, "auto"):
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    key = device.split(":")[0]
    if key not in _PROVIDERS:
        raise ValueError(f"onnxruntime backend: expected device one of {sorted(_PROVIDERS)} or 'auto', got {device!r}")
    wanted = _PROVIDERS[key]
    if wanted[0] not in available:
        raise BackendUnavailableError(
            f"onnxruntime backend: device {device!r} needs {wanted[0]}, this onnxruntime {ort.__version__} has "
            f"{available} (install onnxruntime-gpu for CUDA)"
        )
    return [p for p in wanted if p in available]


# ONNX Runtime's intra-op threads spin after every run by default, waiting for the next one. A server runs a graph
# every few tens of milliseconds beside its decode threads, so spinning burns the cores they need: the frame encoder
# at batch 1, 2 threads, called every 30 ms, took 26-28 CPU ms per call spinning and 8-9 without, and its median
# wall time fell from 38-42 to 18-26 ms (loaded 2-core Xeon VM; README, "Service load").
ALLOW_SPINNING = "0"


def make_session(model: str | bytes, providers: list[str], threads: int | None = None) -> ort.InferenceSession:
    """An InferenceSession of a graph file (or a serialised graph)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", ALLOW_SPINNING)
    opts.log_severity_level = 3  # errors only; the provider fallback is checked and reported below
    return ort.InferenceSession(model, sess_options=opts, providers=providers)


def depth_branch(frame_encoder: str | Path) -> tuple[bytes, str] | None:
    """The frame encoder graph's depth branch: a graph from input ``depth`` to the depth token as the full graph
    stacks it, (N, 1, C), and the name of that output; None when the graph is not of the expected form.

    The graph's ``tokens`` are a Concat of the two modality tokens, each (N, 1, C); the depth one is the input of that
    Concat computed from ``depth`` alone (whatever ops lead to it: the int8 graph's quantise / dequantise pairs too),
    so the cut-out graph computes exactly what the full graph computes for it."""
    model = onnx.load(str(frame_encoder))
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    inputs = {i.name for i in graph.input}
    memo: dict[str, frozenset[str]] = {}

    def sources(tensor: str) -> frozenset[str]:
        """The graph inputs a tensor is computed from (initialisers and constants count for none)."""
        if tensor in inputs:
            return frozenset({tensor})
        if tensor not in memo:
            node = producer.get(tensor)
            memo[tensor] = frozenset().union(*(sources(t) for t in node.input if t)) if node else frozenset()
        return memo[tensor]

    concat = producer.get(FRAME_ENCODER_OUTPUTS[0])
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 2:
        return None
    depth_tokens = [t for t in concat.input if sources(t) == {"depth"}]
    if len(depth_tokens) != 1:
        return None
    branch = onnx.utils.Extractor(model).extract_model(["depth"], depth_tokens)
    return branch.SerializeToString(), depth_tokens[0]


class OnnxRuntimeBackend(InferenceBackend):
    """ONNX Runtime on the CPU, or with the CUDA or TensorRT execution providers when this build has them."""

    name = "onnxruntime"

    def __init__(
        self,
        frame_encoder: str | Path,
        anticipator: str | Path,
        config: R3DConfig,
        *,
        ids: tuple[str, str],
        device: str | None = None,
        threads: int | None = None,
        source: str = "",
        encoder_precision: str = "fp32",
        encoder_precision_reason: str = "",
    ) -> None:
        self.config, self.source = config, source
        self.encoder_precision, self.encoder_precision_reason = encoder_precision, encoder_precision_reason
        self.model_id, self.frame_encoder_id = ids
        wanted = requested_providers(device)
        self.frame_encoder = make_session(str(frame_encoder), wanted, threads)
        self.anticipator = make_session(str(anticipator), wanted, threads)
        self.depth_encoder: ort.InferenceSession | None = None  # the depth branch alone, for depth-only models
        self.depth_token_name = ""
        if not config.uses_color:
            branch = depth_branch(frame_encoder)
            if branch is None:
                logger.warning("%s: no depth branch to cut out (tokens are not a Concat of the two modality tokens); "
                               "depth-only frames run the whole frame encoder", Path(frame_encoder).name)  # fmt: skip
            else:
                self.depth_encoder = make_session(branch[0], wanted, threads)
                self.depth_token_name = branch[1]
        self.providers = self.frame_encoder.get_providers()
        used = {self.providers[0], self.anticipator.get_providers()[0]}
        if wanted[0] not in used:
            message = f"onnxruntime backend: asked for {wanted[0]} but the sessions run on {sorted(used)}"
            if device not in (None, "auto"):
                raise BackendUnavailableError(message + " (the provider failed to start; see onnxruntime's log)")
            logger.warning("%s; serving on the CPU", message)
        self.device = "cpu" if self.providers[0] == "CPUExecutionProvider" else self.providers[0]

    @classmethod
    def from_bundle(
        cls, bundle: Bundle, *, device: str | None = None, threads: int | None = None, int8: bool | None = None
    ) -> OnnxRuntimeBackend:
        """int8: None = the bundle's rule on the CPU (Bundle.int8_status), True = the int8 graph, False = fp32."""
        allowed, reason = bundle.int8_status()
        cpu = requested_providers(device)[0] == "CPUExecutionProvider"
        if int8 and not bundle.has(FRAME_ENCODER_INT8_ONNX):
            raise BackendUnavailableError(f"onnxruntime backend: int8 asked for, but {reason}")
        use_int8 = int8 if int8 is not None else allowed and cpu
        if int8 is None and allowed and not cpu:
            reason = "int8 is served on the CPU only"
        elif int8 is not None:
            reason = "asked for" if int8 else "fp32 asked for"
        return cls(
            bundle.file(FRAME_ENCODER_INT8_ONNX if use_int8 else FRAME_ENCODER_ONNX),
            bundle.file(ANTICIPATOR_ONNX),
            bundle.config,
            ids=(bundle.model_id, bundle.frame_encoder_id),
            device=device,
            threads=threads,
            source=str(bundle.path),
            encoder_precision="int8" if use_int8 else "fp32",
            encoder_precision_reason=reason,
        )

    def _encode(self, images: np.ndarray, depths: np.ndarray) -> np.ndarray:
        (tokens,) = self.frame_encoder.run(["tokens"], {"image": images, "depth": depths})
        return np.asarray(tokens, dtype=np.float32)

    def _encode_depth(self, depths: np.ndarray) -> np.ndarray:
        if self.depth_encoder is None:  # a model that uses colour never comes here (encode checks it)
            return super()._encode_depth(depths)
        (tokens,) = self.depth_encoder.run([self.depth_token_name], {"depth": depths})  # (N, 1, C)
        return np.asarray(tokens, dtype=np.float32)[:, 0]

    def _anticipate(self, tokens: np.ndarray, valid: np.ndarray) -> AnticipatorResult:
        out = self.anticipator.run(list(ANTICIPATOR_OUTPUTS), {"tokens": tokens, "valid": valid})
        return AnticipatorResult(*(np.asarray(o, dtype=np.float32) for o in out))

    def info(self) -> dict[str, Any]:
        return self._base_info() | {
            "device": self.device,
            "providers": {
                "frame_encoder": self.frame_encoder.get_providers(),
                "anticipator": self.anticipator.get_providers(),
            }
            | ({"depth_branch": self.depth_encoder.get_providers()} if self.depth_encoder is not None else {}),
            "precision": "fp32" if self.encoder_precision == "fp32" else f"{self.encoder_precision} frame encoder",
            "frame_encoder_precision": {"precision": self.encoder_precision, "why": self.encoder_precision_reason},
            "source": self.source,
            "versions": {"onnxruntime": ort.__version__, "numpy": np.__version__},
        }
