"""The service under load on one GPU: `python -m benchmarks.gpu_load --out DIR [--streams 4,8,16] [--servers K]`.

Runs r3d-serve on the GPU (PyTorch CUDA by default: the lent machines have a CPU-only onnxruntime; --backend
onnxruntime uses the CUDA execution provider where onnxruntime-gpu is installed) and, for each stream count in turn,
N synthetic 30-fps RGB-D streams against it (benchmarks.loadtest, the load generator split over several processes),
split over --servers K server processes sharing the GPU (one Python process's GIL caps what one server feeds it),
until a count misses the goal (p99 frame->prediction < 100 ms, no drops) or the time budget (default 9 minutes)
would be exceeded. Writes DIR/gpu_load.json and DIR/gpu_load.md: the machine, the model, fp16 parity with fp32 when
--fp16, and one table row per stream count; the headline is the most streams that met the goal.

The server gets larger encoder batches and more decode threads than the CPU defaults (--encoder-max-batch,
--decode-threads); every other setting is the service's default. A quick check anywhere:
    python -m benchmarks.gpu_load --out /tmp/gl --device cpu --streams 1 --seconds 3 --fps 15
--extra-path DIR appends DIR to sys.path after the installed packages (packages missing on the GPU machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)
GOAL = "p99 frame->prediction < 100 ms, no drops"
STARTUP_ALLOWANCE_S = 60.0  # per stream count: server start and model load, the last predictions, teardown


def machine(device: str) -> dict[str, Any]:
    """CPU model and cores, and the GPU's name when the device is CUDA."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    out: dict[str, Any] = {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version()}
    if device.startswith("cuda"):
        import torch

        out |= {"gpu": torch.cuda.get_device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda}
    return out


