"""The load generator of ``python -m benchmarks.loadtest``: synthetic camera-like RGB-D frames and streams that send
them on an absolute schedule and time each frame until its prediction (one asyncio loop per process)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.protocol import Hello, ModelInfo, downscale_frame, encode_frame, pack, parse_server_message

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default"


def journaled_streams_parser(prog: str, doc: str, *, seconds: float) -> argparse.ArgumentParser:
    """The options of a benchmark that streams synthetic frames through servers journaling to a Redis
    (benchmarks.cluster_scale, benchmarks.session_store_rate); each adds its own."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    p.add_argument("--redis", required=True, help="a Redis to journal to, e.g. redis://127.0.0.1:6390/0 (loopback)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="bundle, checkpoint or folder (default: "
                   "models/default)")  # fmt: skip
    p.add_argument("--backend", default="auto")
    p.add_argument("--streams", type=int, default=2)
    p.add_argument("--seconds", type=float, default=seconds, help=f"seconds per measurement (default {seconds:g})")
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--tick-hz", type=float, default=5.0)
    return p


def reach_redis(url: str, prog: str) -> redis.Redis | None:
    """A client of the Redis at ``url`` that answered a PING; None, with the reason on stderr, when it did not."""
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        sys.stderr.write(f"{prog}: cannot reach {url}: {exc}\n")
        return None
    return client


DEPTH_SCALE = 0.001  # metres per depth unit of the synthetic streams
UNANSWERED_AFTER_S = 1.0  # a frame sent this long before the end with no prediction at or after it: a missing tick


@dataclass
class StreamStats:
    sent: int = 0
    bytes_sent: int = 0
    send_times: dict[int, float] = field(default_factory=dict)  # frames not yet followed by a prediction
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    late_sends: int = 0
    unanswered: int = 0
    last_counters: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def synthetic_frames(n: int, h: int, w: int, model: ModelInfo | None = None) -> list[bytes]:
    """``n`` distinct camera-like frames (smooth shapes, texture, depth noise, a moving person-sized blob; depth in
    mm), encoded once; with ``model`` resized first to its input size, as a send_size 'model' client does."""
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
        depth[(xx - w / 2 - 80 * np.sin(p)) ** 2 + (yy - h / 2) ** 2 < 60**2] = 900
        rgb8, depth16 = np.clip(rgb, 0, 255).astype(np.uint8), depth.astype(np.uint16)
        if model is not None and model.image_size is not None and model.depth_size is not None:
            rgb8, depth16 = downscale_frame(rgb8, depth16, model.image_size, model.depth_size, DEPTH_SCALE,
                                            model.depth_range_m)  # fmt: skip
        out.append(encode_frame(rgb8, depth16, 0.0, 0))
    return out


def retimed(frame: bytes, seq: int, ts: float) -> bytes:
    msg = msgpack.unpackb(frame)
    msg["seq"], msg["ts"] = seq, ts
    return msgpack.packb(msg, use_bin_type=True)


async def run_stream(ws_url: str, frames: list[bytes], opts: dict[str, Any], stats: StreamStats,
                     t_start: float, t_end: float) -> None:  # fmt: skip
    """One stream: hello, frames on an absolute (time.monotonic) schedule until t_end, latencies per prediction."""
    headers = {"Authorization": f"Bearer {opts['key']}"} if opts["key"] else {}
    try:
        async with connect(ws_url, compression=None, max_size=2**26, additional_headers=headers) as ws:
            await _stream(ws, frames, opts, stats, t_start, t_end)
    except ConnectionClosed as exc:  # the server (or a starved client) ended it: reported, the others go on
        stats.errors.append(f"connection lost: {exc}")
    stats.unanswered = sum(1 for t in stats.send_times.values() if t < t_end - UNANSWERED_AFTER_S)


async def _stream(ws: ClientConnection, frames: list[bytes], opts: dict[str, Any], stats: StreamStats,
                  t_start: float, t_end: float) -> None:  # fmt: skip
    await ws.send(pack(Hello(camera="loadtest", width=opts["width"], height=opts["height"], depth_scale=DEPTH_SCALE,
                             tick_hz=opts["tick_hz"], send_size=opts["send_size"])))  # fmt: skip
    welcome = parse_server_message(await ws.recv())
    if welcome.type != "welcome":
        raise RuntimeError(f"expected welcome, got {welcome}")
    receiver = asyncio.create_task(_receive(ws, stats))
    period = 1.0 / opts["fps"]
    seq = 0
    while True:
        due = t_start + seq * period
        if due >= t_end or time.monotonic() >= t_end:  # a client that fell behind stops on time too
            break
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -period:
            stats.late_sends += 1
        data = retimed(frames[seq % len(frames)], seq, seq * period)
        stats.send_times[seq] = time.monotonic()
        await ws.send(data)
        stats.sent += 1
        stats.bytes_sent += len(data)
        seq += 1
    await asyncio.sleep(1.0)  # the last predictions
    await ws.send(pack({"type": "bye"}))
    receiver.cancel()


async def _receive(ws: ClientConnection, stats: StreamStats) -> None:
    """Each prediction's latency (client send -> receipt) for the frame it answers; errors kept."""
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            msg = parse_server_message(raw)
            now = time.monotonic()
            if msg.type == "prediction":
                sent = stats.send_times.pop(msg.frame_seq, None)
                if sent is not None:
                    stats.latencies_ms.append((now - sent) * 1e3)
                    stats.server_ms.append(msg.latency.frame_to_prediction_ms)
                for seq in [s for s in stats.send_times if s < msg.frame_seq]:  # not tick frames, or dropped
                    del stats.send_times[seq]
                stats.last_counters = msg.counters.model_dump()
            elif msg.type == "error":
                stats.errors.append(msg.message)


async def run_streams(ws_url: str, frames: list[bytes], opts: dict[str, Any], n: int, t_start: float,
                   t_end: float) -> list[StreamStats]:  # fmt: skip
    stats = [StreamStats() for _ in range(n)]
    await asyncio.gather(*(run_stream(ws_url, frames, opts, s, t_start, t_end) for s in stats))
    return stats


def client_process(args: tuple[str, list[bytes], dict[str, Any], int, float, float]) -> list[StreamStats]:
    return asyncio.run(run_streams(*args))
