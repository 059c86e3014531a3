"""Load benchmark (a command, not a test): N concurrent synthetic RGB-D streams against a real ``r3d-serve``.

    python -m server.loadtest [--model BUNDLE] [--backend onnxruntime] [--streams 8] [--fps 15] [--seconds 60]
                              [--width 640 --height 480] [--tick-hz 15] [--json out.json] [--url http://host:port]

Without --url it starts ``r3d-serve`` in a subprocess on a free loopback port; without --model it builds a
random-weights model with the default service config (8 s window at 15 fps) and exports it to an ONNX bundle under
--work-dir (once; reused). Every stream sends pre-encoded 640x480 frames (JPEG q80 colour, zstd depth) at --fps on
an absolute schedule and measures frame-to-prediction latency on the client (send -> prediction for that frame).
It reports sustained frames/s, drops, latency percentiles, server CPU and memory at start and end, and which
resource limits it when the goal (p99 < 150 ms, no drops, flat memory) is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
from websockets.asyncio.client import connect

from server.protocol import Hello, encode_frame, pack, parse_server_message

logger = logging.getLogger(__name__)
GOAL_P99_MS = 150.0


@dataclass
class StreamStats:
    sent: int = 0
    send_times: dict[int, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    late_sends: int = 0
    last_counters: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def synthetic_frames(n: int, h: int, w: int) -> list[bytes]:
    """``n`` distinct frames with camera-like content (smooth shapes, texture, depth noise), encoded once."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for i in range(n):
        p = 2 * np.pi * i / n
        rgb = np.stack(
            [110 + 70 * np.sin(xx / 37 + p), 120 + 60 * np.cos(yy / 29 - p), 100 + 50 * np.sin((xx + yy) / 53)], -1
        )
        rgb += rng.normal(0, 4, rgb.shape)
        depth = 1800 + 700 * np.sin(xx / 90 + p) * np.cos(yy / 70) + rng.normal(0, 6, (h, w))
        depth[(xx - w / 2 - 80 * np.sin(p)) ** 2 + (yy - h / 2) ** 2 < 60**2] = 900  # a person-sized blob moving
        out.append(encode_frame(np.clip(rgb, 0, 255).astype(np.uint8), depth.astype(np.uint16), 0.0, 0))
    return out


def retimed(frame: bytes, seq: int, ts: float) -> bytes:
    msg = msgpack.unpackb(frame)
    msg["seq"], msg["ts"] = seq, ts
    return msgpack.packb(msg, use_bin_type=True)


async def run_stream(ws_url: str, key: str | None, frames: list[bytes], args: argparse.Namespace, stats: StreamStats,
                     t_start: float, t_end: float) -> None:  # fmt: skip
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with connect(ws_url, compression=None, max_size=2**26, additional_headers=headers) as ws:
        await ws.send(pack(Hello(camera="loadtest", width=args.width, height=args.height, depth_scale=0.001,
                                 tick_hz=args.tick_hz)))  # fmt: skip
        welcome = parse_server_message(await ws.recv())
        if welcome.type != "welcome":
            raise RuntimeError(f"expected welcome, got {welcome}")

        async def receive() -> None:
            async for raw in ws:
                msg = parse_server_message(raw)
                now = time.perf_counter()
                if msg.type == "prediction":
                    sent = stats.send_times.pop(msg.frame_seq, None)
                    if sent is not None:
                        stats.latencies_ms.append((now - sent) * 1e3)
                        stats.server_ms.append(msg.latency.frame_to_prediction_ms)
                    stats.last_counters = msg.counters.model_dump()
                elif msg.type == "error":
                    stats.errors.append(msg.message)

        receiver = asyncio.create_task(receive())
        period = 1.0 / args.fps
        seq = 0
        while True:
            due = t_start + seq * period
            if due >= t_end or time.perf_counter() >= t_end:  # a client that fell behind stops on time too
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -period:
                stats.late_sends += 1
            data = retimed(frames[seq % len(frames)], seq, seq * period)
            stats.send_times[seq] = time.perf_counter()
            await ws.send(data)
            stats.sent += 1
            seq += 1
        await asyncio.sleep(1.0)  # the last predictions
        await ws.send(pack({"type": "bye"}))
        receiver.cancel()


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
    env = dict(os.environ, R3D_LOG_LEVEL="warning", R3D_MAX_SESSIONS=str(max(32, args.streams + 4)))
    cmd = [sys.executable, "-m", "server.cli", str(model), "--backend", args.backend, "--port", str(port)]
    cpus = {int(c) for c in args.server_cpus.split(",")} if args.server_cpus else None
    with (args.work_dir / "server.log").open("wb") as log:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log,
                                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)  # fmt: skip


