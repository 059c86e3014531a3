"""Hostile inputs of the bad-input suite, and the round trip that sends one inside a live session."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from typing import Any

import lz4.frame
import msgpack
import zstandard

from server.protocol import ErrorOut
from tests.server.bad_input.conftest import Served
from tests.server.helpers import BYE, frame_msg, open_ws, recv_until, start

CHUNK = bytes(2**20)


def frame_with(**changes: Any) -> bytes:
    """A good frame (seq 1) with some fields replaced."""
    msg = msgpack.unpackb(frame_msg(1))
    msg.update(changes)
    return msgpack.packb(msg)


def send_bad(served: Served, bad: bytes | str) -> tuple[ErrorOut, int]:
    """In a fresh session: a good frame, ``bad``, a good frame. Returns the error and the window size of the last
    prediction (2: the session went on and kept its tokens)."""
    with open_ws(served.ws_url) as ws:
        start(ws, backpressure="block", tick_hz=15)
        ws.send(frame_msg(0, ts=0.0))
        recv_until(ws, "prediction")
        ws.send(bad)
        error, _ = recv_until(ws, "error")
        ws.send(frame_msg(2, ts=2 / 15))
        after, _ = recv_until(ws, "prediction")
        ws.send(BYE)
    served.keep(error)
    return error, after.window.frames


def png_declaring(height: int, width: int) -> bytes:
    """A valid 8-bit greyscale PNG of height x width zeros: small on the wire, huge once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer = zlib.compressobj(9)
    row = bytes(1 + width)  # filter byte + pixels
    rows_per_chunk = max(1, len(CHUNK) // len(row))
    body = b"".join(packer.compress(row * min(rows_per_chunk, height - r)) for r in range(0, height, rows_per_chunk))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body + packer.flush()) + chunk(b"IEND", b"")


def zstd_of_zeros(size: int) -> bytes:
    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False) as writer:
        for _ in range(size // len(CHUNK)):
            writer.write(CHUNK)
    return out.getvalue()


def lz4_of_zeros(size: int) -> bytes:
    with lz4.frame.LZ4FrameCompressor() as compressor:
        parts = [compressor.begin(), *(compressor.compress(CHUNK) for _ in range(size // len(CHUNK)))]
        return b"".join([*parts, compressor.flush()])


def zip_of_zeros(name: str, size: int, extra: dict[str, bytes] | None = None) -> bytes:
    """A zip whose member ``name`` unpacks to ``size`` zero bytes (plus small ``extra`` members)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(name, "w", force_zip64=True) as member:
            for _ in range(size // len(CHUNK)):
                member.write(CHUNK)
        for member_name, data in (extra or {}).items():
            zf.writestr(member_name, data)
    return out.getvalue()
