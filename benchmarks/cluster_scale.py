"""The cluster path against one process: `python -m benchmarks.cluster_scale --redis redis://127.0.0.1:6390/0`.

In one run, on this machine: --streams synthetic RGB-D streams (benchmarks.loadgen: 640x480 JPEG + zstd at --fps, an
absolute schedule) through (1) a plain r3d-serve in this process and (2) the same model on a local Ray cluster
(server.cluster, started here on loopback with --ray-cpus) with 1 and then 2 session replicas, every configuration
journaling to the Redis at --redis. Per configuration: frames each stream got encoded per second (the server's
counters), the client's frame-to-prediction latency (median, p90), and sends that fell a frame period behind
schedule; the cluster rows carry their ratio to the plain server. Then the recovery time: one stream sends a frame
and waits for its prediction, the replica that owns the session is killed (SIGKILL), and the time until the next
frame's prediction is taken, --kills times (median). Then where a frame's time goes on the cluster, per stage and
tier (server/cluster/profile.py: timestamps carried with each frame; medians over every frame of the run), per
configuration. The machine is named with its load average.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from benchmarks.loadgen import (
    StreamStats,
    journaled_streams_parser,
    reach_redis,
    retimed,
    run_streams,
    synthetic_frames,
)
from benchmarks.loadtest import free_port, pct
from benchmarks.synth_bench import machine
from server.app import create_app
from server.protocol import Hello, ModelInfo, Welcome, pack, parse_server_message
from server.serving import BackgroundServer
from server.settings import Settings

APP = "r3d"


def settings_for(args: argparse.Namespace, port: int) -> Settings:
    return Settings(model_path=args.model, backend=args.backend, port=port, session_store=args.redis,
                    jobs_dir=Path(tempfile.mkdtemp(prefix="r3d-bench-jobs-")), log_level="warning",
                    max_sessions=max(32, args.streams + 2), max_sessions_per_client=max(16, args.streams + 2),
                    inference_threads=1)  # fmt: skip


def stream_load(ws_url: str, args: argparse.Namespace, info: ModelInfo) -> dict[str, float]:
    """--streams streams for --seconds: per-stream encoded frames per second, latency median and p90, late sends.
    With --send-size model the frames are resized to the model's input on the client, as a send_size 'model' client
    does (small messages: what the path costs without moving camera-size frames)."""
    frames = synthetic_frames(30, 480, 640, info if args.send_size == "model" else None)
    opts = {"key": None, "width": 640, "height": 480, "tick_hz": args.tick_hz, "fps": args.fps,
            "send_size": args.send_size}  # fmt: skip
    t_start = time.monotonic() + 1.0
    stats: list[StreamStats] = asyncio.run(
        run_streams(ws_url, frames, opts, args.streams, t_start, t_start + args.seconds)
    )
    latencies = [ms for s in stats for ms in s.latencies_ms]
    if errors := sorted({e for s in stats for e in s.errors}):
        sys.stderr.write(f"{ws_url}: the server answered errors: {errors[:5]}\n")
    return {
        "encoded_fps": statistics.mean(s.last_counters.get("accepted", 0) for s in stats) / args.seconds,
        "p50_ms": pct(latencies, 50),
        "p90_ms": pct(latencies, 90),
        "late_sends": float(sum(s.late_sends for s in stats)),
        "errors": float(sum(len(s.errors) for s in stats)),
    }


def plain(args: argparse.Namespace) -> tuple[dict[str, float], ModelInfo]:
    """The plain server's row, and the model it serves (the frames' size with --send-size model)."""
    settings = settings_for(args, 0)
    with BackgroundServer(create_app(settings), settings) as url:
        info = ModelInfo.model_validate(httpx.get(f"{url}/v1/model").json())
        return stream_load("ws" + url[len("http") :] + "/v1/stream", args, info), info


def recovery_s(ws_url: str, sessions: Any, kills: int) -> list[float]:
    """Kill the owner of a live session ``kills`` times; seconds from each kill to the next frame's prediction."""
    frames = synthetic_frames(30, 480, 640)
    out = []
    with connect(ws_url, compression=None, max_size=2**26) as ws:
        ws.send(pack(Hello(camera="bench", width=640, height=480, depth_scale=0.001, tick_hz=15.0)))
        welcome = parse_server_message(ws.recv(timeout=120))
        if not isinstance(welcome, Welcome):
            raise RuntimeError(f"expected a welcome, got {welcome}")
        session_id = welcome.session_id
        seq = 0

        def one_frame() -> None:
            nonlocal seq
            ws.send(retimed(frames[seq % len(frames)], seq, seq / 15.0))
            while parse_server_message(ws.recv(timeout=300)).type != "prediction":
                pass
            seq += 1

        for _ in range(kills):
            for _ in range(10):
                one_frame()
            owner = sessions.options(session_id=session_id).replica_state.remote().result()
            os.kill(owner.pid, signal.SIGKILL)
            killed = time.monotonic()
            one_frame()
            out.append(time.monotonic() - killed)
            time.sleep(5.0)  # let Serve finish replacing the replica before the next kill
    return out


Profile = dict[str, tuple[float, int]]  # stage -> (median ms, samples)


