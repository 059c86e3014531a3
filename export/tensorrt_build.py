"""TensorRT engines from a bundle's ONNX graphs (TensorRT 10 Python API), stamped and checked against ONNX Runtime.

    builder = trt.Builder(logger); network = builder.create_network(0); trt.OnnxParser(network, logger)
    config: FP16 flag (fp16) or TF32 cleared (strict fp32); one optimisation profile with min/opt/max shapes for
    the batch (and, for the anticipator, the window T: 1 / the model's window / max_len); a timing cache shared by
    every build; build_serialized_network.

Engines land in BUNDLE/engines/ with engines.json (GPU name and compute capability, TensorRT version, the SHA-256
of each engine's ONNX file, its precision and profile) and the timing cache; each precision is checked against ONNX
Runtime before anything is added to the bundle's manifest.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from export.backends import tensorrt_unavailable_reason
from export.bundle import (
    ENGINES_DIR,
    MANIFEST,
    PARITY,
    Bundle,
    load_bundle,
    write_manifest,
)
from export.errors import BackendUnavailableError, ExportError
from export.ort_backend import OnnxRuntimeBackend
from export.parity import DEFAULT_TOLERANCE, FP16_TOLERANCE, raise_on_failure, run_parity
from export.tensorrt_runtime import GRAPHS, TensorRTBackend, engine_name, gpu_stamp
from model.r3d import R3DConfig
from rgbd.files import write_bytes_atomic, write_json_atomic

logger = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32")
TIMING_CACHE = "timing.cache"
Shape = tuple[int, ...]


def profiles(cfg: R3DConfig, encoder_batch: int = 64, anticipator_batch: int = 8) -> dict[str, dict[str, list[Shape]]]:
    """graph -> input -> [min, opt, max] shapes, from the model's config and the batch limits."""
    (h, w), (dh, dw), c = cfg.preprocessing.image_size, cfg.preprocessing.depth_size, cfg.hidden
    eb = [1, min(8, encoder_batch), encoder_batch]
    ab = [1, 1, anticipator_batch]
    ts = [1, min(cfg.window_frames, cfg.max_len), cfg.max_len]
    return {
        "frame_encoder": {
            "image": [(b, 3, h, w) for b in eb],
            "depth": [(b, cfg.preprocessing.depth_channels, dh, dw) for b in eb],
        },
        "anticipator": {
            "tokens": [(b, t, 2, c) for b, t in zip(ab, ts, strict=True)],
            "valid": [(b, t) for b, t in zip(ab, ts, strict=True)],
        },
    }


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    profile: dict[str, list[Shape]],
    precision: str,
    timing_cache: Path,
    workspace_gib: float = 4.0,
) -> float:
    """Parse, configure and build one engine; updates the timing cache file. Returns the build time in seconds."""
    import tensorrt as trt

    if precision not in PRECISIONS:
        raise ValueError(f"expected precision one of {PRECISIONS}, got {precision!r}")
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: the parity check compares at fp32 tolerance
    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        opt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(opt_profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build {engine_path.name} from {onnx_path.name} (see its log above)")
    seconds = time.perf_counter() - started
    write_bytes_atomic(engine_path, bytes(serialized))
    write_bytes_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    logger.info("built %s in %.1f s", engine_path.name, seconds)
    return seconds


def build_engines(
    bundle_path: str | Path,
    *,
    precisions: Sequence[str] = PRECISIONS,
    encoder_batch: int = 64,
    anticipator_batch: int = 8,
    timing_cache: str | Path | None = None,
    device: str = "cuda",
    tolerance: float = DEFAULT_TOLERANCE,
    fp16_tolerance: float = FP16_TOLERANCE,
) -> Bundle:
    """Build engines of each precision into BUNDLE/engines/, check them against ONNX Runtime, update the manifest.

    Engines go into the bundle only when every precision passes its parity check (ParityError otherwise).
    """
    reason = tensorrt_unavailable_reason()
    if reason:
        raise BackendUnavailableError(f"cannot build TensorRT engines: {reason}")
    import tensorrt as trt

    bundle = load_bundle(bundle_path)
    folder, cfg = bundle.path, bundle.config
    shapes = profiles(cfg, encoder_batch, anticipator_batch)
    work = Path(tempfile.mkdtemp(dir=folder, prefix=".engines.partial-"))
    try:
        cache = work / TIMING_CACHE
        given_cache = Path(timing_cache) if timing_cache else folder / ENGINES_DIR / TIMING_CACHE
        if given_cache.is_file():
            shutil.copyfile(given_cache, cache)
        stamp: dict[str, Any] = {
            "tensorrt": trt.__version__,
            "gpu": gpu_stamp(torch.device(device)),
            "built_unix": round(time.time()),
            "timing_cache": TIMING_CACHE,
            "engines": {},
        }
        for precision in precisions:
            for graph, onnx_name in GRAPHS.items():
                name = engine_name(graph, precision)
                seconds = build_engine(folder / onnx_name, work / name, shapes[graph], precision, cache)
                stamp["engines"][name] = {
                    "graph": graph,
                    "onnx": onnx_name,
                    "onnx_sha256": bundle.manifest["files"][onnx_name]["sha256"],
                    "precision": precision,
                    "profile": {k: [list(s) for s in v] for k, v in shapes[graph].items()},
                    "build_seconds": round(seconds, 1),
                }
        parity = dict(bundle.parity)
        reference = OnnxRuntimeBackend.from_bundle(bundle, device="cpu")
        ids = (bundle.model_id, bundle.frame_encoder_id)
        for precision in precisions:
            candidate = TensorRTBackend(work / engine_name("frame_encoder", precision),
                                        work / engine_name("anticipator", precision), cfg, ids=ids, device=device,
                                        precision=precision, source=str(folder))  # fmt: skip
            report = run_parity(reference, candidate, cfg, batches=(1, min(3, anticipator_batch)),
                                tolerance=fp16_tolerance if precision == "fp16" else tolerance)  # fmt: skip
            parity[f"tensorrt_{precision}"] = report
            raise_on_failure(report)
        write_json_atomic(work / "engines.json", stamp, sort_keys=True)
        target = folder / ENGINES_DIR
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
        write_json_atomic(folder / PARITY, parity, sort_keys=True)
        extra = {k: v for k, v in bundle.manifest.items()
                 if k not in ("format", "version", "model_id", "frame_encoder_id", "files")}  # fmt: skip
        write_manifest(folder, model_id=bundle.model_id, frame_encoder_id=bundle.frame_encoder_id, extra=extra)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("engines %s added to %s (%s updated)", sorted(stamp["engines"]), folder, MANIFEST)
    return load_bundle(folder)
