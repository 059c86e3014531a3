"""`r3d-export`: checkpoints into verified bundles, TensorRT engines, bundle checks and the backend benchmark.

    r3d-export CHECKPOINT --out BUNDLE [--frames FRAMES.npz] [--tolerance 1e-4] [--int8 [--calibration DATASET]]
               [--tensorrt] [--force]
    r3d-export int8 BUNDLE [--calibration DATASET] [--calibration-frames 200] [--int8-activations uint8|int8]
    r3d-export tensorrt BUNDLE [--precisions fp16,fp32,int8] [--encoder-batch 64] [--anticipator-batch 8]
    r3d-export verify BUNDLE
    r3d-export bench BUNDLE [--json bench.json] [--only onnxruntime] [--repeats 20]

Exit status: 0 on success, 1 when the input is refused or a check fails (the message says why), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from export.errors import ExportError
from model.errors import R3DError

logger = logging.getLogger(__name__)

COMMANDS = ("tensorrt", "int8", "verify", "bench")


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,8,32, got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _precisions(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in ("fp16", "fp32", "int8")]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"expected fp16, fp32 and/or int8 separated by commas, got {text!r}")
    return values


def _add_tensorrt_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precisions",
        type=_precisions,
        default=["fp16", "fp32"],
        help="engines to build (fp16,fp32; int8 needs r3d-export int8 first)",
    )
    p.add_argument("--encoder-batch", type=int, default=64, help="largest FrameEncoder batch of the engine profile")
    p.add_argument("--anticipator-batch", type=int, default=8, help="largest Anticipator batch of the engine profile")
    p.add_argument("--timing-cache", type=Path, help="TensorRT timing cache to start from (default: the bundle's)")
    p.add_argument("--fp16-tolerance", type=float, default=None, help="max abs difference of fp16 engines vs ORT")


def _add_int8_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration", type=Path, help="dataset folder whose train-split frames calibrate int8 "
                   "(default: synthetic camera frames; the synthetic world from r3d-data synth is better)")  # fmt: skip
    p.add_argument("--calibration-frames", type=int, default=200, help="frames to calibrate on (default 200)")
    p.add_argument("--int8-tolerance", type=float, default=None,
                   help="relative token error allowed, int8 vs fp32 (default 0.1)")  # fmt: skip
    p.add_argument("--int8-activations", choices=["uint8", "int8"], default="uint8",
                   help="uint8: fast in ONNX Runtime on the CPU (default); int8: symmetric, needed for TensorRT int8 "
                   "engines, slower on the CPU")  # fmt: skip


def export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="r3d-export", description="Export a checkpoint into a verified bundle.",
                                epilog=f"other commands: r3d-export {{{','.join(COMMANDS)}}} --help")  # fmt: skip
    p.add_argument("checkpoint", type=Path, help="checkpoint .safetensors written by r3d-train")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--frames", type=Path, help="camera frames for the parity check (.npz: rgb, depth, depth_scale)")
    p.add_argument("--tolerance", type=float, default=None, help="max abs difference ORT vs PyTorch (default 1e-4)")
    p.add_argument("--lengths", type=_ints, default=None, help="window lengths T to check (default 1,7,window,max)")
    p.add_argument("--batches", type=_ints, default=[1, 3], help="batch sizes to check (default 1,3)")
    p.add_argument("--int8", action="store_true", help="also add an int8 frame encoder (ONNX Runtime static "
                   "quantisation), served once scripts/int8_accuracy.py records <= 1 point lost")  # fmt: skip
    _add_int8_options(p)
    p.add_argument("--tensorrt", action="store_true", help="also build TensorRT engines (needs tensorrt and CUDA)")
    _add_tensorrt_options(p)
    return p


def command_parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"r3d-export {command}")
    p.add_argument("bundle", type=Path, help="bundle folder written by r3d-export")
    if command == "tensorrt":
        p.description = "Build TensorRT engines into a bundle and check them against ONNX Runtime."
        _add_tensorrt_options(p)
    elif command == "int8":
        p.description = "Add an int8 frame encoder (ONNX Runtime static QDQ quantisation) to a bundle, token-checked."
        _add_int8_options(p)
    elif command == "verify":
        p.description = "Check a bundle's manifest, hashes and config; print its summary."
    else:
        p.description = "Benchmark every backend available here on a bundle."
        p.add_argument("--json", type=Path, default=Path("bench.json"), help="results file (a .md table beside it)")
        p.add_argument("--only", nargs="*", help="backend labels to keep, by prefix (e.g. onnxruntime 'pytorch cpu')")
        p.add_argument("--encoder-batches", type=_ints, default=[1, 8, 32])
        p.add_argument("--lengths", type=_ints, default=[100, 500, 2000])
        p.add_argument("--repeats", type=int, default=20)
        p.add_argument("--warmup", type=int, default=3)
        p.add_argument("--budget", type=float, default=15.0, help="seconds per cell once it has 3 runs")
        p.add_argument("--threads", type=int, help="CPU threads for PyTorch and ONNX Runtime (default: theirs)")
    return p


def _tensorrt_kwargs(args: argparse.Namespace) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "precisions": args.precisions,
        "encoder_batch": args.encoder_batch,
        "anticipator_batch": args.anticipator_batch,
        "timing_cache": args.timing_cache,
    }
    if args.fp16_tolerance is not None:
        kwargs["fp16_tolerance"] = args.fp16_tolerance
    return kwargs


def run_export(args: argparse.Namespace) -> int:
    from export.onnx_export import export_checkpoint
    from export.parity import load_frames_npz

    if args.tensorrt:  # refuse before the long export, not after
        from export.backends import tensorrt_unavailable_reason

        reason = tensorrt_unavailable_reason()
        if reason:
            raise ExportError(f"--tensorrt: {reason}; export without it and build engines where TensorRT runs")
    kwargs: dict[str, object] = {"force": args.force, "batches": args.batches, "ts": args.lengths}
    if args.tolerance is not None:
        kwargs["tolerance"] = args.tolerance
    if args.frames:
        kwargs["frames"], kwargs["frames_label"] = load_frames_npz(args.frames), str(args.frames)
    bundle = export_checkpoint(args.checkpoint, args.out, **kwargs)
    if args.int8:
        bundle = _int8(args.out, args)
    if args.tensorrt:
        from export.tensorrt_build import build_engines

        bundle = build_engines(args.out, **_tensorrt_kwargs(args))  # type: ignore[arg-type]
    _summary(bundle.path)
    return 0


def _summary(path: Path) -> None:
    from export.bundle import load_bundle

    bundle = load_bundle(path)
    cfg = bundle.config
    lines = [
        f"bundle {bundle.path}: model {bundle.model_id}, frame encoder {bundle.frame_encoder_id}",
        f"  classes {cfg.classes}, fusion {cfg.fusion}, max_len {cfg.max_len}, fps {cfg.fps}",
    ]
    for name, rep in bundle.parity.items():
        metric = "max abs" if "value" not in rep else "relative token error"
        lines.append(f"  parity {name}: {metric} {rep.get('value', rep['max_abs']):.3g} <= {rep['tolerance']:g} over "
                     f"{len(rep['cases'])} cases ({rep['candidate']} vs {rep['reference']})")  # fmt: skip
    for name in sorted(bundle.manifest["files"]):
        lines.append(f"  {name}  {bundle.manifest['files'][name]['bytes']} bytes")
    served, why = bundle.int8_status()
    lines.append(f"  int8 frame encoder served by default on the CPU: {'yes' if served else 'no'} ({why})")
    sys.stdout.write("\n".join(lines) + "\n")


def _int8(bundle: Path, args: argparse.Namespace) -> Any:
    from export.int8 import add_int8

    kwargs: dict[str, Any] = {"calibration": args.calibration, "calibration_frames": args.calibration_frames,
                              "activations": args.int8_activations}  # fmt: skip
    if args.int8_tolerance is not None:
        kwargs["tolerance"] = args.int8_tolerance
    return add_int8(bundle, **kwargs)


def run_int8(args: argparse.Namespace) -> int:
    _summary(_int8(args.bundle, args).path)
    return 0


def run_tensorrt(args: argparse.Namespace) -> int:
    from export.tensorrt_build import build_engines

    _summary(build_engines(args.bundle, **_tensorrt_kwargs(args)).path)  # type: ignore[arg-type]
    return 0


def run_verify(args: argparse.Namespace) -> int:
    _summary(args.bundle)
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from export.bench import format_table
    from export.bench import run_bench as bench
    from rgbd.files import write_bytes_atomic, write_json_atomic

    result = bench(args.bundle, encoder_batches=args.encoder_batches, lengths=args.lengths, repeats=args.repeats,
                   warmup=args.warmup, budget_s=args.budget, only=args.only, threads=args.threads)  # fmt: skip
    table = format_table(result)
    write_json_atomic(args.json, result)
    write_bytes_atomic(args.json.with_suffix(".md"), table.encode())
    sys.stdout.write(table + f"\nsaved {args.json} and {args.json.with_suffix('.md')}\n")
    return 0


RUNNERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "tensorrt": run_tensorrt,
    "int8": run_int8,
    "verify": run_verify,
    "bench": run_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx", "torch._export", "torch.export"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if argv and argv[0] in COMMANDS:
        command, args = argv[0], command_parser(argv[0]).parse_args(argv[1:])
        runner = RUNNERS[command]
    else:
        args, runner = export_parser().parse_args(argv), run_export
    try:
        return runner(args)
    except (R3DError, OSError) as exc:  # ExportError, BundleError, ParityError, CheckpointError, ...
        logger.debug("failed", exc_info=True)
        sys.stderr.write(f"r3d-export: error: {exc}\n")
        return 1
    except json.JSONDecodeError as exc:
        sys.stderr.write(f"r3d-export: error: {exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
