"""One streaming session over a WebSocket: send frames, receive predictions, survive a dropped connection.

On an abnormal close the stream reconnects with backoff and sends ``hello`` with its session id; the server
re-attaches the session with its token window (``welcome.resumed``), so anticipation continues where it was. Its
``session_resumed`` notice says up to which timestamp the session has frames (``last_ts``): the stream sends again, in
order and before any new frame, the frames it kept (clients/sdk/replay.py, ReconnectPolicy.replay_s) that are newer,
so frames lost in the dropped connection, or with a server restored from its session store after a crash, reach the
session once each (``stats.frames_resent``); those no longer kept are counted in ``stats.frames_lost``.

When the server answers ``session_not_found`` on reconnecting (it restarted: sessions live in its memory unless it
has a session store), the stream does what its ReconnectPolicy says: by default it opens a new session and keeps
streaming; it logs a warning, counts the reset (``stats.session_resets``), appends a SessionReset to ``resets``
and calls ``on_reset``. Frames the lost session had buffered but not yet answered get no prediction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import numpy as np

from clients.sdk.errors import ClientError, ServerError, StreamClosed
from clients.sdk.reconnect import ReconnectPolicy, SessionLoss
from clients.sdk.replay import ReplayBuffer, SentFrame
from clients.sdk.stats import SessionReset, StreamStats
from clients.sdk.transport import TransportClosed, WSConnection, WSConnector
from rgbd.frame import Frame
from server.protocol import (
    AnticipationOut,
    Bye,
    ColorCodec,
    DepthCodec,
    ErrorOut,
    Hello,
    ModelInfo,
    Notice,
    NoticeCode,
    Ping,
    Pong,
    ProtocolError,
    SendSize,
    SessionPublic,
    Welcome,
    downscale_frame,
    encode_frame,
    pack,
    parse_server_message,
)

__all__ = ["AsyncStream", "SessionStore"]

logger = logging.getLogger(__name__)

RESUME_NOTICE_S = 10.0  # how long a resumed welcome's session_resumed notice may take
_RESUMABLE_CLOSE_CODES = {1001, 1006, 1011, 1012, 1013, 1014}  # going away, abnormal, server error, restart, ...


class SessionStore(Protocol):
    """The REST side a stream needs to snapshot its session and restore it on a restarted server (AsyncClient)."""

    async def snapshot(self, session_id: str) -> bytes: ...

    async def restore_session(self, snapshot: bytes) -> SessionPublic: ...


class AsyncStream:
    """A live session. Use `async with client.stream(SessionCreate(...)) as s:` (see AsyncClient.stream)."""

    def __init__(
        self,
        url: str,
        hello: Hello,
        connector: WSConnector,
        headers: dict[str, str],
        *,
        color_codec: ColorCodec = ColorCodec.JPEG,
        depth_codec: DepthCodec = DepthCodec.ZSTD,
        jpeg_quality: int = 80,
        reconnect: ReconnectPolicy | None = None,
        on_reset: Callable[[SessionReset], None] | None = None,
        sessions: SessionStore | None = None,
        queue_size: int = 1000,
    ) -> None:
        self._url, self._hello, self._connect, self._headers = url, hello, connector, headers
        self._codecs = (color_codec, depth_codec, jpeg_quality)
        self._model_input: ModelInfo | None = None  # send_size 'model': the sizes to resize to, from the welcome
        self.reconnect_policy = policy = reconnect or ReconnectPolicy()
        self._replay = ReplayBuffer(policy.replay_s, policy.replay_bytes)
        self._last_ts: float | None = None  # the resumed session's last frame (its session_resumed notice)
        self._session_epoch = 0  # moves on when the stream continues on another session (its frames start anew)
        self._on_reset, self._sessions = on_reset, sessions
        self._snapshot: bytes | None = None
        self._conn: WSConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._messages: asyncio.Queue[AnticipationOut | BaseException] = asyncio.Queue(queue_size)
        self._send_times: dict[int, float] = {}
        self._reconnect_lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._pongs: dict[int, asyncio.Future[None]] = {}
        self._seq = 0
        self._closed = False
        self._fatal: BaseException | None = None
        self.session_id: str | None = hello.session_id
        self.welcome: Welcome | None = None
        self.latest: AnticipationOut | None = None
        self.notices: deque[Notice] = deque(maxlen=100)
        self.errors: deque[ErrorOut] = deque(maxlen=100)
        self.resets: list[SessionReset] = []
        self.stats = StreamStats()

    # --- connection ---------------------------------------------------------------------------------------------

    async def open(self) -> Welcome:
        """Connect and say hello; returns the server's welcome (raises ServerError if it refuses)."""
        await self._handshake()
        self._connected.set()
        assert self.welcome is not None
        return self.welcome

    async def _handshake(self) -> None:
        hello = self._hello.model_copy(update={"session_id": self.session_id})
        conn = await self._connect(self._url, self._headers)
        try:
            await conn.send(pack(hello))
            msg = await self._welcome(conn)
            if self._hello.send_size is SendSize.MODEL:
                self._input_sizes(msg)
        except TransportClosed as exc:
            raise ServerError(0, f"closed_{exc.code}", exc.reason or "the server closed the connection") from exc
        except BaseException:
            await conn.close()
            raise
        self._conn, self.welcome, self.session_id = conn, msg, msg.session_id
        self._reader = asyncio.create_task(self._read(conn), name=f"r3d-stream-reader-{msg.session_id}")
        logger.info("session %s %s (window %d frames)", msg.session_id, "resumed" if msg.resumed else "opened",
                    msg.window_frames)  # fmt: skip

    async def _welcome(self, conn: WSConnection) -> Welcome:
        """Read the answer to the hello: the welcome and, for a resumed session, the session_resumed notice after
        it (its last_ts is kept for the replay)."""
        welcome: Welcome | None = None
        while True:
            try:  # the notice follows the welcome at once; a server that never sends it would hold the stream
                raw = await (conn.recv() if welcome is None else asyncio.wait_for(conn.recv(), RESUME_NOTICE_S))
            except TimeoutError as exc:
                raise ServerError(0, "protocol", f"expected a session_resumed notice within {RESUME_NOTICE_S:g} s "
                                  "of a resumed welcome (docs/protocol.md)") from exc  # fmt: skip
            msg = parse_server_message(raw)
            if isinstance(msg, ErrorOut):
                raise ServerError(0, msg.code.value, msg.message)
            if isinstance(msg, Welcome):
                welcome = msg
                if not msg.resumed:
                    return msg
            elif isinstance(msg, Notice):
                self.notices.append(msg)
                if welcome is not None and msg.code is NoticeCode.SESSION_RESUMED:
                    last_ts = msg.details.get("last_ts")
                    self._last_ts = None if last_ts is None else float(last_ts)
                    return welcome

    def _input_sizes(self, welcome: Welcome) -> None:
        """send_size 'model': the colour and depth sizes the server's model takes, from its welcome."""
        if welcome.model.image_size is None or welcome.model.depth_size is None:
            raise ServerError(0, "unsupported_send_size", f"the server ({welcome.model.server_version}) does not "
                              "announce its model's input size; stream with send_size 'full'")  # fmt: skip
        self._model_input = welcome.model

    async def _reconnect(self, failed: WSConnection) -> None:
        """Resume the session on a new connection unless another task already did; on failure the stream ends."""
        async with self._reconnect_lock:
            if self._conn is not failed or self._closed:
                return
            self._connected.clear()
            self._conn = None
            try:
                lost = await self._resume()
            except ClientError as exc:
                self._fatal = exc
                self._connected.set()  # wake senders so they see the failure
                await self._messages.put(exc)
                return
            self.stats.reconnects += 1
            if lost is not None:
                self._report_reset(lost)
            self._connected.set()
            await self._repeat_pings()

    async def _resume(self) -> str | None:
        """Handshake (ReconnectPolicy.retry) until the session is back, then send again the kept frames it lacks;
        a new session instead starts with no kept frames. Returns the id of a session the server lost, or None."""
        lost: str | None = None
        while True:
            lost = await self.reconnect_policy.retry(self._handshake, self._replace_lost_session,
                                                     lambda: self.session_id) or lost  # fmt: skip
            assert self.welcome is not None and self._conn is not None
            if not self.welcome.resumed:  # the kept frames belong to the lost session
                self._replay.clear()
                self._session_epoch += 1
                return lost
            try:
                await self._send_replay(self._conn)
                return lost
            except TransportClosed as exc:  # dropped again: resume again (from the server's last frame then)
                logger.warning("connection lost while re-sending frames (%s); resuming again", exc)
                self._conn = None

    async def _send_replay(self, conn: WSConnection) -> None:
        """Send again, in order, the kept frames after the resumed session's last_ts; count those no longer kept."""
        replay = self._replay.after(self._last_ts)
        self.stats.frames_lost += replay.lost
        if replay.lost:
            logger.warning("%s%d frames sent after ts %s are lost: they had left the replay buffer (ReconnectPolicy."
                           "replay_s %g, replay_bytes %d)", "at least " if replay.lost_is_lower_bound else "",
                           replay.lost, self._last_ts, self._replay.max_s, self._replay.max_bytes)  # fmt: skip
        for frame in replay.frames:
            await conn.send(frame.data)
            self._send_times[frame.seq] = time.perf_counter()
            self.stats.frames_resent += 1
        if replay.frames:
            logger.info("session %s resumed with frames up to ts %s: sent %d frames again (seq %d-%d)",
                        self.session_id, self._last_ts, len(replay.frames), replay.frames[0].seq,
                        replay.frames[-1].seq)  # fmt: skip

    async def _replace_lost_session(self) -> None:
        """Point the next hello at a restored snapshot (when configured and possible), else at a new session."""
        self.session_id = None
        wanted = self.reconnect_policy.on_session_lost is SessionLoss.RESTORE_SNAPSHOT
        if wanted and self._snapshot is not None and self._sessions is not None:
            try:
                self.session_id = (await self._sessions.restore_session(self._snapshot)).id
            except ClientError as exc:
                logger.warning("could not restore the last snapshot (%s); opening a new session instead", exc)

    def _report_reset(self, lost: str) -> None:
        assert self.welcome is not None and self.session_id is not None
        reset = SessionReset(lost_session_id=lost, session_id=self.session_id, restored=self.welcome.resumed,
                             window_frames=self.welcome.window_frames, frames_sent=self.stats.frames_sent)  # fmt: skip
        self.resets.append(reset)
        self.stats.session_resets += 1
        logger.warning("window reset: %s", reset.describe())
        if self._on_reset is not None:
            try:
                self._on_reset(reset)
            except Exception:  # an observer's bug must not end the stream
                logger.exception("the on_reset callback failed")

    async def _repeat_pings(self) -> None:
        """Pings the old connection never answered go out again, so a drain() waiting on one still ends."""
        conn = self._conn
        for pid in list(self._pongs):
            if conn is None:
                return
            try:
                await conn.send(pack(Ping(id=pid)))
            except TransportClosed:
                return  # the reader saw it too and reconnects again

    async def _read(self, conn: WSConnection) -> None:
        while True:
            try:
                raw = await conn.recv()
            except TransportClosed as exc:
                if self._closed:
                    return
                if exc.code in _RESUMABLE_CLOSE_CODES and self.session_id is not None:
                    logger.warning("connection lost (%s); resuming session %s", exc, self.session_id)
                    asyncio.get_running_loop().create_task(self._reconnect(conn))
                else:
                    self._fatal = StreamClosed(f"the server closed the stream: {exc}")
                    self._connected.set()
                    await self._messages.put(self._fatal)
                return
            try:
                msg = parse_server_message(raw)
            except ProtocolError as exc:
                logger.warning("ignoring a malformed server message: %s", exc)
                continue
            self._dispatch(msg)
            if isinstance(msg, AnticipationOut):
                await self._messages.put(msg)
            elif isinstance(msg, ErrorOut) and msg.fatal:
                self._fatal = ServerError(0, msg.code.value, msg.message)
                await self._messages.put(self._fatal)

    def _dispatch(self, msg: object) -> None:
        if isinstance(msg, AnticipationOut):
            self.latest = msg
            self.stats.predictions += 1
            self.stats.server = msg.counters
            self.stats.server_latency_ms.append(msg.latency.frame_to_prediction_ms)
            sent = self._send_times.pop(msg.frame_seq, None)
            if sent is not None:
                self.stats.round_trip_ms.append((time.perf_counter() - sent) * 1000.0)
            for seq in [s for s in self._send_times if s < msg.frame_seq]:  # never answered: resampled or dropped
                del self._send_times[seq]
        elif isinstance(msg, ErrorOut):
            self.stats.errors += 1
            self.errors.append(msg)
            logger.warning("server error %s (frame %s): %s", msg.code.value, msg.seq, msg.message)
        elif isinstance(msg, Notice):
            self.notices.append(msg)
            if msg.code is NoticeCode.MODEL_RELOADED and self._model_input is not None and "model" in msg.details:
                self._model_input = ModelInfo.model_validate(msg.details["model"])  # resize to the new model's size
            logger.info("server notice %s: %s", msg.code.value, msg.message)
        elif isinstance(msg, Pong) and isinstance(msg.id, int) and msg.id in self._pongs:
            self._pongs.pop(msg.id).set_result(None)
        elif isinstance(msg, Bye):
            logger.info("server said bye: %s", msg.reason)

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