def fp16_parity(model: Path, device: str) -> dict[str, Any]:
    """Largest |fp16 - fp32| of the FrameEncoder's tokens and the Anticipator's segmentation logits on camera-like
    random inputs at the model's size, and whether the current action (argmax at the last frame) agrees."""
    from export.backends import load_backend

    full = load_backend(model, "pytorch", device=device)
    half = load_backend(model, "pytorch", device=device, fp16=True)
    pre = full.config.preprocessing
    rng = np.random.default_rng(0)
    images = rng.normal(size=(16, 3, *pre.image_size)).astype(np.float32)
    depths = rng.uniform(size=(16, pre.depth_channels, *pre.depth_size)).astype(np.float32)
    tokens = full.encode(images, depths)
    window = np.tile(tokens, (full.config.window_frames // 16 + 1, 1, 1))[None, : full.config.window_frames]
    valid = np.ones(window.shape[:2], bool)
    a, b = full.anticipate(window, valid).segment_logits, half.anticipate(window, valid).segment_logits
    return {
        "tokens_max_abs_diff": float(np.abs(half.encode(images, depths) - tokens).max()),
        "segment_logits_max_abs_diff": float(np.abs(a - b).max()),
        "current_action_agrees": bool(a[0, -1].argmax() == b[0, -1].argmax()),
    }


def sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    os.environ["R3D_ENCODER_MAX_BATCH"] = str(args.encoder_max_batch)
    os.environ["R3D_DECODE_THREADS"] = str(args.decode_threads)
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + args.budget_s
    for n in args.streams:
        if time.monotonic() + args.seconds + STARTUP_ALLOWANCE_S > deadline:
            logger.warning("stopping before %d streams: the time budget (%g s) would be exceeded", n, args.budget_s)
            break
        logger.info("%d streams x %g fps for %g s over %d server(s)", n, args.fps, args.seconds, args.servers)
        report = streams_over_servers(args, n)
        rows.append(report)
        logger.info("%d streams: %s", n, report["verdict"])
        if not report["verdict"].startswith("goal met"):
            break
    return rows


def streams_over_servers(args: argparse.Namespace, n: int) -> dict[str, Any]:
    """n streams split over args.servers r3d-serve processes sharing the GPU: one loadtest each (its own server and
    load generator), all started together; their send windows begin when each server is ready (within seconds of
    each other, the servers starting in parallel)."""
    shares = [len(part) for part in np.array_split(np.arange(n), args.servers) if len(part)]
    work = args.out / "work" / f"streams-{n}"
    work.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, share in enumerate(shares):
        argv = ["--model", str(args.model), "--backend", args.backend, "--device", args.device, "--streams", str(share),
                "--fps", str(args.fps), "--tick-hz", str(args.tick_hz), "--seconds", str(args.seconds),
                "--send-size", args.send_size, "--client-processes", str(max(1, min(args.client_processes, share))),
                "--work-dir", str(work / f"server-{i}"), "--json", str(work / f"server-{i}.json")]  # fmt: skip
        argv += ["--fp16"] if args.fp16 else []
        with (work / f"server-{i}.log").open("wb") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "benchmarks.loadtest", *argv], stdout=log,
                                          stderr=subprocess.STDOUT))  # fmt: skip
    failed = [i for i, proc in enumerate(procs) if proc.wait() != 0]
    if failed:
        raise RuntimeError(f"loadtest failed for server(s) {failed}; see {work}/server-N.log")
    return merge([json.loads((work / f"server-{i}.json").read_text()) for i in range(len(shares))])


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for streams spread over several servers: counts and rates summed, latencies the worst server's,
    batch sizes and times averaged; the goal is met only when every server met it."""
    if len(reports) == 1:
        return reports[0] | {"servers": 1}
    total = {k: round(sum(r[k] for r in reports), 2) for k in ("streams", "frames_sent_per_s", "frames_used_per_s",
             "predictions_per_s", "dropped", "unanswered", "server_cpu_cores", "loadgen_cpu_cores")}  # fmt: skip
    mean = {k: round(float(np.mean([r[k] for r in reports])), 2) for k in ("encode_batch_mean", "encode_ms_per_batch",
            "anticipate_batch_mean", "anticipate_ms_per_batch", "decode_ms_per_frame")}  # fmt: skip
    worst = {q: max(r["latency_ms"][q] for r in reports) for q in ("p50", "p95", "p99", "max")}
    missed = [f"server {i}: {r['verdict']}" for i, r in enumerate(reports) if not r["verdict"].startswith("goal met")]
    verdict = (
        f"goal missed ({missed[0]})" if missed else f"goal met on every server: worst p99 {worst['p99']} ms, no drops"
    )
    return {**reports[0], **total, **mean, "latency_ms": worst, "servers": len(reports), "verdict": verdict,
            "per_server": reports}  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    m, rows = result["machine"], result["rows"]
    met = [r["streams"] for r in rows if r["verdict"].startswith("goal met")]
    lines = [
        f"# Service load on one GPU ({m.get('gpu', result['device'])})",
        "",
        f"Machine: {m.get('gpu', 'no GPU')}, {m['cpu']} ({m['cpus']} CPUs), Python {m['python']}"
        + (f", torch {m['torch']} (CUDA {m['cuda']})" if "torch" in m else "") + ".",
        f"Command: `{result['command']}`",
        f"Backend {result['backend']} on {result['device']}{' fp16' if result['fp16'] else ' fp32'}, model "
        f"{result['model']}; streams at {result['fps']:g} fps, {result['resolution']}, send size "
        f"{result['send_size']}, {result['tick_hz']:g} predictions/s per stream; goal: {GOAL}.",
        "",
        f"**Most streams meeting the goal: {max(met) if met else 'none of those tried'}.**",
        "",
    ]  # fmt: skip
    if result["servers"] > 1:
        lines += [f"Streams split evenly over {result['servers']} r3d-serve processes on the one GPU; latencies are "
                  "the worst server's percentiles, counts and rates the sums.", ""]  # fmt: skip
    if result.get("fp16_parity"):
        p = result["fp16_parity"]
        lines += [f"fp16 against fp32 on this GPU: tokens differ by at most {p['tokens_max_abs_diff']:.2e}, "
                  f"segmentation logits by {p['segment_logits_max_abs_diff']:.2e}; current action agrees: "
                  f"{p['current_action_agrees']}.", ""]  # fmt: skip
    lines += [
        "| streams | servers | frames used/s | dropped | p50 / p95 / p99 ms | encode batch / ms "
        "| anticipate batch / ms | server CPU cores | verdict |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lat = r["latency_ms"]
        lines.append(
            f"| {r['streams']} | {r['servers']} | {r['frames_used_per_s']} | {r['dropped']} | {lat['p50']} / "
            f"{lat['p95']} / {lat['p99']} | {r['encode_batch_mean']} / {r['encode_ms_per_batch']} | "
            f"{r['anticipate_batch_mean']} / {r['anticipate_ms_per_batch']} | {r['server_cpu_cores']} | "
            f"{r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_load.json and gpu_load.md")
    p.add_argument("--model", type=Path, default=Path("models/default/model.safetensors"),
                   help="checkpoint (pytorch) or bundle (default: the committed default model)")  # fmt: skip
    p.add_argument("--backend", default="pytorch", choices=("pytorch", "onnxruntime", "tensorrt", "auto"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--fp16", action="store_true", help="serve in half precision (parity with fp32 is reported)")
    p.add_argument(
        "--streams",
        default="4,8,12,16,24,32,48,64,100,200",
        help="total stream counts to try in turn, comma-separated (default: %(default)s)",
    )
    p.add_argument(
        "--servers",
        type=int,
        default=1,
        help="r3d-serve processes sharing the GPU, the streams split evenly over them (default 1)",
    )
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--tick-hz", type=float, default=5.0, help="predictions per second per stream")
    p.add_argument("--seconds", type=float, default=20.0, help="per stream count")
    p.add_argument("--send-size", choices=("full", "model"), default="full")
    p.add_argument("--encoder-max-batch", type=int, default=256)
    p.add_argument("--decode-threads", type=int, default=max(2, (os.cpu_count() or 4) // 2))
    p.add_argument("--client-processes", type=int, default=max(1, (os.cpu_count() or 4) // 4))
    p.add_argument("--budget-s", type=float, default=540.0, help="stop trying more streams after this long")
    p.add_argument("--extra-path", type=Path, action="append", default=[], help="appended to sys.path")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.path.extend(str(x.resolve()) for x in args.extra_path)
    try:
        args.streams = [int(n) for n in args.streams.split(",")]
    except ValueError:
        sys.stderr.write(f"gpu_load: expected --streams as comma-separated integers, got {args.streams!r}\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rgbd.files import write_bytes_atomic, write_json_atomic

    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "command": "python -m benchmarks.gpu_load " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(args.device), "model": str(args.model), "backend": args.backend, "device": args.device,
        "fp16": args.fp16, "fps": args.fps, "tick_hz": args.tick_hz, "resolution": "640x480",
        "send_size": args.send_size, "servers": args.servers,
    }  # fmt: skip
    if args.fp16:
        result["fp16_parity"] = fp16_parity(args.model, args.device)
    result["rows"] = sweep(args)
    write_json_atomic(args.out / "gpu_load.json", result)
    write_bytes_atomic(args.out / "gpu_load.md", markdown(result).encode())
    sys.stdout.write(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
