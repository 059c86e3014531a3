"""The TensorRT backend: serialized engines run with torch CUDA tensors as their I/O buffers (TensorRT 10.x / 11.x).

    runtime.deserialize_cuda_engine(bytes) -> engine.create_execution_context()
    per call: context.set_input_shape / set_tensor_address for every I/O tensor, execute_async_v3(stream)

Engines are specific to a GPU and a TensorRT version; the bundle's engines/engines.json stamps both and the SHA-256
of the ONNX file each engine was built from, and loading refuses an engine whose stamp does not match this machine.
Batches larger than an engine's optimisation profile are run in chunks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.bundle import ANTICIPATOR_ONNX, ANTICIPATOR_OUTPUTS, ENGINES_DIR, FRAME_ENCODER_ONNX, Bundle
from export.errors import BackendUnavailableError, BundleError, ExportError
from export.interface import AnticipatorResult, InferenceBackend
from model.r3d import R3DConfig

logger = logging.getLogger(__name__)

SUPPORTED_TENSORRT = (10, 11)  # majors with strongly typed networks and the APIs used here


def tensorrt_version_problem(version: str) -> str | None:
    """Why this TensorRT version cannot build or run engines here, or None when it is supported."""
    try:
        major = int(version.split(".")[0])
    except ValueError:
        return f"cannot read the TensorRT version {version!r}"
    if major not in SUPPORTED_TENSORRT:
        supported = ", ".join(f"{m}.x" for m in SUPPORTED_TENSORRT)
        return f"TensorRT {version} is installed; supported versions: {supported}"
    return None


GRAPHS = {"frame_encoder": FRAME_ENCODER_ONNX, "anticipator": ANTICIPATOR_ONNX}


def engine_name(graph: str, precision: str) -> str:
    return f"{graph}.{precision}.engine"


def gpu_stamp(device: torch.device) -> dict[str, str]:
    major, minor = torch.cuda.get_device_capability(device)
    return {"name": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    dt = trt.DataType
    table = {dt.FLOAT: torch.float32, dt.HALF: torch.float16, dt.BOOL: torch.bool, dt.INT32: torch.int32,
             dt.INT8: torch.int8}  # fmt: skip
    if hasattr(dt, "INT64"):  # TensorRT 10
        table[dt.INT64] = torch.int64
    if dtype not in table:
        raise ExportError(f"TensorRT tensor type {dtype} has no torch equivalent here")
    return table[dtype]


class EngineRunner:
    """One deserialized engine, its execution context and its I/O tensors' names, types and profile limits."""

    def __init__(self, path: str | Path, device: torch.device) -> None:
        import tensorrt as trt

        self.trt, self.device, self.path = trt, device, Path(path)
        self.logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(device):
            self.runtime = trt.Runtime(self.logger)
            self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise BackendUnavailableError(f"TensorRT could not deserialize {self.path.name} (see its log above)")
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        # (min, opt, max) shapes of profile 0 for every input
        self.limits = {n: tuple(tuple(s) for s in self.engine.get_tensor_profile_shape(n, 0)) for n in self.inputs}

    @property
    def max_batch(self) -> int:
        return min(int(lim[2][0]) for lim in self.limits.values())

    def run(self, feeds: dict[str, np.ndarray]) -> list[torch.Tensor]:
        """Inputs as numpy arrays -> outputs (torch CUDA tensors, in self.outputs order)."""
        keep = []
        for name in self.inputs:
            t = torch.from_numpy(feeds[name]).to(self.device, self.dtypes[name], non_blocking=True).contiguous()
            keep.append(t)
            if not self.context.set_input_shape(name, tuple(t.shape)):
                lo, _, hi = self.limits[name]
                raise ValueError(f"{self.path.name}: input {name} shape {tuple(t.shape)} is outside the engine's "
                                 f"profile {lo}..{hi}; rebuild with larger limits")  # fmt: skip
            self.context.set_tensor_address(name, t.data_ptr())
        outs = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            self.context.set_tensor_address(name, out.data_ptr())
            outs.append(out)
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise ExportError(f"TensorRT execution of {self.path.name} failed (see its log above)")
        stream.synchronize()
        del keep
        return outs


