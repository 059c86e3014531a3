"""The WebSocket seam: the SDK talks to a `WSConnection`; the default one is `websockets` with per-message deflate
off and a raised message limit. Tests may pass their own connector (a coroutine returning a `WSConnection`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "TransportClosed", "WSConnection", "WSConnector", "websockets_connector"]

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a raw 1080p RGB-D frame is about 10 MB; the default 1 MiB is too small


class TransportClosed(Exception):
    """The connection is closed: `code` is the WebSocket close code (1000 normal, 1006 abnormal), `reason` its text."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed with code {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason


class WSConnection(Protocol):
    """What the SDK needs from a WebSocket connection. `recv` raises TransportClosed once the connection is gone."""

    async def send(self, data: bytes | str) -> None: ...

    async def recv(self) -> bytes | str: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


WSConnector = Callable[[str, dict[str, str]], Awaitable[WSConnection]]


class _WebsocketsConnection:
    """`websockets` client connection mapped onto WSConnection (its close exceptions become TransportClosed)."""

    def __init__(self, conn: object) -> None:
        from websockets.asyncio.client import ClientConnection

        assert isinstance(conn, ClientConnection)
        self._conn = conn

    @staticmethod
    def _closed(exc: Exception) -> TransportClosed:
        from websockets.exceptions import ConnectionClosed

        if isinstance(exc, ConnectionClosed):
            frame = exc.rcvd or exc.sent
            return TransportClosed(frame.code if frame else 1006, frame.reason if frame else "")
        return TransportClosed(1006, str(exc))

    async def send(self, data: bytes | str) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._conn.send(data)
        except (ConnectionClosed, OSError) as exc:
            raise self._closed(exc) from exc

    async def recv(self) -> bytes | str:
        from websockets.exceptions import ConnectionClosed

        try:
            return await self._conn.recv()
        except (ConnectionClosed, OSError) as exc:
            raise self._closed(exc) from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._conn.close(code, reason)


def websockets_connector(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, open_timeout: float = 10.0) -> WSConnector:
    """A connector using the `websockets` library: compression off (deflate costs 25-40 ms per frame), large frames
    allowed, keepalive pings on."""

    async def connect(url: str, headers: dict[str, str]) -> WSConnection:
        from websockets.asyncio.client import connect as ws_connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        try:
            conn = await ws_connect(
                url,
                additional_headers=headers,
                compression=None,
                max_size=max_message_bytes,
                open_timeout=open_timeout,
                ping_interval=20,
                ping_timeout=20,
            )
        except InvalidStatus as exc:
            raise TransportClosed(4000 + exc.response.status_code, exc.response.body.decode(errors="replace")) from exc
        except (WebSocketException, OSError, TimeoutError) as exc:
            raise TransportClosed(1006, f"cannot connect to {url}: {exc}") from exc
        return _WebsocketsConnection(conn)

    return connect
