"""One streaming session over a WebSocket: send frames, receive predictions, survive a dropped connection.

The connection, its reconnect and the resume of the session (with the re-send of the frames it lacks) are the
StreamLink's (clients/sdk/link.py); this module is what a user calls: send, receive, drain, close.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np

from clients.sdk.errors import StreamClosed
from clients.sdk.link import SessionStore, StreamLink
from clients.sdk.replay import SentFrame
from clients.sdk.transport import TransportClosed
from rgbd.frame import Frame
from server.protocol import (
    AnticipationOut,
    Bye,
    Ping,
    downscale_frame,
    encode_frame,
    pack,
)

__all__ = ["AsyncStream", "SessionStore"]


class AsyncStream(StreamLink):
    """A live session. Use `async with client.stream(SessionCreate(...)) as s:` (see AsyncClient.stream)."""

    # --- sending ------------------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._closed:
            raise StreamClosed("the stream is closed")

    async def send_frame(self, frame: Frame) -> int:
        """Encode and send one frame; returns its sequence number. Waits through a reconnect if one is running."""
        rgb = frame.rgb if self._hello.color else None  # a depth-only stream sends no colour, whatever the camera has
        return await self.send(rgb, frame.depth, frame.timestamp, depth_scale=frame.depth_scale)

    async def send(
        self, rgb: np.ndarray | None, depth: np.ndarray, ts: float, *, depth_scale: float | None = None
    ) -> int:
        """Encode (in a worker thread) and send RGB uint8 (H, W, 3) + depth uint16 (h, w) taken at `ts` seconds;
        with send_size 'model' both are first resized to the model's input size (server.protocol.downscale).
        rgb None in every frame when the stream's hello says color false (a depth-only camera); in an RGB-D stream
        a frame whose colour is missing (the colour camera stopped): a depth-only model serves it and modality
        health reports the colour as missing, a model that uses colour answers bad_frame (docs/protocol.md)."""
        self._check_open()
        if rgb is not None and not self._hello.color:
            raise ValueError("expected no colour: this stream's hello declares a depth-only camera (color false)")
        seq = self._seq
        data = await asyncio.to_thread(self._encode, rgb, depth, ts, seq, depth_scale)
        self._seq += 1
        await self._send_frame(SentFrame(seq, ts, data))
        self._send_times[seq] = time.perf_counter()
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(data)
        return seq

    def _encode(
        self, rgb: np.ndarray | None, depth: np.ndarray, ts: float, seq: int, depth_scale: float | None
    ) -> bytes:
        color, depth_codec, quality = self._codecs
        model = self._model_input
        if model is not None and model.image_size is not None and model.depth_size is not None:
            scale = depth_scale or self._hello.depth_scale
            rgb, depth = downscale_frame(rgb, depth, model.image_size, model.depth_size, scale, model.depth_range_m)
        return encode_frame(rgb, depth, ts, seq, color_codec=color, depth_codec=depth_codec, jpeg_quality=quality,
                            depth_scale=depth_scale)  # fmt: skip

    async def _send_frame(self, frame: SentFrame) -> None:
        """Keep the frame for a replay and send it. When the connection fails, the resume sends it again if the
        session lacks it (so it is not sent here: a frame the server has would be a duplicate, refused with
        bad_timestamp); on a new session it is sent again here."""
        epoch: int | None = None
        while True:
            await self._connected.wait()
            self._check_open()
            if epoch == self._session_epoch:
                return  # the session resumed after the failed send: the replay sent the frame, or the server had it
            epoch = self._session_epoch
            self._replay.add(frame)
            conn = self._conn
            assert conn is not None
            try:
                await conn.send(frame.data)
                return
            except TransportClosed:
                await self._reconnect(conn)

    async def _send_raw(self, data: bytes | str) -> None:
        """Send on the current connection; a failed send waits for the reconnect (which ends the stream if it fails
        within the policy's time) and sends again."""
        while True:
            await self._connected.wait()
            self._check_open()
            conn = self._conn
            assert conn is not None
            try:
                await conn.send(data)
                return
            except TransportClosed:
                await self._reconnect(conn)

    async def fetch_snapshot(self) -> bytes:
        """Fetch the session's snapshot (token window, counters) and keep it: with
        ReconnectPolicy(on_session_lost=RESTORE_SNAPSHOT) a restarted server gets it back instead of an empty window."""
        if self._sessions is None or self.session_id is None:
            raise StreamClosed("no session to snapshot (open the stream first; streams from AsyncClient can snapshot)")
        self._snapshot = await self._sessions.snapshot(self.session_id)
        return self._snapshot

    async def ping(self, timeout: float = 10.0) -> float:
        """Round trip of a ping in ms; as the server answers in order, every frame sent before has been read."""
        pid = self._seq * 1000 + len(self._pongs)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs[pid] = fut
        t0 = time.perf_counter()
        await self._send_raw(pack(Ping(id=pid)))
        await asyncio.wait_for(fut, timeout)
        return (time.perf_counter() - t0) * 1000.0

    # --- receiving ----------------------------------------------------------------------------------------------

    async def next_prediction(self, timeout: float | None = None) -> AnticipationOut | None:
        """The next prediction, or None after `timeout` seconds without one."""
        try:
            item = await asyncio.wait_for(self._messages.get(), timeout)
        except TimeoutError:
            self._check_open()
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def pending(self) -> list[AnticipationOut]:
        """Every prediction received and not yet consumed, without waiting."""
        out = []
        while not self._messages.empty():
            item = self._messages.get_nowait()
            if isinstance(item, BaseException):
                raise item
            out.append(item)
        return out

    async def predictions(self) -> AsyncIterator[AnticipationOut]:
        """Iterate predictions until the stream closes."""
        while not self._closed:
            pred = await self.next_prediction(timeout=0.5)
            if pred is not None:
                yield pred

    async def drain(self, timeout: float = 10.0, quiet_s: float = 0.5) -> list[AnticipationOut]:
        """After the last frame: wait until the server has read everything (a ping), then until the prediction of
        the last frame arrived or none has come for a quiet spell; returns the predictions received.

        The quiet spell is `quiet_s` or twice the p95 round trip measured so far, whichever is longer (a loaded
        server answers late, not never); before the stream's first prediction it is the whole `timeout`."""
        deadline = time.monotonic() + timeout
        out: list[AnticipationOut] = []
        await self.ping(timeout)
        last_seq = self._seq - 1
        while (left := deadline - time.monotonic()) > 0:
            p95_ms = self.stats.latency_ms(95)
            quiet = max(quiet_s, 2 * p95_ms / 1000) if self.stats.predictions and p95_ms is not None else left
            pred = await self.next_prediction(timeout=max(min(quiet, left), 0.01))
            if pred is None:
                break
            out.append(pred)
            if pred.frame_seq >= last_seq:
                break
        return out

    # --- closing ------------------------------------------------------------------------------------------------

    async def close(self, *, end_session: bool = True) -> None:
        """Close the connection; with `end_session` the server frees the session, else it stays resumable."""
        if self._closed:
            return
        conn = self._conn
        if conn is not None and end_session and self._fatal is None:
            try:
                await conn.send(pack(Bye(reason="client closed the stream")))
            except TransportClosed:
                pass
        self._closed = True
        if conn is not None:
            await conn.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, TransportClosed):
                pass

    async def __aenter__(self) -> AsyncStream:
        if self.welcome is None:
            await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
