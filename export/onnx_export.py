"""ONNX export of the two graphs and of a whole bundle, verified before it is published.

Both graphs go through the dynamo exporter (torch.onnx.export(..., dynamo=True, dynamic_shapes=...)): the legacy
exporter cannot keep the sequence length dynamic through nn.MultiheadAttention. In eval mode RTF's exchanged
channels are the buffers rgb_channels / depth_channels, so they become constants of the graph (no TopK); the
per-sample "variance" selection is computed in the graph from the window, with ties broken by channel index.

The bundle is assembled in a hidden folder beside the target, checked (ONNX checker, then ONNX Runtime against
PyTorch on random and camera inputs at several batch sizes and window lengths) and only then moved into place.
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

import onnx
import onnxruntime as ort
import torch

from export.backends import PyTorchBackend
from export.bundle import (
    ANTICIPATOR_INPUTS,
    ANTICIPATOR_ONNX,
    ANTICIPATOR_OUTPUTS,
    CHECKPOINT,
    CONFIG,
    FRAME_ENCODER_INPUTS,
    FRAME_ENCODER_ONNX,
    FRAME_ENCODER_OUTPUTS,
    PARITY,
    Bundle,
    config_document,
    load_bundle,
    model_identity,
    write_manifest,
)
from export.errors import ExportError
from export.ort_backend import OnnxRuntimeBackend
from export.parity import DEFAULT_TOLERANCE, Frames, raise_on_failure, run_parity
from model.checkpoint import load_checkpoint, save_checkpoint
from model.r3d import R3D
from rgbd.files import write_bytes_atomic, write_json_atomic

logger = logging.getLogger(__name__)

OPSET = 18


def _export(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path, **kwargs: Any) -> None:
    with warnings.catch_warnings():
        # pytree deprecation noise raised from inside torch.export (copyreg), not actionable here
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", category=UserWarning, message=".*axis name.*")
        torch.onnx.export(module, args, str(path), dynamo=True, external_data=False, verbose=False,
                          opset_version=OPSET, **kwargs)  # fmt: skip
    check_onnx(path)


def check_onnx(path: str | Path) -> None:
    """The ONNX checker with shape inference; ExportError naming the file when the graph is invalid."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{Path(path).name} fails the ONNX checker: {exc}") from exc


def export_frame_encoder(model: R3D, path: str | Path) -> Path:
    """image (N, 3, H, W) + depth (N, D, h, w), D = depth_channels -> tokens (N, 2, C), N dynamic."""
    cfg, path = model.cfg, Path(path)
    (h, w), (dh, dw) = cfg.preprocessing.image_size, cfg.preprocessing.depth_size
    n = torch.export.Dim("N", min=1)
    args = (torch.randn(2, 3, h, w), torch.rand(2, cfg.preprocessing.depth_channels, dh, dw))
    _export(model.frame_encoder, args, path, input_names=list(FRAME_ENCODER_INPUTS),
            output_names=list(FRAME_ENCODER_OUTPUTS), dynamic_shapes={"image": {0: n}, "depth": {0: n}})  # fmt: skip
    return path


def export_anticipator(model: R3D, path: str | Path) -> Path:
    """tokens (B, T, 2, C) + valid (B, T) bool -> action (B, Q, K+1), duration (B, Q), segment (B, T, K), fused.

    B is dynamic and T dynamic from 1 to max_len (the positional table); the Python length check of
    Anticipator.forward is decided at export time from that range, so the graph holds no branch.
    """
    cfg, path = model.cfg, Path(path)
    b, t = torch.export.Dim("B", min=1), torch.export.Dim("T", min=1, max=cfg.max_len)
    t0 = min(5, cfg.max_len)
    args = (torch.randn(2, t0, 2, cfg.hidden), torch.ones(2, t0, dtype=torch.bool))
    dynamic = {"tokens": {0: b, 1: t}, "valid": {0: b, 1: t}}
    _export(model.anticipator, args, path, input_names=list(ANTICIPATOR_INPUTS),
            output_names=list(ANTICIPATOR_OUTPUTS), dynamic_shapes=dynamic)  # fmt: skip
    return path


def _versions() -> dict[str, str]:
    import onnxscript

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__,
            "onnxruntime": ort.__version__}  # fmt: skip


def export_bundle(
    model: R3D,
    out: str | Path,
    *,
    checkpoint: bytes | None = None,
    meta: dict[str, Any] | None = None,
    frames: Frames | None = None,
    frames_label: str = "",
    tolerance: float = DEFAULT_TOLERANCE,
    ts: Sequence[int] | None = None,
    batches: Sequence[int] = (1, 3),
    force: bool = False,
) -> Bundle:
    """Export `model` into the bundle folder `out`; returns the verified Bundle.

    checkpoint: the source checkpoint's bytes, copied into the bundle as they are (when None the model is saved).
    Raises ParityError (and writes nothing) when ONNX Runtime differs from PyTorch by more than `tolerance`.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} exists and is not empty; choose another --out or pass --force to replace it")
    model = model.eval().cpu().float()
    model_id, fe_id = model_identity(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    work.chmod(0o755)
    try:
        started = time.perf_counter()
        if checkpoint is None:
            save_checkpoint(work / CHECKPOINT, model, provenance=(meta or {}).get("provenance"),
                            metrics=(meta or {}).get("metrics"))  # fmt: skip
        else:
            write_bytes_atomic(work / CHECKPOINT, checkpoint)
        write_json_atomic(work / CONFIG, config_document(model.cfg, meta), sort_keys=True)
        export_frame_encoder(model, work / FRAME_ENCODER_ONNX)
        export_anticipator(model, work / ANTICIPATOR_ONNX)
        logger.info("exported both graphs in %.1f s", time.perf_counter() - started)
        ids = (model_id, fe_id)
        reference = PyTorchBackend(model, device="cpu", ids=ids, source="export")
        candidate = OnnxRuntimeBackend(work / FRAME_ENCODER_ONNX, work / ANTICIPATOR_ONNX, model.cfg, ids=ids,
                                       device="cpu", source="export")  # fmt: skip
        report = run_parity(reference, candidate, model.cfg, ts=ts, batches=batches, frames=frames,
                            frames_label=frames_label, tolerance=tolerance)  # fmt: skip
        write_json_atomic(work / PARITY, {"onnxruntime": report}, sort_keys=True)
        raise_on_failure(report)
        write_manifest(work, model_id=model_id, frame_encoder_id=fe_id,
                       extra={"exporter": _versions(), "opset": OPSET, "created_unix": round(time.time())})  # fmt: skip
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("bundle %s written (model %s, parity max abs %.2g)", out, model_id, report["max_abs"])
    return load_bundle(out)


def export_checkpoint(path: str | Path, out: str | Path, **kwargs: Any) -> Bundle:
    """Load a checkpoint file and export it (see export_bundle); the checkpoint is copied into the bundle."""
    path = Path(path)
    model, meta = load_checkpoint(path)
    return export_bundle(model, out, checkpoint=path.read_bytes(), meta=meta, **kwargs)
