"""Synthetic frames, protocol helpers and a synthetic recording for the server tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from websockets.sync.client import ClientConnection, connect

from rgbd import DatasetWriter, Frame
from server.protocol import Hello, encode_frame, pack, parse_server_message

H, W = 120, 160
API_HEADERS = {"Authorization": "Bearer test-key-0123456789abcdef"}
ADMIN_HEADERS = {"Authorization": "Bearer admin-key-0123456789abcdef"}
BYE = pack({"type": "bye"})  # the client's goodbye


def synthetic_frame(i: int, *, h: int = H, w: int = W, dead_depth: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A moving pattern: colour and depth change with i so the tokens have rank."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = 0.35 * i
    r = 128 + 100 * np.sin(xx / 9 + phase)
    g = 128 + 100 * np.cos(yy / 7 - phase)
    b = 128 + 60 * np.sin((xx + yy) / 13 + 2 * phase)
    rgb = np.stack([r, g, b], axis=-1).astype(np.uint8)
    if dead_depth:
        depth = np.full((h, w), 1500, np.uint16)
    else:
        depth = (1500 + 900 * np.sin(xx / 17 + phase) * np.cos(yy / 11 - 0.5 * phase)).astype(np.uint16)
        depth[:4, :4] = 0  # a few holes, as real sensors have
    return rgb, depth


def hello(**overrides: Any) -> bytes:
    fields: dict[str, Any] = {"camera": "synthetic", "width": W, "height": H, "depth_scale": 0.001, "tick_hz": 15.0}
    fields.update(overrides)
    return pack(Hello(**fields))


def frame_msg(i: int, ts: float | None = None, **kw: Any) -> bytes:
    rgb, depth = synthetic_frame(i, dead_depth=kw.pop("dead_depth", False))
    return encode_frame(rgb, depth, i / 15.0 if ts is None else ts, i, **kw)


def edit(message: bytes, **changes: Any) -> bytes:
    raw = msgpack.unpackb(message)
    raw.update(changes)
    return msgpack.packb(raw)


def open_ws(url: str, **kw: Any) -> ClientConnection:
    headers = kw.pop("headers", API_HEADERS)
    return connect(url, compression=None, max_size=64 * 2**20, additional_headers=headers, open_timeout=30, **kw)


def recv(ws: ClientConnection, timeout: float = 30.0) -> Any:
    return parse_server_message(ws.recv(timeout=timeout))


def recv_until(ws: ClientConnection, kind: str, timeout: float = 30.0) -> tuple[Any, list[Any]]:
    """The next message of type ``kind``, and the others received before it."""
    others: list[Any] = []
    while True:
        msg = recv(ws, timeout)
        if msg.type == kind:
            return msg, others
        others.append(msg)


def start(ws: ClientConnection, **hello_fields: Any) -> Any:
    ws.send(hello(**hello_fields))
    welcome, _ = recv_until(ws, "welcome")
    return welcome


def write_recording(root: Path, name: str, n: int, fps: float = 15.0) -> Path:
    """A dataset in the common format with one sequence 'seq0' of ``n`` synthetic frames."""

    def frames() -> Iterator[Frame]:
        for i in range(n):
            rgb, depth = synthetic_frame(i)
            yield Frame(rgb=rgb, depth=depth, depth_scale=0.001, timestamp=i / fps, index=i,
                        label=["walk", "sit", "drink"][(i // 10) % 3])  # fmt: skip

    writer = DatasetWriter(root / name, name=name, classes=["walk", "sit", "drink"], fps=fps, source="synthetic")
    writer.add_sequence("seq0", frames(), fps=fps)
    return root / name
