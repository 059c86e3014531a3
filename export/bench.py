"""`r3d-export bench BUNDLE`: throughput and latency of every backend available here, measured in one run.

FrameEncoder: frames per second at batch 1, 8 and 32. Anticipator: latency of one window (batch 1) at T = 100, 500
and 2000 frames (T beyond the model's max_len is skipped). Each cell is the median and 95th percentile of repeated
calls after warm-up, through the public backend interface (numpy in, numpy out, so host copies are included).
Ratios compare each backend with PyTorch eager fp32 on the same device type, measured in the same run.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.backends import InferenceBackend, PyTorchBackend, tensorrt_unavailable_reason
from export.bundle import FRAME_ENCODER_INT8_ONNX, Bundle, load_bundle, model_identity
from export.errors import BackendUnavailableError
from model.errors import R3DError
from model.r3d import R3D, R3DConfig

logger = logging.getLogger(__name__)

ENCODER_BATCHES = (1, 8, 32)
LENGTHS = (100, 500, 2000)


@dataclass(frozen=True)
class Candidate:
    label: str  # e.g. "onnxruntime cpu fp32"
    device_type: str  # "cpu" | "cuda": the baseline of a ratio is pytorch fp32 on the same device type
    make: Callable[[], InferenceBackend]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    import onnx
    import onnxruntime as ort

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),  # also the ONNX Runtime intra-op threads when --threads is given
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
            "numpy": np.__version__,
        },  # fmt: skip
        "onnxruntime_providers": ort.get_available_providers(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["versions"]["cuda"] = torch.version.cuda
    if tensorrt_unavailable_reason() is None:
        import tensorrt as trt

        info["versions"]["tensorrt"] = trt.__version__
    return info


def candidates(
    bundle: Bundle | None, model: R3D | None = None, *, cuda: bool | None = None, threads: int | None = None
) -> list[Candidate]:
    """Every backend configuration that may run here; pytorch eager fp32 first on each device type (the baselines).

    model: an in-memory model for the PyTorch rows (else the bundle's checkpoint is loaded); without a bundle only
    the PyTorch rows exist.
    """
    import onnxruntime as ort

    from export.ort_backend import OnnxRuntimeBackend

    cuda = torch.cuda.is_available() if cuda is None else cuda
    if bundle is None and model is None:
        raise ValueError("expected a bundle, a model or both, got neither")
    ids = (bundle.model_id, bundle.frame_encoder_id) if bundle else model_identity(model)  # type: ignore[arg-type]

    def torch_backend(device: str, fp16: bool) -> Callable[[], InferenceBackend]:
        def make() -> InferenceBackend:
            if model is not None:
                import copy

                return PyTorchBackend(copy.deepcopy(model), device=device, fp16=fp16, ids=ids, source="in-memory")
            assert bundle is not None
            return PyTorchBackend.from_bundle(bundle, device=device, fp16=fp16)

        return make

    out = [Candidate("pytorch cpu fp32", "cpu", torch_backend("cpu", False))]
    if cuda:
        out += [
            Candidate("pytorch cuda fp32", "cuda", torch_backend("cuda", False)),
            Candidate("pytorch cuda fp16", "cuda", torch_backend("cuda", True)),
        ]
    if bundle is None:
        return out
    b = bundle
    ort_cpu = lambda: OnnxRuntimeBackend.from_bundle(b, device="cpu", threads=threads, int8=False)  # noqa: E731
    out.append(Candidate("onnxruntime cpu fp32", "cpu", ort_cpu))
    if b.has(FRAME_ENCODER_INT8_ONNX):  # beside fp32 in the same run: the int8 / fp32 ratio is meaningful
        ort_int8 = lambda: OnnxRuntimeBackend.from_bundle(b, device="cpu", threads=threads, int8=True)  # noqa: E731
        out.append(Candidate("onnxruntime cpu int8", "cpu", ort_int8))
    if cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        out.append(Candidate("onnxruntime cuda fp32", "cuda", lambda: OnnxRuntimeBackend.from_bundle(b, device="cuda")))
    if cuda and tensorrt_unavailable_reason() is None and b.engines():
        from export.tensorrt_runtime import TensorRTBackend

        out.append(Candidate("tensorrt cuda fp16", "cuda", lambda: TensorRTBackend.from_bundle(b, fp16=True)))
        out.append(Candidate("tensorrt cuda fp32", "cuda", lambda: TensorRTBackend.from_bundle(b, fp16=False)))
    return out


def _time(fn: Callable[[], Any], repeats: int, warmup: int, budget_s: float) -> list[float]:
    for _ in range(warmup):
        fn()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _stats(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1e3
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)), "runs": len(times)}


def run_bench(
    bundle_path: str | Path | None,
    *,
    model: R3D | None = None,
    encoder_batches: Sequence[int] = ENCODER_BATCHES,
    lengths: Sequence[int] = LENGTHS,
    repeats: int = 20,
    warmup: int = 3,
    budget_s: float = 15.0,
    only: Sequence[str] | None = None,
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure every candidate backend; returns {"machine", "bundle", "rows", "skipped"} (see module docstring).

    only: keep candidates whose label starts with one of these (e.g. "onnxruntime", "pytorch cuda").
    budget_s: a cell stops after this many seconds once it has 3 runs.
    threads: CPU threads for PyTorch (torch.set_num_threads) and ONNX Runtime (intra-op); default: theirs.
    """
    if threads:
        torch.set_num_threads(threads)
    bundle = load_bundle(bundle_path) if bundle_path is not None else None
    if bundle is None and model is None:
        raise ValueError("expected a bundle path, a model or both, got neither")
    cfg = bundle.config if bundle else model.cfg  # type: ignore[union-attr]
    model_id = bundle.model_id if bundle else model_identity(model)[0]  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for cand in candidates(bundle, model, threads=threads):
        if only and not any(cand.label.startswith(o) for o in only):
            continue
        try:
            backend = cand.make()
        except (BackendUnavailableError, R3DError, RuntimeError, ImportError) as exc:
            logger.warning("skipping %s: %s", cand.label, exc)
            skipped.append({"backend": cand.label, "reason": str(exc)})
            continue
        rows += _measure(backend, cand, cfg, encoder_batches, lengths, rng, skipped,
                         repeats=repeats, warmup=warmup, budget_s=budget_s)  # fmt: skip
        del backend
    _add_ratios(rows)
    return {"machine": machine_info(), "bundle": str(bundle.path) if bundle else None, "model_id": model_id,
            "config": {"backbone": cfg.backbone, "hidden": cfg.hidden, "max_len": cfg.max_len,
                       "fusion": cfg.fusion, "selection": cfg.selection},
            "repeats": repeats, "warmup": warmup, "threads": threads, "rows": rows, "skipped": skipped}  # fmt: skip


def _measure(
    backend: InferenceBackend,
    cand: Candidate,
    cfg: R3DConfig,
    encoder_batches: Sequence[int],
    lengths: Sequence[int],
    rng: np.random.Generator,
    skipped: list[dict[str, str]],
    *,
    repeats: int,
    warmup: int,
    budget_s: float,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    (h, w), (dh, dw) = cfg.preprocessing.image_size, cfg.preprocessing.depth_size
    base = {"backend": cand.label, "device_type": cand.device_type, "device": str(backend.info().get("device"))}
    for b in encoder_batches:
        images = rng.standard_normal((b, 3, h, w), dtype=np.float32)
        depths = rng.random((b, cfg.preprocessing.depth_channels, dh, dw), dtype=np.float32)
        st = _stats(_time(lambda: backend.encode(images, depths), repeats, warmup, budget_s))  # noqa: B023
        rows.append(base | {"graph": "frame_encoder", "batch": b, "T": None, **st})
        rows[-1]["frames_per_s"] = b / st["median_ms"] * 1e3
        logger.info("%s frame_encoder batch %d: %.2f ms", cand.label, b, st["median_ms"])
    for t in lengths:
        if t > cfg.max_len:
            skipped.append({"backend": cand.label, "reason": f"T={t} exceeds max_len={cfg.max_len}"})
            continue
        tokens = np.maximum(rng.standard_normal((1, t, 2, cfg.hidden), dtype=np.float32), 0)
        valid = np.ones((1, t), bool)
        st = _stats(_time(lambda: backend.anticipate(tokens, valid), repeats, warmup, budget_s))  # noqa: B023
        rows.append(base | {"graph": "anticipator", "batch": 1, "T": t, **st})
        logger.info("%s anticipator T %d: %.2f ms", cand.label, t, st["median_ms"])
    return rows


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    """speedup = PyTorch eager fp32 median on the same device type / this median (> 1: faster than eager)."""
    base = {(r["device_type"], r["graph"], r["batch"], r["T"]): r["median_ms"]
            for r in rows if r["backend"] == f"pytorch {r['device_type']} fp32"}  # fmt: skip
    for r in rows:
        ref = base.get((r["device_type"], r["graph"], r["batch"], r["T"]))
        r["speedup_vs_eager"] = ref / r["median_ms"] if ref else None


def format_table(result: dict[str, Any]) -> str:
    """The result as two Markdown tables and a line naming the machine."""
    m = result["machine"]
    v = m["versions"]
    lines = [
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch threads {m['torch_threads']}"
        + (f", GPU {m['gpu']}" if "gpu" in m else "")
        + f"; torch {v['torch']}, onnxruntime {v['onnxruntime']}"
        + (f", tensorrt {v['tensorrt']}" if "tensorrt" in v else ""),
        f"Model {result['model_id']}: {result['config']}; {result['repeats']} runs after {result['warmup']} warm-up",
        "",
        "| FrameEncoder backend | batch | frames/s | median ms | p95 ms | vs eager |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]  # fmt: skip
    ratio = lambda r: "n/a" if r["speedup_vs_eager"] is None else f"{r['speedup_vs_eager']:.2f}x"  # noqa: E731
    for r in (r for r in result["rows"] if r["graph"] == "frame_encoder"):
        lines.append(f"| {r['backend']} | {r['batch']} | {r['frames_per_s']:.1f} | {r['median_ms']:.2f} | "
                     f"{r['p95_ms']:.2f} | {ratio(r)} |")  # fmt: skip
    lines += ["", "| Anticipator backend | T | median ms | p95 ms | vs eager |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in (r for r in result["rows"] if r["graph"] == "anticipator"):
        lines.append(f"| {r['backend']} | {r['T']} | {r['median_ms']:.2f} | {r['p95_ms']:.2f} | {ratio(r)} |")
    notes = sorted({f"skipped: {s['reason']}" if "max_len" in s["reason"] else f"skipped {s['backend']}: {s['reason']}"
                    for s in result["skipped"]})  # fmt: skip
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"