def wait_ready(url: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
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


async def run(args: argparse.Namespace) -> dict[str, Any]:
    args.work_dir.mkdir(parents=True, exist_ok=True)
    proc = None
    url = args.url
    if url is None:
        model = ensure_model(args)
        url = f"http://127.0.0.1:{free_port()}"
        proc = start_server(model, args, int(url.rsplit(":", 1)[1]))
    try:
        wait_ready(url)
        info = httpx.get(f"{url}/v1/model", headers=_auth(args.key)).json()
        frames = synthetic_frames(30, args.height, args.width)
        pid = proc.pid if proc else None
        rss_start = rss_mib(pid) if pid else float("nan")
        cpu_start = cpu_seconds(pid) if pid else 0.0
        server_cores = len(os.sched_getaffinity(pid or 0))
        rss_samples: list[float] = []
        stats = [StreamStats() for _ in range(args.streams)]
        t_start = time.perf_counter() + 1.0
        t_end = t_start + args.seconds
        ws_url = "ws" + url[len("http") :] + "/v1/stream"

        async def sample_memory() -> None:
            while pid and time.perf_counter() < t_end:
                rss_samples.append(rss_mib(pid))
                await asyncio.sleep(5.0)

        sampler = asyncio.create_task(sample_memory())
        await asyncio.gather(*(run_stream(ws_url, args.key, frames, args, s, t_start, t_end) for s in stats))
        sampler.cancel()
        wall = time.perf_counter() - t_start
        text = httpx.get(f"{url}/metrics", headers=_auth(args.key)).text
        rss_end = rss_mib(pid) if pid else float("nan")
        cpu_used = (cpu_seconds(pid) - cpu_start) if pid else float("nan")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)
    lat = [v for s in stats for v in s.latencies_ms]
    server_lat = [v for s in stats for v in s.server_ms]
    sent = sum(s.sent for s in stats)
    used = sum(s.last_counters.get("accepted", 0) for s in stats)
    dropped = sum(s.last_counters.get("dropped", 0) for s in stats)
    batches = metric(text, "r3d_encode_batch_frames_count")
    report = {
        "streams": args.streams, "fps_per_stream": args.fps, "resolution": f"{args.width}x{args.height}",
        "seconds": round(wall, 1), "backend": info["backend"], "model_window_frames": info["window_frames"],
        "tick_hz": args.tick_hz, "frames_sent_per_s": round(sent / wall, 1),
        "frames_used_per_s": round(used / wall, 1), "predictions_per_s": round(len(lat) / wall, 1),
        "dropped": dropped, "rejected": sum(s.last_counters.get("rejected", 0) for s in stats),
        "unanswered": sum(len(s.send_times) for s in stats), "late_sends": sum(s.late_sends for s in stats),
        "latency_ms": {"p50": round(pct(lat, 50), 1), "p95": round(pct(lat, 95), 1), "p99": round(pct(lat, 99), 1),
                       "max": round(max(lat, default=float("nan")), 1)},
        "server_latency_p99_ms": round(pct(server_lat, 99), 1),
        "encode_batch_mean": round(metric(text, "r3d_encode_batch_frames_sum") / max(batches, 1), 2),
        "encode_ms_per_batch": round(1e3 * metric(text, "r3d_encode_seconds_sum") / max(batches, 1), 2),
        "decode_ms_per_frame": round(1e3 * metric(text, "r3d_decode_seconds_sum")
                                     / max(metric(text, "r3d_decode_seconds_count"), 1), 2),
        "anticipate_ms": round(1e3 * metric(text, "r3d_anticipate_seconds_sum")
                               / max(metric(text, "r3d_anticipate_seconds_count"), 1), 2),
        "server_cpu_cores": round(cpu_used / wall, 2), "machine_cores": server_cores,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "rss_mib_start": round(rss_start, 1), "rss_mib_end": round(rss_end, 1),
        "rss_mib_samples": [round(r, 1) for r in rss_samples], "errors": sorted({e for s in stats for e in s.errors}),
    }  # fmt: skip
    report["verdict"] = verdict(report)
    return report


