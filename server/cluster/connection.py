"""A WebSocket client of the cluster's ingress (server/cluster/ingress.py): the local path's own connection
(server.streaming.connection.WireConnection: receive loop, sender, message limits, errors); only where its session
lives differs. Every hello, frame and release goes to the session's owner in the session tier, routed by consistent
hashing of the session id (the handle's ``session_id`` is the router's key). A call that finds its replica dead is
retried while Serve replaces it (``CALL_RETRY_S``): the session's new owner restores it from the session store.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from typing import Any

from fastapi import WebSocket
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.handle import DeploymentHandle

from server.cluster.profile import CallStamps, StageClock
from server.errors import NotReady, close_code
from server.metrics import Metrics
from server.protocol import Backpressure, ErrorCode, ErrorOut, FrameIn, Hello, ProtocolError, WireModel
from server.settings import Settings
from server.streaming.connection import WireConnection
from server.streaming.session import queue_latest_wins

logger = logging.getLogger(__name__)
CALL_RETRY_S = 60.0  # how long a call keeps retrying a session tier whose replica died (Serve restarts it)
RETRY_PAUSE_S = 0.25


class IngressHost:
    """What the connections of one ingress replica share."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.draining = False
        self.connections: set[Any] = set()
        self.stages = StageClock()  # the ingress's stages of the cluster path (server/cluster/profile.py)


class ClusterConnection(WireConnection):
    """A WebSocket client whose session is owned by a session-tier replica."""

    def __init__(
        self, ws: WebSocket, host: IngressHost, settings: Settings, sessions: DeploymentHandle, authorize: Any
    ) -> None:
        super().__init__(ws, host, settings, authorize=authorize)
        self.sessions = sessions
        self.connection = secrets.token_hex(8)  # names this socket to the session's owner (take-over checks)
        self._pending: deque[FrameIn] = deque()  # frames read from the socket, not yet sent to the owner
        self._dropped: list[tuple[int, float]] = []  # (seq, ts) of those dropped since (latest wins), to report
        self.backpressure = Backpressure.LATEST_WINS
        self._received: dict[int, float] = {}  # seq -> when the frame was read (the owner's ingress_wait)
        self.stages = host.stages
        self._room = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._failed = False  # the owner answered with a fatal error, or never answered

    async def _hello(self, hello: Hello) -> bool:
        self.encoding = hello.encoding
        self.backpressure = hello.backpressure
        session_id = hello.session_id or secrets.token_urlsafe(12)
        if self._deliver(await self._call("open", session_id, hello, self.client, self.connection)):
            self.session_id = session_id
            return True
        return False

    async def _frame(self, msg: FrameIn, t_recv: float) -> bool:
        """Queue the frame for the pump: the frames waiting for the FrameEncoder wait here, in a queue of
        ``session_queue_size`` with the session's policy, as in one process. ``latest_wins`` drops the oldest
        waiting frames (the owner counts them with the next call: the same counters and notice); ``block`` stops
        reading the socket until the owner took them (the client is pushed back through TCP)."""
        if self.session_id is None:
            raise ProtocolError(ErrorCode.HELLO_REQUIRED, "expected a hello before the first frame", seq=msg.seq)
        size = self.settings.session_queue_size
        while self.backpressure is Backpressure.BLOCK and len(self._pending) >= size and not self._failed:
            self._room.clear()
            await self._room.wait()
        if self._failed:
            return False
        self.stages.observe("ingress_parse", time.perf_counter() - t_recv)
        self._received[msg.seq] = t_recv
        for dropped in queue_latest_wins(self._pending, msg, size):
            self._dropped.append((dropped.seq, dropped.ts))
            self._received.pop(dropped.seq, None)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._send_frames(self.session_id), name="r3d-cluster-frames")
        return True

    async def _send_frames(self, session_id: str) -> None:
        """Send the waiting frames to the owner, all of them in one call, in order; one call in flight at a time, so
        a session's frames never overtake each other (calls to a replica are not ordered by Ray)."""
        try:
            while self._pending and not self._failed:
                batch, dropped = list(self._pending), self._dropped
                self._pending.clear()
                self._dropped = []
                self._room.set()
                stamps = CallStamps([self._received.pop(m.seq, 0.0) for m in batch], time.perf_counter())
                replies = await self._call("frames", session_id, self.connection, batch, dropped, stamps)
                self.stages.observe("call_round_trip", time.perf_counter() - stamps.sent_at)
                if not self._deliver(replies):
                    self._failed = True
        except NotReady as exc:
            self.error(exc, fatal=True)
            self._failed = True
        except Exception:  # a bug on the owner's side (Ray hands it over as RayTaskError): said once, the client told
            self._internal_error("frames")
            self._failed = True
        finally:
            self._room.set()

    async def _release(self) -> None:
        if self._pump is not None:
            await self._pump  # the frames read before the socket ended go first
        if self.session_id is not None and not self._failed:
            await self._call("release", self.session_id, self.connection, self.said_bye)

    async def _call(self, method: str, session_id: str, *args: Any) -> Any:
        """One call to the session's owner; retried while its replica is dead or being replaced."""
        handle = self.sessions.options(session_id=session_id)
        deadline = time.monotonic() + CALL_RETRY_S
        while True:
            try:
                return await getattr(handle, method).remote(session_id, *args)
            except (RayActorError, ActorUnavailableError) as exc:
                if time.monotonic() > deadline:
                    raise NotReady(f"the session tier did not answer within {CALL_RETRY_S:g} s") from exc
                logger.warning("session %s: %s failed (%s); retrying while Serve replaces the replica", session_id,
                               method, type(exc).__name__)  # fmt: skip
                await asyncio.sleep(RETRY_PAUSE_S)

    def _deliver(self, replies: list[WireModel]) -> bool:
        """Post the owner's messages in order; False after a fatal error (the connection then ends)."""
        for message in replies:
            self.post(message)
            if isinstance(message, ErrorOut):
                self.host.metrics.error(message.code.value)
                if message.fatal:
                    self.close_after_queued(close_code(message.code), message.code.value)
                    return False
        return True
