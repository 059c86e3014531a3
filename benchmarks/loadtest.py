"""Load benchmark (a command, not a test): N concurrent synthetic RGB-D streams against a real ``r3d-serve``.

    python -m benchmarks.loadtest [--model BUNDLE] [--backend onnxruntime] [--streams 8] [--fps 15] [--seconds 60]
                              [--send-size full|model] [--soak] [--tick-hz 15] [--json out.json] [--url URL]

Without --url it starts ``r3d-serve`` in a subprocess on a free loopback port; without --model it builds a
random-weights model with the default service config (8 s window at 15 fps) and exports it to an ONNX bundle under
--work-dir (once; reused). Every stream sends pre-encoded frames (JPEG q80 colour, zstd depth) of --width x --height
camera frames, resized on the client to the model's input size first with --send-size model (the size the server
announces in welcome), at --fps on an absolute schedule, and measures frame-to-prediction latency on the client
(send -> the prediction for that frame). It reports sustained frames/s, bytes per frame, drops, latency percentiles,
server CPU (in all and by thread: the event loop, the decode pool, the inference worker, native threads;
benchmarks.threadcpu) and memory (RSS sampled every 10 s with --soak, 5 s otherwise), the machine's load average,
and the verdict: the goal (p99 < 100 ms, no drops, RSS growth after warm-up <= 5 %) or which resource limits.
--soak runs 5 minutes (unless --seconds says otherwise) and judges RSS growth after a 60 s warm-up.
--client-processes splits the streams over that many load-generator processes (one Python process cannot feed
hundreds of streams); --profile FILE records the server with py-spy and adds its top functions to the report.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.loadgen import StreamStats, client_process, run_streams, synthetic_frames
from benchmarks.threadcpu import cpu_by_thread, python_thread_names, thread_cpu_seconds
from rgbd.files import write_json_atomic
from server.protocol import ModelInfo, SendSize

logger = logging.getLogger(__name__)
GOAL_P99_MS = 100.0
GOAL_RSS_GROWTH = 0.05  # after warm-up
SOAK_SECONDS, SOAK_WARMUP_S, SOAK_SAMPLE_S = 300.0, 60.0, 10.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ensure_model(args: argparse.Namespace) -> Path:
    if args.model:
        return Path(args.model)
    bundle = args.work_dir / "bundle"
    if (bundle / "manifest.json").exists():
        return bundle
    import torch

    from export.onnx_export import export_bundle
    from model import R3D, R3DConfig

    torch.manual_seed(0)
    cfg = R3DConfig(classes=[f"action_{i}" for i in range(10)])  # the service defaults: 15 fps, 8 s window
    logger.info("exporting a random-weights default-config model to %s (once)", bundle)
    export_bundle(R3D(cfg).eval(), bundle, force=True)
    return bundle


def start_server(model: Path, args: argparse.Namespace, port: int) -> subprocess.Popen[bytes]:
    sessions = str(max(32, args.streams + 4))  # every stream comes from this one loopback address
    env = dict(os.environ, R3D_LOG_LEVEL="warning", R3D_MAX_SESSIONS=sessions, R3D_MAX_SESSIONS_PER_CLIENT=sessions)
    cmd = [sys.executable, "-m", "server.cli", str(model), "--backend", args.backend, "--port", str(port)]
    cmd += ["--device", args.device] if args.device else []
    cmd += ["--fp16"] if args.fp16 else []
    cpus = {int(c) for c in args.server_cpus.split(",")} if args.server_cpus else None
    with (args.work_dir / "server.log").open("wb") as log:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log,
                                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)  # fmt: skip


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"r3d-serve exited with status {proc.returncode} before it was ready (see server.log)")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} was not ready within {timeout:g} s")


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def start_profiler(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    """py-spy over the server for the run (collapsed stacks, every thread); None when py-spy is not installed."""
    exe = shutil.which("py-spy")
    if exe is None:
        logger.warning("--profile: py-spy is not installed (pip install py-spy); no profile recorded")
        return None
    cmd = [exe, "record", "-p", str(pid), "-f", "raw", "-o", str(out), "-d", str(int(seconds)), "-r", "50"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


OUR_PACKAGES = ("server/", "model/", "export/", "rgbd/")
TRANSPORT = ("uvicorn/", "websockets/", "starlette/")


def profile_summary(collapsed: Path, top: int = 12) -> list[tuple[str, float]]:
    """(function, share of all samples whose stack contains it), the largest first, from py-spy's raw output:
    this project's functions by name, and the samples inside the WebSocket transport libraries (uvicorn,
    websockets, starlette: their own code, not what they call) as one entry."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [frame.partition(" (") for frame in stack.split(";")]
        names = {name for name, _, where in frames if where.startswith(OUR_PACKAGES)}
        if frames[-1][2].startswith(TRANSPORT):  # time spent inside the transport libraries themselves
            names.add("WebSocket transport (uvicorn, websockets)")
        for name in names:
            inclusive[name] += n
    ranked = sorted(inclusive.items(), key=lambda item: (-item[1], item[0]))[:top]
    return [(name, round(n / max(total, 1), 3)) for name, n in ranked]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    args.work_dir.mkdir(parents=True, exist_ok=True)
    proc = profiler = None
    url = args.url
    if url is None:
        url = f"http://127.0.0.1:{free_port()}"
        proc = start_server(ensure_model(args), args, int(url.rsplit(":", 1)[1]))
    try:
        wait_ready(url, proc)
        info = httpx.get(f"{url}/v1/model", headers=_auth(args.key)).json()
        model = ModelInfo.model_validate(info) if args.send_size == "model" else None
        frames = synthetic_frames(30, args.height, args.width, model)
        pid = proc.pid if proc else None
        samples: list[tuple[float, float, float]] = []  # (seconds into the run, RSS MiB, 1-min load average)
        cpu_start = cpu_seconds(pid) if pid else 0.0
        threads_start = thread_cpu_seconds(pid) if pid else {}
        cores = len(os.sched_getaffinity(pid or 0))
        client_cpu_start = sum(os.times()[:4])
        t_start = time.monotonic() + 2.0
        t_end = t_start + args.seconds
        if pid and args.profile:
            profiler = start_profiler(pid, args.profile, args.seconds)
        ws_url = "ws" + url[len("http") :] + "/v1/stream"
        opts = {k: getattr(args, k) for k in ("key", "width", "height", "tick_hz", "fps", "send_size")}
        interval = SOAK_SAMPLE_S if args.soak else 5.0

        async def sample() -> None:
            await asyncio.sleep(max(t_start - time.monotonic(), 0.0))
            while pid and time.monotonic() < t_end:
                samples.append((time.monotonic() - t_start, rss_mib(pid), os.getloadavg()[0]))
                await asyncio.sleep(interval)

        sampler = asyncio.create_task(sample())
        shares = [len(part) for part in np.array_split(np.arange(args.streams), args.client_processes) if len(part)]
        if len(shares) == 1:
            stats = await run_streams(ws_url, frames, opts, args.streams, t_start, t_end)
        else:
            with multiprocessing.get_context("spawn").Pool(len(shares)) as pool:
                jobs = [(ws_url, frames, opts, n, t_start, t_end) for n in shares]
                parts = await asyncio.to_thread(pool.map, client_process, jobs)
            stats = [s for part in parts for s in part]
        sampler.cancel()
        wall = time.monotonic() - t_start  # the send window plus the wait for the last predictions
        text = httpx.get(f"{url}/metrics", headers=_auth(args.key)).text
        rss_end = rss_mib(pid) if pid else float("nan")
        cpu_used = (cpu_seconds(pid) - cpu_start) if pid else float("nan")
        by_thread = cpu_by_thread(threads_start, thread_cpu_seconds(pid), python_thread_names(pid)) if pid else []
        client_cpu = sum(os.times()[:4]) - client_cpu_start
    finally:
        if profiler is not None:
            profiler.wait(60)
        if proc is not None:
            proc.terminate()
            proc.wait(60)
    report = summarise(args, info, stats, text, samples, wall, cpu_used, client_cpu, rss_end, cores)
    report["server_cpu_by_thread"] = by_thread
    if profiler is not None and args.profile.exists():
        report["profile_top"] = profile_summary(args.profile)
    report["verdict"] = verdict(report)
    return report


def summarise(args: argparse.Namespace, info: dict[str, Any], stats: list[StreamStats], text: str,
              samples: list[tuple[float, float, float]], wall: float, cpu_used: float, client_cpu: float,
              rss_end: float, cores: int) -> dict[str, Any]:  # fmt: skip
    window = args.seconds  # rates are per second of sending
    lat = [v for s in stats for v in s.latencies_ms]
    server_lat = [v for s in stats for v in s.server_ms]
    sent = sum(s.sent for s in stats)
    used = sum(s.last_counters.get("accepted", 0) for s in stats)
    batches = metric(text, "r3d_encode_batch_frames_count")
    tick_batches = metric(text, "r3d_anticipate_batch_ticks_count")
    rss = [r for _, r, _ in samples]
    warm = [r for t, r, _ in samples if t >= min(SOAK_WARMUP_S, args.seconds / 5)]
    growth = (rss_end - warm[0]) / warm[0] if warm else float("nan")
    loads = [load for _, _, load in samples] or [os.getloadavg()[0]]
    return {
        "streams": args.streams, "fps_per_stream": args.fps, "resolution": f"{args.width}x{args.height}",
        "send_size": args.send_size, "seconds": round(window, 1), "backend": info["backend"],
        "model_window_frames": info["window_frames"], "tick_hz": args.tick_hz,
        "bytes_per_frame": round(sum(s.bytes_sent for s in stats) / max(sent, 1)),
        "frames_sent_per_s": round(sent / window, 1), "frames_used_per_s": round(used / window, 1),
        "predictions_per_s": round(len(lat) / window, 1),
        "dropped": sum(s.last_counters.get("dropped", 0) for s in stats),
        "rejected": sum(s.last_counters.get("rejected", 0) for s in stats),
        "unanswered": sum(s.unanswered for s in stats), "late_sends": sum(s.late_sends for s in stats),
        "latency_ms": {"p50": round(pct(lat, 50), 1), "p95": round(pct(lat, 95), 1), "p99": round(pct(lat, 99), 1),
                       "max": round(max(lat, default=float("nan")), 1)},
        "server_latency_p99_ms": round(pct(server_lat, 99), 1),
        "encode_batch_mean": round(metric(text, "r3d_encode_batch_frames_sum") / max(batches, 1), 2),
        "encode_ms_per_batch": round(1e3 * metric(text, "r3d_encode_seconds_sum") / max(batches, 1), 2),
        "decode_ms_per_frame": round(1e3 * metric(text, "r3d_decode_seconds_sum")
                                     / max(metric(text, "r3d_decode_seconds_count"), 1), 2),
        "anticipate_batch_mean": round(metric(text, "r3d_anticipate_batch_ticks_sum") / max(tick_batches, 1), 2),
        "anticipate_ms_per_batch": round(1e3 * metric(text, "r3d_anticipate_seconds_sum") / max(tick_batches, 1), 2),
        "server_cpu_ms_per_frame": round(1e3 * cpu_used / max(metric(text, "r3d_encode_batch_frames_sum"), 1), 2),
        "server_cpu_cores": round(cpu_used / wall, 2), "loadgen_cpu_cores": round(client_cpu / wall, 2),
        "machine_cores": cores, "cpus_online": os.cpu_count(),
        "load_average_1m": {"mean": round(float(np.mean(loads)), 2), "max": round(max(loads), 2)},
        "rss_mib_start": round(rss[0], 1) if rss else float("nan"), "rss_mib_end": round(rss_end, 1),
        "rss_growth_after_warmup": round(growth, 4), "rss_mib_samples": [round(r, 1) for r in rss],
        "connections_lost": sum(1 for s in stats for e in s.errors if e.startswith("connection lost")),
        "errors": sorted({e for s in stats for e in s.errors}),
    }  # fmt: skip


def verdict(r: dict[str, Any]) -> str:
    p99, growth = r["latency_ms"]["p99"], r["rss_growth_after_warmup"]
    memory_ok = not growth > GOAL_RSS_GROWTH  # NaN (no samples: --url) is not judged
    complete = r["dropped"] == 0 and r["unanswered"] == 0 and r["connections_lost"] == 0
    if p99 < GOAL_P99_MS and complete and memory_ok:
        return f"goal met: p99 {p99} ms < {GOAL_P99_MS:g} ms, no drops, RSS growth {growth:.1%} after warm-up"
    cores = r["machine_cores"] or 1
    load = r["load_average_1m"]["mean"]
    if not memory_ok:
        limit = f"memory: RSS grew {growth:.1%} after warm-up (goal <= {GOAL_RSS_GROWTH:.0%})"
    elif r["server_cpu_cores"] + r["loadgen_cpu_cores"] >= 0.8 * cores or load >= cores:
        limit = (f"CPU: the server used {r['server_cpu_cores']} and the load generator {r['loadgen_cpu_cores']} of "
                 f"{cores} cores (load average {load}); per frame decode {r['decode_ms_per_frame']} ms, encode "
                 f"{r['encode_ms_per_batch']} ms per batch of {r['encode_batch_mean']}, anticipate "
                 f"{r['anticipate_ms_per_batch']} ms per batch of {r['anticipate_batch_mean']} ticks")  # fmt: skip
    else:
        limit = "not CPU-bound: look at the event loop (one Python thread receives every message) and the GIL"
    return f"goal missed (p99 {p99} ms, {r['dropped']} dropped, {r['unanswered']} unanswered); limited by {limit}"


def _auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def table(r: dict[str, Any]) -> str:
    rows = [
        ("streams x fps", f"{r['streams']} x {r['fps_per_stream']:g} ({r['resolution']}, send size {r['send_size']}, "
                          f"tick {r['tick_hz']:g} Hz)"),
        ("backend / window", f"{r['backend']} / {r['model_window_frames']} frames"),
        ("duration", f"{r['seconds']} s"),
        ("bytes per frame", f"{r['bytes_per_frame']} ({r['bytes_per_frame'] * r['fps_per_stream'] * 8 / 1e6:.2f} "
                            "Mbit/s per stream)"),
        ("frames sent / used per s", f"{r['frames_sent_per_s']} / {r['frames_used_per_s']}"),
        ("predictions per s", str(r["predictions_per_s"])),
        ("dropped / rejected / unanswered", f"{r['dropped']} / {r['rejected']} / {r['unanswered']}"
                                            + (f" ({r['connections_lost']} connections lost)" if r["connections_lost"]
                                               else "")),
        ("latency p50 / p95 / p99 / max", "{p50} / {p95} / {p99} / {max} ms".format(**r["latency_ms"])),
        ("server-side latency p99", f"{r['server_latency_p99_ms']} ms"),
        ("encode batch (mean) / time", f"{r['encode_batch_mean']} frames / {r['encode_ms_per_batch']} ms"),
        ("anticipate batch (mean) / time", f"{r['anticipate_batch_mean']} ticks / {r['anticipate_ms_per_batch']} ms"),
        ("decode per frame", f"{r['decode_ms_per_frame']} ms"),
        ("CPU: server / load generator", f"{r['server_cpu_cores']} / {r['loadgen_cpu_cores']} of "
                                         f"{r['machine_cores']} cores"),
        ("server CPU per encoded frame", f"{r['server_cpu_ms_per_frame']} ms (everything: receive, decode, encode, "
                                         "ticks)"),
        ("load average (1 min) mean / max", "{mean} / {max}".format(**r["load_average_1m"])),
        ("server RSS start / end / growth", f"{r['rss_mib_start']} / {r['rss_mib_end']} MiB / "
                                            f"{r['rss_growth_after_warmup']:.1%} after warm-up"),
        *([("server CPU by thread", ", ".join(f"{g} {share:.0%}" for g, _, share in r["server_cpu_by_thread"]))]
          if r.get("server_cpu_by_thread") else []),
        *([("profile (share of samples)", ", ".join(f"{n} {s:.0%}" for n, s in r["profile_top"]))]
          if r.get("profile_top") else []),
        ("verdict", r["verdict"]),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k.ljust(width)} | {v} |" for k, v in rows) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.loadtest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", type=Path, help="bundle (or checkpoint with --backend pytorch); default: build one")
    p.add_argument("--backend", default="onnxruntime", choices=("auto", "pytorch", "onnxruntime", "tensorrt"))
    p.add_argument("--device", help="the server's device, e.g. cuda (default: the backend's choice)")
    p.add_argument("--fp16", action="store_true", help="the server runs in half precision (CUDA backends)")
    p.add_argument("--url", help="an already running server instead of starting one")
    p.add_argument("--key", default=os.environ.get("R3D_LOADTEST_KEY"), help="API key of --url (or R3D_LOADTEST_KEY)")
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--tick-hz", type=float, default=15.0, help="predictions per second per stream")
    p.add_argument("--seconds", type=float, help="duration (default 60; 300 with --soak)")
    p.add_argument("--soak", action="store_true", help="5 minutes, RSS every 10 s, verdict on its growth")
    p.add_argument("--send-size", choices=[s.value for s in SendSize], default="full",
                   help="'model': streams resize to the model's input size first (default %(default)s)")  # fmt: skip
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--client-processes", type=int, default=1, help="load-generator processes sharing the streams")
    p.add_argument("--work-dir", type=Path, default=Path("outputs/loadtest"))
    p.add_argument("--server-cpus", help="pin the started server to these CPUs, e.g. 0,1 (default: inherit)")
    p.add_argument("--profile", type=Path, help="record the server with py-spy (collapsed stacks) to this file")
    p.add_argument("--json", type=Path, help="write the report here too")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.seconds = args.seconds or (SOAK_SECONDS if args.soak else 60.0)
    if args.streams < 1 or args.client_processes < 1:
        sys.stderr.write("loadtest: --streams and --client-processes must be at least 1\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = asyncio.run(run(args))
    if args.json:
        write_json_atomic(args.json, report)
    sys.stdout.write(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
