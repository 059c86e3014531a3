"""What durable sessions cost Redis per stream: `python -m benchmarks.session_store_rate --redis redis://127.0.0.1:6390/0`.

Streams synthetic RGB-D frames (benchmarks.loadgen) at --fps through a real server in this process (the model of
--model) whose sessions are journaled to the Redis at --redis (start one on loopback first, e.g.
``redis-server --port 6390 --save '' --appendonly no``), once per journal interval k of --journal-frames. Per stream
and second: the frames encoded, the journal writes (one Lua script call per session write) and the time of a
journal round trip (one per encoder batch: what the inference thread waits; the server's metrics),
and from Redis's own counters (INFO commandstats and stats) the commands run (those inside the scripts included)
and the bytes Redis received and sent. Medians over --repeats runs of --seconds; the machine is named. The figures
project a site's Redis load: N streams cost N times the per-stream rates (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from benchmarks.loadgen import journaled_streams_parser, reach_redis, run_streams, synthetic_frames
from benchmarks.loadtest import metric
from benchmarks.synth_bench import machine
from server.app import create_app
from server.serving import BackgroundServer
from server.settings import Settings


def counters(client: redis.Redis, url: str) -> dict[str, float]:
    """So far: frames encoded and session writes (the server's metrics); commands, those run inside scripts included,
    and network bytes (Redis's INFO)."""
    commands: dict[str, Any] = client.info("commandstats")
    stats: dict[str, Any] = client.info("stats")
    served = httpx.get(f"{url}/metrics").text
    return {
        "frames": metric(served, "r3d_encode_batch_frames_sum"),
        "writes": metric(served, "r3d_session_store_writes_total"),
        "round_trips": metric(served, "r3d_session_store_write_seconds_count"),
        "write_s": metric(served, "r3d_session_store_write_seconds_sum"),
        "commands": sum(v["calls"] for k, v in commands.items() if k != "cmdstat_info"),
        "bytes_in": stats["total_net_input_bytes"],
        "bytes_out": stats["total_net_output_bytes"],
    }


def measure(args: argparse.Namespace, k: int, client: redis.Redis) -> list[dict[str, float]]:
    """``args.repeats`` runs with journal interval ``k``: per-stream rates of each run."""
    settings = Settings(model_path=args.model, backend=args.backend, port=0, session_store=args.redis,
                        session_journal_frames=k, jobs_dir=Path(tempfile.mkdtemp(prefix="r3d-bench-jobs-")),
                        log_level="warning", max_sessions=max(32, args.streams + 2),
                        max_sessions_per_client=max(16, args.streams + 2))  # fmt: skip
    frames = synthetic_frames(30, 480, 640)
    opts = {"key": None, "width": 640, "height": 480, "tick_hz": args.tick_hz, "fps": args.fps, "send_size": "full"}
    runs = []
    with BackgroundServer(create_app(settings), settings) as url:
        ws_url = "ws" + url[len("http") :] + "/v1/stream"
        for _ in range(args.repeats):
            before = counters(client, url)
            t_start = time.monotonic() + 1.0
            asyncio.run(run_streams(ws_url, frames, opts, args.streams, t_start, t_start + args.seconds))
            after = counters(client, url)
            span = args.seconds + 1.0  # the send window and the wait for the last predictions
            runs.append({name: (after[name] - before[name]) / span / args.streams for name in before})
    return runs


def table(results: dict[int, list[dict[str, float]]], args: argparse.Namespace) -> str:
    lines = [
        f"machine: {machine()}; 1-min load average {os.getloadavg()[0]:.1f}; {args.streams} streams at {args.fps:g} "
        f"fps for {args.seconds:g} s, medians of {args.repeats} runs; per stream and second:",
        "",
        "| journal every k frames | frames encoded | journal writes | Redis commands | bytes to Redis "
        "| bytes from Redis | to Redis per encoded frame | commands per write | ms per round trip |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for k, runs in results.items():
        med = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
        per_frame = statistics.median(r["bytes_in"] / max(r["frames"], 1e-9) for r in runs) / 1024
        per_write = statistics.median(r["commands"] / max(r["writes"], 1e-9) for r in runs)
        trip_ms = statistics.median(1e3 * r["write_s"] / max(r["round_trips"], 1e-9) for r in runs)
        lines.append(f"| {k} | {med['frames']:.1f} | {med['writes']:.1f} | {med['commands']:.1f} | "
                     f"{med['bytes_in'] / 1024:.1f} KiB | {med['bytes_out'] / 1024:.2f} KiB | {per_frame:.2f} KiB | "
                     f"{per_write:.1f} | {trip_ms:.2f} |")  # fmt: skip
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = journaled_streams_parser("python -m benchmarks.session_store_rate", __doc__, seconds=8.0)
    p.add_argument("--journal-frames", default="1,5", help="comma-separated journal intervals k to compare")
    p.add_argument("--repeats", type=int, default=3)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    client = reach_redis(args.redis, "session_store_rate")
    if client is None:
        return 2
    results = {}
    for k in (int(v) for v in args.journal_frames.split(",")):
        results[k] = measure(args, k, client)
        sys.stderr.write(f"journal every {k} frames: measured\n")
    sys.stdout.write(table(results, args) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
