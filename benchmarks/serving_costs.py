"""What one stream costs the server, stage by stage: `python -m benchmarks.serving_costs --model BUNDLE`.

Measures, in this process and with the server's own functions, the CPU time (all threads, time.process_time) and
wall time per frame of each stage a streamed frame goes through, for both send sizes:
  parse    msgpack + FrameIn validation of the received message (server.protocol.parse_client_message)
  prepare  decode and preprocess to the model's input (server.streaming.ingest.prepare_frame, the decode pool's job)
  encode   the FrameEncoder, per frame, at batches of 1, 8 and 16 (ONNX Runtime with --threads intra-op threads);
           for a depth-only model as the server runs it (no images: the depth branch only) and, beside it, the
           whole frame encoder on all-zero images, which is what the server ran for such frames before
  tick     the Anticipator over a full window, per tick, one call per tick against one batched call (--tick-batch)
and from them the streams a machine's cores can hold at --fps with --tick-hz predictions per stream, if the CPU
were the only limit and nothing else ran (the event loop's WebSocket work and Python overheads are not in it: the
load benchmark, python -m benchmarks.loadtest, measures the whole). Medians over --repeats; the machine is named.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

STAGES = ("parse", "prepare", "encode", "tick")


def _cost(fn: Callable[[], object], repeats: int, per: int = 1) -> tuple[float, float]:
    """(median CPU ms, median wall ms) of fn() over `repeats` runs after one warm-up, divided by `per`."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append((time.process_time() - c0) * 1e3 / per)
        wall.append((time.perf_counter() - w0) * 1e3 / per)
    return round(statistics.median(cpu), 3), round(statistics.median(wall), 3)


def _stream_costs(engine: Any, size: Any, args: argparse.Namespace) -> tuple[dict[str, tuple[float, float]], int]:
    """({"parse SIZE": ..., "prepare SIZE": ...}, bytes per frame) for one send size."""
    from benchmarks.loadgen import DEPTH_SCALE, synthetic_frames
    from server.protocol import FrameIn, SendSize, SessionCreate, parse_client_message
    from server.streaming.ingest import prepare_frame

    frames = synthetic_frames(8, args.height, args.width, engine.info if size is SendSize.MODEL else None)
    stream = SessionCreate(width=args.width, height=args.height, depth_scale=DEPTH_SCALE, send_size=size)
    msgs = [m for m in map(parse_client_message, frames) if isinstance(m, FrameIn)]
    costs = {
        f"parse {size.value}": _cost(lambda: [parse_client_message(f) for f in frames], args.repeats, len(frames)),
        f"prepare {size.value}": _cost(lambda: [prepare_frame(engine, stream, m, 0.0) for m in msgs], args.repeats,
                                       len(msgs)),
    }  # fmt: skip
    return costs, round(float(np.mean([len(f) for f in frames])))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from export.backends import load_backend
    from server.engine import Engine
    from server.protocol import SendSize

    if args.int8:  # the bundle's int8 frame encoder whatever its recorded accuracy (a cost measurement)
        from export.bundle import load_bundle
        from export.ort_backend import OnnxRuntimeBackend

        backend: Any = OnnxRuntimeBackend.from_bundle(load_bundle(args.model), threads=args.threads, int8=True)
    else:
        backend = load_backend(args.model, args.backend, threads=args.threads)
    engine = Engine(backend, server_version="bench")
    pre, cfg = engine.spec.preprocessing, engine.backend.config
    out: dict[str, Any] = {"costs_ms": {}, "window_frames": cfg.window_frames}
    for size in (SendSize.FULL, SendSize.MODEL):
        costs, size_bytes = _stream_costs(engine, size, args)
        out["costs_ms"] |= costs
        out[f"bytes_per_frame {size.value}"] = size_bytes
    rng = np.random.default_rng(0)
    for batch in (1, 8, 16):
        images = rng.normal(size=(batch, 3, *pre.image_size)).astype(np.float32)
        depths = rng.uniform(size=(batch, pre.depth_channels, *pre.depth_size)).astype(np.float32)
        # a depth-only model: the server runs no colour work (Engine.prepare gives no image, encode(None, ...))
        served = None if not engine.spec.uses_color else images
        out["costs_ms"][f"encode batch {batch}"] = _cost(partial(engine.encode, served, depths), args.repeats, batch)
        if served is None:
            before = partial(engine.encode, np.zeros_like(images), depths)
            out["costs_ms"][f"encode batch {batch}, all-zero image (before)"] = _cost(before, args.repeats, batch)
    windows = [rng.normal(size=(cfg.window_frames, 2, cfg.hidden)).astype(np.float32) for _ in range(args.tick_batch)]
    out["costs_ms"]["tick one call each"] = _cost(lambda: [engine.anticipate(w) for w in windows], args.repeats,
                                                   len(windows))  # fmt: skip
    out["costs_ms"][f"tick batch {args.tick_batch}"] = _cost(lambda: engine.anticipate_batch(windows), args.repeats,
                                                              len(windows))  # fmt: skip
    return out


def capacity(costs: dict[str, tuple[float, float]], fps: float, tick_hz: float, cores: int, tick_batch: int) -> dict[
    str, float
]:  # fmt: skip
    """Streams `cores` can hold per send size: cores / (fps x (parse + prepare + encode@16) + tick_hz x tick)."""
    per_frame_shared = costs["encode batch 16"][0]
    tick = costs[f"tick batch {tick_batch}"][0]
    out = {}
    for size in ("full", "model"):
        per_frame = costs[f"parse {size}"][0] + costs[f"prepare {size}"][0] + per_frame_shared
        per_stream_ms = fps * per_frame + tick_hz * tick  # CPU ms per second of one stream
        out[size] = round(cores * 1000.0 / per_stream_ms, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serving_costs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", type=Path, required=True, help="bundle (onnxruntime) or checkpoint (pytorch)")
    p.add_argument("--backend", default="onnxruntime", choices=("pytorch", "onnxruntime"))
    p.add_argument("--int8", action="store_true", help="the bundle's int8 frame encoder (r3d-export int8)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (the server uses the cores it may)")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--tick-batch", type=int, default=8, help="ticks batched together (sessions due at once)")
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--tick-hz", type=float, default=5.0)
    p.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    args = p.parse_args(argv)
    res = measure(args)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    lines = [f"machine: {cpu}, {args.cores} cores, load average {os.getloadavg()[0]:.2f} (1 min) at the end",
             f"model {args.model}, {args.backend}{' int8 frame encoder' if args.int8 else ''}, {args.threads} threads, "
             f"window {res['window_frames']} frames",
             "", "| stage | CPU ms per frame or tick | wall ms |", "| --- | ---: | ---: |"]  # fmt: skip
    lines += [f"| {name} | {c} | {w} |" for name, (c, w) in res["costs_ms"].items()]
    cap = capacity(res["costs_ms"], args.fps, args.tick_hz, args.cores, args.tick_batch)
    lines += ["", f"bytes per frame: full {res['bytes_per_frame full']}, model {res['bytes_per_frame model']}",
              f"CPU-bound streams at {args.fps:g} fps, {args.tick_hz:g} ticks/s on {args.cores} idle cores (stages "
              f"only, encode at batch 16): full {cap['full']}, model {cap['model']}"]  # fmt: skip
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
