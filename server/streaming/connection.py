"""One streaming WebSocket connection (``/v1/stream``): hello -> welcome, then frames in and predictions out
(docs/protocol.md). The route (server/api/routes/stream.py) only accepts the socket and hands it here.

One connection = one receive loop (``run``) and one sender task, the only writer to the socket. Frames are taken in
order: the receive loop awaits each frame's decode (in the thread pool) before reading the next, so a session's
frames never overtake each other and a ``block`` session pushes back through TCP. Bad messages get an ``error`` and
the loop goes on; only failed hellos, auth and server shutdown end the connection. A disconnect without ``bye``
leaves the session detached (window kept) for ``reconnect_grace_s`` (``unstarted_grace_s`` if it never got a frame).

``WireConnection`` is that machinery for any session host; ``StreamConnection`` serves sessions of this process (the
registry and the inference worker), server.cluster's ``ClusterConnection`` serves sessions owned by Ray Serve
replicas. Both speak the same protocol through the same receive loop, sender, limits and errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from server.engine import Engine
from server.errors import NotReady, ServerError, close_code, error_out
from server.metrics import Metrics
from server.protocol import (
    Bye,
    ErrorCode,
    ErrorOut,
    FrameIn,
    Hello,
    Notice,
    NoticeCode,
    Ping,
    Pong,
    ProtocolError,
    SessionCreate,
    Welcome,
    WireModel,
    dump_json,
    pack,
    parse_client_message,
)
from server.settings import Settings
from server.streaming.ingest import ingest_frame
from server.streaming.registry import SessionRegistry
from server.streaming.session import OUTBOX_SIZE, Session, put_latest_wins
from server.streaming.worker import InferenceWorker

__all__ = ["ConnectionHost", "LocalHost", "StreamConnection", "WireConnection", "welcome_messages"]

logger = logging.getLogger(__name__)
SEND_DRAIN_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


def welcome_messages(session: Session, resumed: bool, engine: Engine, settings: Settings) -> list[WireModel]:
    """The answer to a hello: the welcome, and for a resumed session a notice saying what its window holds and the
    timestamp to re-send frames after."""
    out: list[WireModel] = [
        Welcome(
            session_id=session.id, resumed=resumed, window_frames=len(session.processor.window),
            tick_hz=session.processor.tick_hz, backpressure=session.backpressure, queue_size=session.queue_size,
            max_message_bytes=settings.max_message_bytes, model=engine.info,
        )
    ]  # fmt: skip
    if resumed:
        counters, last_ts = session.counters(), session.processor.last_ts
        out.append(Notice(code=NoticeCode.SESSION_RESUMED, message=f"session {session.id} resumed with "
                          f"{len(session.processor.window)} tokens in its window; send frames after ts {last_ts}",
                          details={"counters": counters.model_dump(), "last_ts": last_ts}))  # fmt: skip
    return out


class ConnectionHost(Protocol):
    """What a connection needs from the process that holds it: metrics, whether it drains, the open connections."""

    metrics: Metrics
    draining: bool

    @property
    def connections(self) -> set[Any]: ...


class LocalHost(ConnectionHost, Protocol):
    """What a connection whose session lives in this process uses of it (server.runtime.Runtime): the session
    registry, the inference worker and the pool that decodes frames."""

    registry: SessionRegistry
    worker: InferenceWorker
    decode_pool: ThreadPoolExecutor

    @property
    def engine(self) -> Engine: ...


class WireConnection:
    """One WebSocket client, whatever holds its session: ``authorize`` (the route's auth guard) runs first; a
    ServerError it raises ends the connection with a fatal error. Subclasses open the session (``_hello``), take its
    frames (``_frame``) and let it go when the socket ends (``_release``); ``session_id`` names it in logs."""

    def __init__(
        self, ws: WebSocket, host: ConnectionHost, settings: Settings, *, authorize: Callable[[], None] = lambda: None
    ) -> None:
        self.ws = ws
        self.authorize = authorize
        self.host = host
        self.settings = settings
        self.session_id: str | None = None
        self.encoding = "msgpack"
        self.outbox: asyncio.Queue[Any] = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self.said_bye = False
        self.closing = False
        self.client = ws.client.host if ws.client else "unknown"  # the per-client session limit's key
        self._sender: asyncio.Task[None] | None = None

    # --- output --------------------------------------------------------------------------------------------------

    def post(self, message: WireModel | _Close) -> None:
        put_latest_wins(self.outbox, message)

    async def _send_loop(self) -> None:
        while True:
            item = await self.outbox.get()
            try:
                if isinstance(item, _Close):
                    await self.ws.close(item.code, item.reason[:120])
                    return
                if self.encoding == "json":
                    await self.ws.send_text(dump_json(item))
                else:
                    await self.ws.send_bytes(pack(item))
            except (WebSocketDisconnect, RuntimeError, OSError):  # the peer is gone
                return

    def close_after_queued(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` once the messages already posted are sent."""
        self.post(_Close(code, reason))

    def error(self, exc: ServerError | ProtocolError, *, fatal: bool = False) -> None:
        self.host.metrics.error(exc.code.value)
        logger.info("stream %s: %s: %s", self.session_id or "-", exc.code.value, exc.message)
        self.post(error_out(exc, fatal=fatal))
        if fatal:
            self.post(_Close(close_code(exc.code), exc.code.value))

    async def close_for_shutdown(self, reason: str) -> None:
        """Server shutdown: a shutdown notice, bye, close 1001; the messages already queued go out first."""
        if self.closing:
            return
        self.closing = True
        self.post(Notice(code=NoticeCode.SHUTDOWN, message=reason, details={}))
        self.post(Bye(reason=reason))
        self.post(_Close(1001, "server shutting down"))
        await self._wait_sender()

    async def close_session_closed(self, reason: str) -> None:
        """The session was closed elsewhere (DELETE, expiry)."""
        self.post(Bye(reason=f"session closed: {reason}"))
        self.post(_Close(1000, "session closed"))

    async def _wait_sender(self) -> None:
        if self._sender is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._sender), SEND_DRAIN_TIMEOUT_S)
            except TimeoutError:
                self._sender.cancel()

    # --- the connection ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the socket until either side ends it, then close it if both sides still hold it open."""
        await self._serve()
        if self.ws.application_state is WebSocketState.CONNECTED and self.ws.client_state is WebSocketState.CONNECTED:
            try:
                await self.ws.close(1000)
            except RuntimeError:  # the peer went away between the check and the close
                pass

    async def _serve(self) -> None:
        self._sender = asyncio.create_task(self._send_loop(), name="r3d-ws-sender")
        try:
            self.authorize()
            if self.host.draining:
                raise NotReady("the server is shutting down; connect to another replica", code=ErrorCode.SHUTTING_DOWN)
        except ServerError as exc:
            self.error(exc, fatal=True)
            await self._wait_sender()
            return
        self.host.connections.add(self)
        try:
            await self._receive_loop()
        except Exception:  # a bug outside one message's handling: said once, and the client is told (1011)
            self._internal_error("the connection")
        finally:
            self.host.connections.discard(self)
            try:
                await self._release()
            except Exception:  # the session's host may be gone (a cluster replica): the socket still closes
                logger.exception("stream %s: releasing the session failed", self.session_id or "-")
            if not self.closing:
                self.post(_Close(1000, "bye"))
            await self._wait_sender()

    async def _receive_loop(self) -> None:
        hello_deadline = time.monotonic() + self.settings.hello_timeout_s
        while not self.closing:
            wait = None if self.session_id else max(0.0, hello_deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(self.ws.receive(), wait)
            except TimeoutError:
                limit = self.settings.hello_timeout_s
                late = ProtocolError(ErrorCode.HELLO_REQUIRED, f"expected a hello within {limit:g} s of connecting")
                self.error(late, fatal=True)
                return
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            t_recv = time.perf_counter()
            data: bytes | str | None = message.get("bytes")
            if data is None:
                data = message.get("text")
            if data is None:
                continue
            if not await self._handle(data, t_recv):
                return

    async def _handle(self, data: bytes | str, t_recv: float) -> bool:
        """One message; False when the connection should end."""
        size = len(data) if isinstance(data, bytes) else len(data.encode())
        try:
            if size > self.settings.max_message_bytes:
                self._oversize_frame()
                raise ProtocolError(
                    ErrorCode.MESSAGE_TOO_LARGE,
                    f"expected messages of at most {self.settings.max_message_bytes} bytes, got {size} bytes; "
                    "send a smaller frame (JPEG colour, zstd depth) or raise max_message_bytes",
                )
            msg = parse_client_message(data)
            if isinstance(msg, FrameIn):
                return await self._frame(msg, t_recv)
            elif isinstance(msg, Hello):
                if self.session_id is not None:
                    raise ProtocolError(ErrorCode.DUPLICATE_HELLO, f"this connection already has session "
                                        f"{self.session_id}; send frames, or reconnect to start another")  # fmt: skip
                return await self._hello(msg)
            elif isinstance(msg, Ping):
                self.post(Pong(id=msg.id))
            else:
                self.said_bye = True
                return False
        except ProtocolError as exc:
            self.error(exc)
        except ServerError as exc:  # the session went away under us (closed, expired)
            self.error(exc, fatal=True)
            return False
        except Exception:  # a server bug: one traceback in the log, an `internal` error and close 1011 for the client
            self._internal_error("a message")
            return False
        return True

    def _internal_error(self, handling: str) -> None:
        logger.exception("stream %s: internal error while handling %s", self.session_id or "-", handling)
        self.host.metrics.error(ErrorCode.INTERNAL.value)
        self.post(ErrorOut(code=ErrorCode.INTERNAL, message="internal error; the server log has the details",
                           fatal=True))  # fmt: skip
        self.post(_Close(close_code(ErrorCode.INTERNAL), "internal error"))

    # --- the session's host ------------------------------------------------------------------------------------

    async def _hello(self, hello: Hello) -> bool:
        """Open or resume the hello's session and post the welcome; False (after a fatal error) ends the connection."""
        raise NotImplementedError

    async def _frame(self, msg: FrameIn, t_recv: float) -> bool:
        """Take one frame of the open session (ProtocolError for a bad frame, ServerError when the session is gone);
        False when the connection should end."""
        raise NotImplementedError

    def _oversize_frame(self) -> None:
        """A message over max_message_bytes arrived (refused before parsing); the local host counts it as rejected."""

    async def _release(self) -> None:
        """The socket ended: close the session after a bye, otherwise keep it detached for a reconnect."""
        raise NotImplementedError


class StreamConnection(WireConnection):
    """A WebSocket client whose session lives in this process (the runtime's registry and inference worker)."""

    def __init__(
        self, ws: WebSocket, runtime: LocalHost, settings: Settings, *, authorize: Callable[[], None] = lambda: None
    ) -> None:
        super().__init__(ws, runtime, settings, authorize=authorize)
        self.runtime = runtime
        self.session: Session | None = None

    async def _frame(self, msg: FrameIn, t_recv: float) -> bool:
        if self.session is None:
            raise ProtocolError(ErrorCode.HELLO_REQUIRED, "expected a hello before the first frame", seq=msg.seq)
        rt, session = self.runtime, self.session
        await ingest_frame(session, msg, t_recv, worker=rt.worker, pool=rt.decode_pool, metrics=rt.metrics,
                           held=lambda: self.session is session)  # fmt: skip
        return True

    async def _hello(self, hello: Hello) -> bool:
        self.encoding = hello.encoding
        stream = SessionCreate.model_validate(hello.model_dump(include=set(SessionCreate.model_fields)))
        registry = self.runtime.registry
        try:
            self.runtime.engine.check_stream(stream)  # refused at hello, before any frame: color_required
            if hello.session_id:
                session = registry.attach(hello.session_id, client=self.client)
                resumed = True
                session.resume(stream, registry.tick_hz(stream, self.runtime.engine.spec.fps))
            else:
                session = registry.create(stream, client=self.client)
                session.transition(session.state.ATTACHED)
                resumed = False
        except ServerError as exc:
            self.error(exc, fatal=True)
            return False
        self.session = session
        self.session_id = session.id
        session.attach_outbox(self.outbox, self.close_session_closed, self._taken_over)
        for message in welcome_messages(session, resumed, self.runtime.engine, self.settings):
            self.post(message)
        logger.info("stream: session %s %s", session.id, "resumed" if resumed else "opened")
        return True

    def _taken_over(self) -> None:
        """Another connection resumed this one's session (SessionRegistry.attach): tell the client, close, and let
        the session go, so that this connection's end neither detaches nor closes it."""
        session, self.session = self.session, None
        self.closing = True
        sid = session.id if session is not None else "-"
        self.error(ServerError(f"session {sid} was resumed on another connection; this connection is closed",
                               code=ErrorCode.SESSION_TAKEN_OVER), fatal=True)  # fmt: skip

    def _oversize_frame(self) -> None:
        if self.session is not None:
            self.session.reject_frame()

    async def _release(self) -> None:
        s = self.session
        if s is None or s.closed:
            return
        if self.said_bye:
            self.runtime.registry.close(s, "the client said bye")
        else:
            self.runtime.registry.detach(s)
            logger.info("session %s detached; kept %g s for a reconnect", s.id, self.runtime.registry.grace_s(s))