def on_cluster(
    args: argparse.Namespace, info: ModelInfo
) -> tuple[dict[int, dict[str, float]], dict[int, Profile], list[float]]:
    import ray
    from ray import serve

    from server.cluster.app import build_app
    from server.cluster.options import ClusterOptions
    from server.cluster.profile import medians_ms

    temp = tempfile.mkdtemp(prefix="r3d-ray-", dir="/tmp")
    ray.init(num_cpus=args.ray_cpus, _node_ip_address="127.0.0.1", _temp_dir=temp, include_dashboard=False,
             logging_level=logging.WARNING, log_to_driver=False)  # fmt: skip
    rows: dict[int, dict[str, float]] = {}
    profiles: dict[int, Profile] = {}
    kills: list[float] = []
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        ws_url = f"ws://127.0.0.1:{port}/v1/stream"
        cpus = args.ray_cpus / 4  # ingress 0; the encoder and each session replica a share, room for a restart
        for replicas in args.session_replicas:
            options = ClusterOptions(session_replicas=replicas, session_cpus=cpus, encoder_cpus=cpus)
            serve.run(build_app(settings_for(args, port), options), name=APP, route_prefix="/")
            rows[replicas] = stream_load(ws_url, args, info)
            stages = serve.get_deployment_handle("Ingress", APP).stage_samples.remote().result()
            profiles[replicas] = medians_ms(stages)
            sys.stderr.write(f"cluster, {replicas} session replicas: measured\n")
            if replicas == max(args.session_replicas) and args.kills:
                kills = recovery_s(ws_url, serve.get_deployment_handle("SessionTier", APP), args.kills)
            serve.delete(APP)
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    return rows, profiles, kills


def table(args: argparse.Namespace, base: dict[str, float], rows: dict[int, dict[str, float]],
          profiles: dict[int, Profile], kills: list[float]) -> str:  # fmt: skip
    lines = [
        f"machine: {machine()}; 1-min load average {os.getloadavg()[0]:.1f}; {args.streams} streams of 640x480 "
        f"(send size {args.send_size}) at {args.fps:g} fps for {args.seconds:g} s, "
        f"tick {args.tick_hz:g} Hz, sessions journaled to Redis; Ray cluster of {args.ray_cpus:g} CPUs in this "
        "process's machine",
        "",
        "| path | encoded frames/s per stream | latency p50 | latency p90 | late sends | errors | p50 vs plain |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    def row(name: str, r: dict[str, float]) -> str:
        return (f"| {name} | {r['encoded_fps']:.1f} | {r['p50_ms']:.0f} ms | {r['p90_ms']:.0f} ms | "
                f"{r['late_sends']:.0f} | {r['errors']:.0f} | {r['p50_ms'] / base['p50_ms']:.2f} |")  # fmt: skip

    lines.append(row("r3d-serve (one process)", base))
    for replicas, r in rows.items():
        lines.append(row(f"cluster, {replicas} session replica{'s' * (replicas > 1)}", r))
    if kills:
        lines += ["", f"recovery after SIGKILL of the session's replica: median {statistics.median(kills):.1f} s "
                      f"(each: {', '.join(f'{k:.1f}' for k in kills)} s)"]  # fmt: skip
    return "\n".join([*lines, "", profile_table(rows, profiles)])


def profile_table(rows: dict[int, dict[str, float]], profiles: dict[int, Profile]) -> str:
    """Median milliseconds per stage and configuration (samples in brackets), then the client's median latency."""
    from server.cluster.profile import STAGES

    names = list(profiles)
    lines = [
        "per stage, median ms (samples) over every frame of the run:",
        "",
        "| stage | what it measures | " + " | ".join(f"{n} session replica{'s' * (n > 1)}" for n in names) + " |",
        "| --- | --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for stage, what in STAGES.items():
        cells = [f"{p[stage][0]:.1f} ({p[stage][1]})" if stage in p else "-" for p in profiles.values()]
        lines.append(f"| {stage} | {what} | " + " | ".join(cells) + " |")
    cells = [f"{rows[n]['p50_ms']:.0f}" for n in names]
    lines.append(
        "| client latency p50 | the client: frame sent -> its prediction received | " + " | ".join(cells) + " |"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = journaled_streams_parser("python -m benchmarks.cluster_scale", __doc__, seconds=15.0)
    p.add_argument("--send-size", choices=("full", "model"), default="full",
                   help="camera-size frames (640x480), or resized to the model's input on the client")  # fmt: skip
    p.add_argument("--ray-cpus", type=float, default=2.0, help="CPUs of the local Ray cluster")
    p.add_argument("--kills", type=int, default=3, help="replica kills for the recovery time (0: none)")
    p.add_argument("--session-replicas", type=lambda v: [int(n) for n in v.split(",")], default=[1, 2],
                   help="comma-separated session-replica counts to measure (default 1,2)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if reach_redis(args.redis, "cluster_scale") is None:
        return 2
    base, info = plain(args)
    sys.stderr.write("r3d-serve: measured\n")
    rows, profiles, kills = on_cluster(args, info)
    sys.stdout.write(table(args, base, rows, profiles, kills) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