def verdict(r: dict[str, Any]) -> str:
    ok = r["latency_ms"]["p99"] < GOAL_P99_MS and r["dropped"] == 0 and r["unanswered"] == 0
    if ok:
        return f"goal met: p99 {r['latency_ms']['p99']} ms < {GOAL_P99_MS:g} ms, no drops"
    cores = r["machine_cores"] or 1
    if r["server_cpu_cores"] >= 0.8 * cores or r["load_average_1m"] >= cores:
        limit = (f"CPU: the server used {r['server_cpu_cores']} of {cores} cores (load average "
                 f"{r['load_average_1m']}); per frame decode {r['decode_ms_per_frame']} ms (JPEG + zstd + "
                 f"preprocessing), encode {r['encode_ms_per_batch']} ms per batch of {r['encode_batch_mean']}, "
                 f"anticipate {r['anticipate_ms']} ms per tick")  # fmt: skip
    else:
        limit = "not CPU-bound: look at the event loop (one Python thread receives every message) and the GIL"
    return f"goal missed (p99 {r['latency_ms']['p99']} ms, {r['dropped']} dropped); limited by {limit}"


def _auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def table(r: dict[str, Any]) -> str:
    rows = [
        ("streams x fps", f"{r['streams']} x {r['fps_per_stream']:g} ({r['resolution']}, tick {r['tick_hz']:g} Hz)"),
        ("backend / window", f"{r['backend']} / {r['model_window_frames']} frames"),
        ("duration", f"{r['seconds']} s"),
        ("frames sent / used per s", f"{r['frames_sent_per_s']} / {r['frames_used_per_s']}"),
        ("predictions per s", str(r["predictions_per_s"])),
        ("dropped / rejected / unanswered", f"{r['dropped']} / {r['rejected']} / {r['unanswered']}"),
        ("latency p50 / p95 / p99 / max", "{p50} / {p95} / {p99} / {max} ms".format(**r["latency_ms"])),
        ("server-side latency p99", f"{r['server_latency_p99_ms']} ms"),
        ("encode batch (mean) / time", f"{r['encode_batch_mean']} frames / {r['encode_ms_per_batch']} ms"),
        ("decode per frame / anticipate", f"{r['decode_ms_per_frame']} ms / {r['anticipate_ms']} ms"),
        ("server CPU", f"{r['server_cpu_cores']} of {r['machine_cores']} cores (load avg {r['load_average_1m']})"),
        ("server RSS start / end", f"{r['rss_mib_start']} / {r['rss_mib_end']} MiB"),
        ("verdict", r["verdict"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k.ljust(width)} | {v} |" for k, v in rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m server.loadtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="bundle (or checkpoint with --backend pytorch); default: build one")
    p.add_argument("--backend", default="onnxruntime", choices=("auto", "pytorch", "onnxruntime", "tensorrt"))
    p.add_argument("--url", help="an already running server instead of starting one")
    p.add_argument("--key", default=os.environ.get("R3D_LOADTEST_KEY"), help="API key of --url (or R3D_LOADTEST_KEY)")
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--tick-hz", type=float, default=15.0, help="predictions per second per stream")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--work-dir", type=Path, default=Path("outputs/loadtest"))
    p.add_argument("--server-cpus", help="pin the started server to these CPUs, e.g. 0,1 (default: inherit)")
    p.add_argument("--json", type=Path, help="write the report here too")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = asyncio.run(run(args))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
