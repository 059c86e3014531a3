"""The int8 frame encoder (`r3d-export --int8`): ONNX Runtime static quantisation of a bundle's frame_encoder.onnx.

    calibration: camera frames through model.prepare_inputs (the served input path) - frames of a dataset in the
                 common format (the synthetic world: `--calibration DATASET`, its train split), else the
                 deterministic camera-like frames of export.parity
    quantisation: quant_pre_process (shape inference, fusions), then quantize_static in the QDQ format, per-channel
                 int8 weights in 7 bits (reduce_range: on an x86 CPU without VNNI, ONNX Runtime's u8 x s8 kernels
                 saturate with 8-bit weights; measured on a 2.0 GHz Xeon with AVX-512 but no VNNI, the tokens' relative
                 error was 0.21 against the 0.1 tolerance with 8 bits, within it with 7), activations from MinMax
                 calibration: "uint8" (asymmetric, the default: what ONNX Runtime's x86 kernels are fast with) or
                 "int8" (symmetric, `--int8-activations int8`: what a strongly typed TensorRT engine needs, but slower
                 than fp32 in ONNX Runtime on the CPU: measured 18.8 ms vs 13.0 ms fp32 and 7.3 ms uint8 per frame,
                 docs/export.md)
    parity:      tokens of the int8 graph against the fp32 graph on frames held out of calibration: the relative error
                 (mean abs difference / mean abs fp32 token; the max abs difference is reported beside it) ->
                 parity.json["frame_encoder_int8"]; the graph enters the bundle only if it passes. A relative mean
                 catches a broken quantisation (error ~ 1); whether int8 is good enough is the accuracy's call
    accuracy:    next-action accuracy of fp32 and int8 tokens on a test split, recorded by scripts/int8_accuracy.py
                 (evaluation lives in `training`, which export may not import) via record_int8_accuracy

The server's ONNX Runtime backend uses the int8 graph by default only when Bundle.int8_status() allows it.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from export.bundle import (
    FRAME_ENCODER_INT8_ONNX,
    FRAME_ENCODER_ONNX,
    INT8_REPORT,
    PARITY,
    Bundle,
    load_bundle,
    write_manifest,
)
from export.errors import ExportError, ParityError
from export.parity import synthetic_camera_frames
from model.preprocess import Preprocessing, prepare_inputs
from model.r3d import R3DConfig
from rgbd.dataset import Dataset, read_depth
from rgbd.files import write_json_atomic

logger = logging.getLogger(__name__)

# relative token error int8 vs fp32 (mean abs difference / mean abs fp32 token): measured 0.044 (held-out world frames)
# and 0.059 (synthetic camera frames) on the default model (docs/export.md); a broken graph is near 1
INT8_TOLERANCE = 0.1
Inputs = tuple[np.ndarray, np.ndarray]  # images (N, 3, H, W), depths (N, D, h, w) float32


def dataset_inputs(root: Path, pre: Preprocessing, count: int, *, split: str = "train", offset: int = 0) -> Inputs:
    """`count` frames spread evenly over a dataset split (all sequences when it has no splits), prepared as served.

    offset shifts every pick by that many frames, so that calibration and parity use different frames."""
    dataset = Dataset(root)
    ids = dataset.split(split) if dataset.splits else dataset.sequence_ids
    if not ids:
        raise ExportError(f"calibration dataset {root} has no sequences in split {split!r}")
    per_seq = max(1, -(-count // len(ids)))
    images, depths = [], []
    for seq_id in ids:
        meta = dataset.meta(seq_id)
        step = max(1, meta.num_frames // per_seq)
        locator = pre.locator()  # per sequence; it sees only the picked frames, enough for calibration statistics
        for index in range(offset % step, meta.num_frames, step)[:per_seq]:
            rgb_path, depth_path = dataset.frame_files(seq_id, index, meta)
            color = rgb_path.read_bytes() if rgb_path is not None else None  # a depth-only dataset: no colour
            image, dmap = prepare_inputs(color, read_depth(depth_path), meta.depth_scale, pre, locator)
            images.append(image)
            depths.append(dmap)
    return np.stack(images[:count]), np.stack(depths[:count])


def camera_inputs(pre: Preprocessing, count: int, seed: int = 0) -> Inputs:
    rgb, depth, scale = synthetic_camera_frames(n=count, seed=seed)
    locator = pre.locator()  # the frames are one camera's, in order
    pairs = [prepare_inputs(c, d, scale, pre, locator) for c, d in zip(rgb, depth, strict=True)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


class FrameCalibration:
    """onnxruntime.quantization.CalibrationDataReader over prepared frames, in batches."""

    def __init__(self, inputs: Inputs, batch: int = 8) -> None:
        self.images, self.depths = inputs
        self.batch = batch
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.images):
            return None
        s = slice(self.position, self.position + self.batch)
        self.position += self.batch
        return {"image": self.images[s], "depth": self.depths[s]}

    def rewind(self) -> None:
        self.position = 0


ACTIVATIONS = ("uint8", "int8")


def quantize_frame_encoder(fp32_onnx: Path, out: Path, calibration: Inputs, activations: str = "uint8") -> None:
    """Static QDQ quantisation of the frame encoder graph, calibrated on `calibration`; activations "uint8"
    (asymmetric) or "int8" (symmetric, for TensorRT)."""
    if activations not in ACTIVATIONS:
        raise ValueError(f"expected activations one of {ACTIVATIONS}, got {activations!r}")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(FrameCalibration, CalibrationDataReader):  # ORT checks the base class
        pass

    with tempfile.TemporaryDirectory(prefix="r3d-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
        symmetric = activations == "int8"
        quantize_static(
            str(prepared), str(out), Reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
            reduce_range=True, activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        )  # fmt: skip


def token_parity(fp32_onnx: Path, int8_onnx: Path, inputs: dict[str, Inputs], tolerance: float) -> dict[str, Any]:
    """Tokens of both graphs on each named input set (batches of 8): the parity.json report of the int8 encoder."""
    from export.ort_backend import make_session

    cpu = ["CPUExecutionProvider"]
    ref, got = make_session(str(fp32_onnx), cpu), make_session(str(int8_onnx), cpu)
    cases: list[dict[str, Any]] = []
    for label, (images, depths) in inputs.items():
        ref_tokens, got_tokens = [], []
        for s in range(0, len(images), 8):
            feed = {"image": images[s : s + 8], "depth": depths[s : s + 8]}
            ref_tokens.append(ref.run(["tokens"], feed)[0])
            got_tokens.append(got.run(["tokens"], feed)[0])
        a, b = np.concatenate(ref_tokens).astype(np.float64), np.concatenate(got_tokens).astype(np.float64)
        relative = float(np.abs(a - b).mean() / max(np.abs(a).mean(), 1e-12))
        cases.append({"graph": "frame_encoder", "inputs": label, "batch": 8, "T": None, "frames": len(images),
                      "relative_mean_abs": relative, "max_abs": {"tokens": float(np.abs(a - b).max())},
                      "mean_abs": {"tokens": float(np.abs(a - b).mean())}, "max_abs_fp32_token": float(np.abs(a).max()),
                      "ok": bool(relative <= tolerance)})  # fmt: skip
    return {
        "reference": "onnxruntime cpu fp32",
        "candidate": "onnxruntime cpu int8 (QDQ, per-channel weights)",
        "tolerance": tolerance,
        "metric": "relative token error (mean abs difference / mean abs fp32 token)",
        "value": max(c["relative_mean_abs"] for c in cases),
        "max_abs": max(c["max_abs"]["tokens"] for c in cases),
        "passed": all(c["ok"] for c in cases),
        "cases": cases,
        "accuracy": None,
    }


def _rewrite(bundle: Bundle, parity: dict[str, Any]) -> Bundle:
    write_json_atomic(bundle.path / PARITY, parity, sort_keys=True)
    extra = {k: v for k, v in bundle.manifest.items()
             if k not in ("format", "version", "model_id", "frame_encoder_id", "files")}  # fmt: skip
    write_manifest(bundle.path, model_id=bundle.model_id, frame_encoder_id=bundle.frame_encoder_id, extra=extra)
    return load_bundle(bundle.path)


def add_int8(
    bundle_path: str | Path,
    *,
    calibration: Path | None = None,
    calibration_frames: int = 200,
    parity_frames: int = 48,
    tolerance: float = INT8_TOLERANCE,
    activations: str = "uint8",
) -> Bundle:
    """Quantise the bundle's frame encoder, check its tokens and add it (graph + parity report) to the bundle.

    Raises ParityError, leaving the bundle as it was, when the int8 tokens differ beyond `tolerance`."""
    bundle = load_bundle(bundle_path)
    cfg: R3DConfig = bundle.config
    pre = cfg.preprocessing
    if calibration is not None:
        calib = dataset_inputs(calibration, pre, calibration_frames)
        held_out = {f"{calibration.name} frames not used for calibration": dataset_inputs(
            calibration, pre, parity_frames, offset=1)}  # fmt: skip
        source = f"{len(calib[0])} frames of {calibration.name} (train split)"
    else:
        calib = camera_inputs(pre, calibration_frames)
        held_out = {}
        source = f"{len(calib[0])} synthetic camera frames (export.parity)"
    held_out["synthetic camera frames (other seed)"] = camera_inputs(pre, min(parity_frames, 16), seed=1)
    fp32, target = bundle.file(FRAME_ENCODER_ONNX), bundle.file(FRAME_ENCODER_INT8_ONNX)
    work = bundle.path / f".{FRAME_ENCODER_INT8_ONNX}.partial"
    try:
        logger.info("quantising the frame encoder, calibrated on %s", source)
        quantize_frame_encoder(fp32, work, calib, activations)
        report = token_parity(fp32, work, held_out, tolerance) | {"calibration": source, "activations": activations}
        if not report["passed"]:
            raise ParityError(
                f"int8 frame encoder tokens differ from fp32 by a relative error of {report['value']:.3g} > tolerance "
                f"{tolerance:g} (max abs {report['max_abs']:.3g}); the bundle keeps only its fp32 graphs"
            )
        work.replace(target)
    finally:
        work.unlink(missing_ok=True)
    logger.info("int8 frame encoder: relative token error %.3g (tolerance %g), max abs %.3g", report["value"],
                tolerance, report["max_abs"])  # fmt: skip
    return _rewrite(bundle, dict(bundle.parity) | {INT8_REPORT: report})


def record_int8_accuracy(bundle_path: str | Path, accuracy: dict[str, Any]) -> Bundle:
    """Write the measured next-action accuracy of fp32 and int8 tokens (keys fp32, int8, split, windows, ...) into
    the int8 report of parity.json; Bundle.int8_status() reads it."""
    bundle = load_bundle(bundle_path)
    if INT8_REPORT not in bundle.parity:
        raise ExportError(f"bundle {bundle.path} has no int8 frame encoder; run r3d-export --int8 first")
    missing = sorted({"fp32", "int8"} - set(accuracy))
    if missing:
        raise ValueError(f"expected next-action accuracies for fp32 and int8, missing {missing}")
    report = dict(bundle.parity[INT8_REPORT]) | {"accuracy": accuracy | {"change": accuracy["int8"] - accuracy["fp32"]}}
    return _rewrite(bundle, dict(bundle.parity) | {INT8_REPORT: report})
