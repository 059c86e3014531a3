"""Benchmark (a command, not a test): FrameEncoder cost per frame, Anticipator cost per tick at several window
lengths, and the speedup of the incremental path (encode the one new frame, anticipate over cached tokens) over
recomputing the whole window every tick; then the FrameEncoder of the service recipe's inputs (person-mask depth,
person depth encoder) against the candidates of reports/synthetic (ENCODERS), measured in the same run. CPU, eager
PyTorch.

    python -m benchmarks.model_bench [--windows 100 500 2000] [--repeats 5] [--threads 2] [--chunk 32] [--json FILE]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from model.preprocess import Preprocessing
from model.r3d import R3D, R3DConfig
from rgbd.files import write_json_atomic


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run(windows: list[int], repeats: int, chunk: int = 32) -> dict[str, object]:
    torch.manual_seed(0)
    cfg = R3DConfig(classes=[f"a{i}" for i in range(12)], max_len=max(2000, *windows))
    model = R3D(cfg).eval()
    h, w = cfg.preprocessing.image_size
    dh, dw = cfg.preprocessing.depth_size
    enc = model.frame_encoder

    images, depths = (
        torch.randn(chunk, 3, h, w),
        torch.rand(chunk, cfg.preprocessing.depth_channels, dh, dw),
    )  # made once, outside the timings

    def encode(n: int) -> torch.Tensor:  # the whole window, in chunks as a batch scorer would
        out = [enc(images[: min(chunk, n - i)], depths[: min(chunk, n - i)]) for i in range(0, n, chunk)]
        return torch.cat(out)

    rows = []
    with torch.inference_mode():
        frame_ms = _median_ms(lambda: encode(1), repeats * 4)
        batched_ms = _median_ms(lambda: encode(chunk), repeats) / chunk
        for t in windows:
            tokens, valid = torch.randn(1, t, 2, cfg.hidden), torch.ones(1, t, dtype=torch.bool)
            anticipate_ms = _median_ms(lambda: model.anticipator(tokens, valid), repeats)  # noqa: B023
            recompute_ms = _median_ms(lambda: model.anticipator(encode(t).unsqueeze(0), valid), max(1, repeats // 2))  # noqa: B023
            incremental_ms = frame_ms + anticipate_ms
            rows.append({"T": t, "anticipator_ms": anticipate_ms, "incremental_tick_ms": incremental_ms,
                         "recompute_tick_ms": recompute_ms, "speedup": recompute_ms / incremental_ms})  # fmt: skip
    return {
        "machine": f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "frame_encoder_ms_per_frame_batch1": frame_ms,
        "frame_encoder_batch": chunk,
        "frame_encoder_ms_per_frame_batched": batched_ms,
        "ticks": rows,
        "encoders": encoder_costs(repeats, chunk),
    }


# the service recipe's FrameEncoder and the candidates of reports/synthetic, as (Preprocessing, R3DConfig) overrides
ENCODERS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "service": ({}, {}),
    "colour on a person crop too": ({"color_view": "frame+person"}, {}),
    "depth 120x160, person crop 64x32": ({"depth_size": (120, 160)}, {"person_crop": (64, 32)}),
}


def encoder_costs(repeats: int, chunk: int) -> list[dict[str, object]]:
    """FrameEncoder ms per frame (batch 1 and batch `chunk`) of the service inputs (person-mask depth, the person
    depth encoder) and of each candidate (ENCODERS); they alternate within each repeat, so all see the same load."""
    encoders, depths = {}, {}
    for name, (pre_overrides, cfg_overrides) in ENCODERS.items():
        torch.manual_seed(0)
        pre = Preprocessing(**{"depth_size": (60, 80), "depth_input": "metric", "person_mask": "background",
                               **pre_overrides})  # fmt: skip
        cfg = R3DConfig(classes=["a", "b"], preprocessing=pre, depth_encoder="person", **cfg_overrides)
        encoders[name] = R3D(cfg).eval()
        dh, dw = pre.depth_size
        depth = torch.randn(chunk, 3, dh, dw)
        depth[:, 1], depth[:, 2] = 1.0, 0.0
        depth[:, 2, dh // 3 : dh * 3 // 4, dw * 3 // 8 : dw // 2] = 1.0  # a person, a sixth of the map's height
        depths[name] = depth
    images = torch.randn(chunk, 3, *pre.image_size)
    times: dict[tuple[str, int], list[float]] = {(e, n): [] for e in ENCODERS for n in (1, chunk)}
    with torch.inference_mode():
        for i in range(repeats * 4 + 1):
            for (name, n), samples in times.items():
                t0 = time.perf_counter()
                encoders[name].frame_encoder(images[:n], depths[name][:n])
                if i:  # the first round warms up
                    samples.append((time.perf_counter() - t0) * 1e3 / n)
    base = {n: statistics.median(times[("service", n)]) for n in (1, chunk)}
    return [{"encoder": e, "batch": n, "ms_per_frame": statistics.median(s),
             "vs_service": statistics.median(s) / base[n]} for (e, n), s in times.items()]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.model_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, nargs="+", default=[100, 500, 2000], help="window lengths T (frames)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--chunk", type=int, default=32, help="FrameEncoder batch size of the batched measurement")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = run(args.windows, args.repeats, args.chunk)
    out = sys.stdout
    out.write(f"machine: {res['machine']}\n")
    batched = f"{res['frame_encoder_ms_per_frame_batched']:.2f} ms/frame at batch {res['frame_encoder_batch']}"
    out.write(f"FrameEncoder: {res['frame_encoder_ms_per_frame_batch1']:.2f} ms/frame at batch 1, {batched}\n")
    out.write(
        "| T | Anticipator ms | incremental tick ms | recompute-window tick ms | speedup |\n|---|---|---|---|---|\n"
    )
    for r in res["ticks"]:  # type: ignore[attr-defined]
        out.write(f"| {r['T']} | {r['anticipator_ms']:.1f} | {r['incremental_tick_ms']:.1f} | "
                  f"{r['recompute_tick_ms']:.0f} | {r['speedup']:.0f}x |\n")  # fmt: skip
    out.write("| FrameEncoder | batch | ms/frame | vs service |\n|---|---|---|---|\n")
    for r in res["encoders"]:  # type: ignore[attr-defined]
        out.write(f"| {r['encoder']} | {r['batch']} | {r['ms_per_frame']:.2f} | {r['vs_service']:.2f}x |\n")
    if args.json:
        write_json_atomic(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