class TensorRTBackend(InferenceBackend):
    """FrameEncoder and Anticipator engines of one precision (fp32, fp16, or int8 = Q/DQ frame encoder + fp16
    anticipator) on one CUDA device."""

    name = "tensorrt"

    def __init__(
        self,
        frame_encoder: str | Path,
        anticipator: str | Path,
        config: R3DConfig,
        *,
        ids: tuple[str, str],
        device: str | None = None,
        precision: str = "fp32",
        source: str = "",
    ) -> None:
        if not torch.cuda.is_available():
            raise BackendUnavailableError("tensorrt backend: no CUDA device")
        self.device = torch.device(device or "cuda")
        if self.device.type != "cuda":
            raise BackendUnavailableError(f"tensorrt backend: expected a CUDA device, got {str(self.device)!r}")
        self.config, self.precision, self.source = config, precision, source
        self.model_id, self.frame_encoder_id = ids
        self.frame_encoder = EngineRunner(frame_encoder, self.device)
        self.anticipator = EngineRunner(anticipator, self.device)
        t_max = int(self.anticipator.limits["tokens"][2][1])
        if t_max < config.max_len:
            logger.warning("anticipator engine accepts T <= %d, below the model's max_len %d", t_max, config.max_len)

    @classmethod
    def from_bundle(
        cls, bundle: Bundle, *, device: str | None = None, fp16: bool = False, precision: str | None = None
    ) -> TensorRTBackend:
        """precision: "fp32", "fp16" or "int8"; default from fp16."""
        import tensorrt as trt

        precision = precision or ("fp16" if fp16 else "fp32")
        stamp = bundle.engines()
        if not stamp:
            raise BackendUnavailableError(
                f"bundle {bundle.path} has no TensorRT engines; build them with r3d-export tensorrt {bundle.path}"
            )
        dev = torch.device(device or "cuda")
        here = gpu_stamp(dev)
        if stamp.get("tensorrt") != trt.__version__ or stamp.get("gpu") != here:
            raise BackendUnavailableError(
                f"bundle {bundle.path}: engines were built with TensorRT {stamp.get('tensorrt')} "
                f"on {stamp.get('gpu')}, "
                f"this machine has TensorRT {trt.__version__} on {here}; rebuild: r3d-export tensorrt {bundle.path}"
            )
        paths = {}
        for graph in GRAPHS:
            name = engine_name(graph, precision)
            entry = stamp.get("engines", {}).get(name)
            if entry is None or not bundle.has(f"{ENGINES_DIR}/{name}"):
                raise BackendUnavailableError(f"bundle {bundle.path}: no {precision} engine {ENGINES_DIR}/{name}")
            onnx_name = entry.get("onnx", GRAPHS[graph])
            if not bundle.has(onnx_name) or entry.get("onnx_sha256") != bundle.manifest["files"][onnx_name]["sha256"]:
                raise BundleError(f"bundle {bundle.path}: {ENGINES_DIR}/{name} was built from another {onnx_name}")
            paths[graph] = bundle.file(f"{ENGINES_DIR}/{name}")
        return cls(paths["frame_encoder"], paths["anticipator"], bundle.config, device=device, precision=precision,
                   ids=(bundle.model_id, bundle.frame_encoder_id), source=str(bundle.path))  # fmt: skip

    def _chunks(self, n: int, runner: EngineRunner) -> list[slice]:
        step = runner.max_batch
        return [slice(i, min(n, i + step)) for i in range(0, n, step)]

    def _encode(self, images: np.ndarray, depths: np.ndarray) -> np.ndarray:
        parts = [self.frame_encoder.run({"image": images[s], "depth": depths[s]})[0].float().cpu().numpy()
                 for s in self._chunks(len(images), self.frame_encoder)]  # fmt: skip
        return np.concatenate(parts)

    def _anticipate(self, tokens: np.ndarray, valid: np.ndarray) -> AnticipatorResult:
        order = [self.anticipator.outputs.index(n) for n in ANTICIPATOR_OUTPUTS]
        parts = []
        for s in self._chunks(len(tokens), self.anticipator):
            outs = self.anticipator.run({"tokens": tokens[s], "valid": valid[s]})
            parts.append([outs[i].float().cpu().numpy() for i in order])
        return AnticipatorResult(*(np.concatenate(p) for p in zip(*parts, strict=True)))

    def info(self) -> dict[str, Any]:
        import tensorrt as trt

        return self._base_info() | {
            "device": str(self.device),
            "gpu": torch.cuda.get_device_name(self.device),
            "precision": self.precision,
            "source": self.source,
            "engines": [self.frame_encoder.path.name, self.anticipator.path.name],
            "versions": {"tensorrt": trt.__version__, "torch": torch.__version__},
        }
