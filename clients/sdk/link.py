"""The connection under a stream: handshake, the reader, and reconnect with resume.

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
from collections.abc import Callable
from typing import Protocol

from clients.sdk.errors import ClientError, ServerError, StreamClosed
from clients.sdk.reconnect import ReconnectPolicy, SessionLoss
from clients.sdk.replay import ReplayBuffer
from clients.sdk.stats import SessionReset, StreamStats
from clients.sdk.transport import TransportClosed, WSConnection, WSConnector
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
    pack,
    parse_server_message,
)

__all__ = ["SessionStore", "StreamLink"]

logger = logging.getLogger(__name__)

RESUME_NOTICE_S = 10.0  # how long a resumed welcome's session_resumed notice may take
_RESUMABLE_CLOSE_CODES = {1001, 1006, 1011, 1012, 1013, 1014}  # going away, abnormal, server error, restart, ...


class SessionStore(Protocol):
    """The REST side a stream needs to snapshot its session and restore it on a restarted server (AsyncClient)."""

    async def snapshot(self, session_id: str) -> bytes: ...

    async def restore_session(self, snapshot: bytes) -> SessionPublic: ...


class StreamLink:
    """The connection of an AsyncStream (which adds sending, receiving and closing): the handshake, the reader task
    that dispatches the server's messages, and the reconnect that resumes the session and re-sends what it lacks."""

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
