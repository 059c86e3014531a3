"""TensorRT engines from a bundle's ONNX graphs (TensorRT 10.x and 11.x), stamped and checked against ONNX Runtime.

TensorRT 11 removed weak typing (BuilderFlag.FP16 / INT8 and the INT8 calibrators are gone): every network here is
strongly typed, so an engine's precision is the precision of the ONNX graph it is built from. The same code builds
on TensorRT 10.x, which has strongly typed networks too; other majors are refused by name
(tensorrt_runtime.SUPPORTED_TENSORRT).

    fp32: the bundle's graphs, TF32 cleared (fp32 means fp32: parity is checked at fp32 tolerance)
    fp16: the bundle's graphs converted to fp16 (onnxconverter-common, float32 inputs and outputs kept), built here
    int8: the bundle's Q/DQ frame encoder (r3d-export --int8) + the fp16 anticipator

    builder = trt.Builder(logger); network = builder.create_network(STRONGLY_TYPED); trt.OnnxParser(network, logger)
    config: one optimisation profile with min/opt/max shapes for the batch (and, for the anticipator, the window T:
    1 / the model's window / max_len); a timing cache shared by every build; build_serialized_network.

Engines land in BUNDLE/engines/ with engines.json (GPU name and compute capability, TensorRT version, the SHA-256
of each engine's ONNX file, its precision and profile) and the timing cache; each precision is checked against ONNX
Runtime before anything is added to the bundle's manifest.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from export.backends import tensorrt_unavailable_reason
from export.bundle import (
    ANTICIPATOR_ONNX,
    ENGINES_DIR,
    FRAME_ENCODER_INT8_ONNX,
    INT8_REPORT,
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

PRECISIONS = ("fp16", "fp32", "int8")
TIMING_CACHE = "timing.cache"
INT8_ENGINE_TOLERANCE = 0.25  # max abs vs ONNX Runtime's int8 graph; a hypothesis until measured on a GPU
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
    # strongly typed: the graph's types decide the precision (TensorRT 11 has no other mode); explicit batch is
    # the only mode since 10
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
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


def engine_sources(bundle: Bundle, precision: str) -> dict[str, tuple[str, str]]:
    """graph -> (bundle ONNX file the engine comes from, precision of the graph it is built from)."""
    if precision not in PRECISIONS:
        raise ValueError(f"expected precision one of {PRECISIONS}, got {precision!r}")
    if precision == "int8":
        if not bundle.has(FRAME_ENCODER_INT8_ONNX):
            raise ExportError(f"int8 engines need the bundle's Q/DQ frame encoder: r3d-export int8 {bundle.path} first")
        if bundle.parity.get(INT8_REPORT, {}).get("activations") != "int8":
            raise ExportError(
                "int8 engines need symmetric int8 activations (TensorRT's Q/DQ); this bundle's int8 frame encoder has "
                f"uint8 activations (ONNX Runtime's fast CPU choice): r3d-export int8 {bundle.path} "
                "--int8-activations int8"
            )
        return {"frame_encoder": (FRAME_ENCODER_INT8_ONNX, "int8"), "anticipator": (ANTICIPATOR_ONNX, "fp16")}
    return {graph: (onnx_name, precision) for graph, onnx_name in GRAPHS.items()}


def fp16_graph(src: Path, dst: Path) -> None:
    """An fp16 copy of an fp32 ONNX graph (float32 inputs and outputs kept, casts inside), for strongly typed fp16.

    A graph output that other nodes also read is first given its own Identity: onnxconverter-common casts such an
    output back to float32 in place, and its fp16 readers would then see float32 (an invalid graph)."""
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise BackendUnavailableError(
            "fp16 engines need onnxconverter-common (pip install 'r3d[tensorrt]'): TensorRT 11 builds fp16 from an "
            "fp16 graph"
        ) from exc
    import onnx

    model = onnx.load(str(src))
    read = {name for node in model.graph.node for name in node.input}
    for out in model.graph.output:
        if out.name in read:
            inner = f"{out.name}.inner"
            for node in model.graph.node:
                node.input[:] = [inner if n == out.name else n for n in node.input]
                node.output[:] = [inner if n == out.name else n for n in node.output]
            model.graph.node.append(onnx.helper.make_node("Identity", [inner], [out.name], name=f"{out.name}.output"))
    with warnings.catch_warnings():  # it warns for every weight it rounds (tiny ones to 1e-7, -inf masks to -1e4)
        warnings.simplefilter("ignore", UserWarning)
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    write_bytes_atomic(dst, half.SerializeToString())


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
    for precision in precisions:
        engine_sources(bundle, precision)  # refuse int8 without its graph before any build
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
            for graph, (onnx_name, graph_precision) in engine_sources(bundle, precision).items():
                name = engine_name(graph, precision)
                source = folder / onnx_name
                if graph_precision == "fp16":  # strongly typed: an fp16 engine comes from an fp16 graph
                    source = work / f"{graph}.fp16.onnx"
                    if not source.is_file():
                        fp16_graph(folder / onnx_name, source)
                seconds = build_engine(source, work / name, shapes[graph], graph_precision, cache)
                stamp["engines"][name] = {
                    "graph": graph,
                    "onnx": onnx_name,
                    "onnx_sha256": bundle.manifest["files"][onnx_name]["sha256"],
                    "precision": precision,
                    "graph_precision": graph_precision,
                    "profile": {k: [list(s) for s in v] for k, v in shapes[graph].items()},
                    "build_seconds": round(seconds, 1),
                }
        for converted in work.glob("*.fp16.onnx"):  # rebuilt from the bundle's graphs when needed
            converted.unlink()
        parity = dict(bundle.parity)
        ids = (bundle.model_id, bundle.frame_encoder_id)
        limits = {"fp32": tolerance, "fp16": fp16_tolerance, "int8": INT8_ENGINE_TOLERANCE}
        for precision in precisions:
            # int8 engines are compared with ONNX Runtime running the same Q/DQ graph
            reference = OnnxRuntimeBackend.from_bundle(bundle, device="cpu", int8=precision == "int8")
            candidate = TensorRTBackend(work / engine_name("frame_encoder", precision),
                                        work / engine_name("anticipator", precision), cfg, ids=ids, device=device,
                                        precision=precision, source=str(folder))  # fmt: skip
            report = run_parity(reference, candidate, cfg, batches=(1, min(3, anticipator_batch)),
                                tolerance=limits[precision])  # fmt: skip
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
