"""Errors raised by the client SDK.

ClientError                 base of everything the SDK raises (a ValueError for bad arguments is separate)
├── ServerError             the server answered with an error (HTTP status or a protocol ``error`` message)
├── ConnectionLost          the WebSocket dropped and could not be resumed within the retry budget
└── StreamClosed            send/receive on a stream that was closed (by the caller or the server)
"""

from __future__ import annotations

__all__ = ["ClientError", "ConnectionLost", "ServerError", "StreamClosed"]


class ClientError(Exception):
    """Base of the SDK's errors."""


class ServerError(ClientError):
    """The server refused a request: HTTP `status` (0 on a WebSocket), the protocol `code` and its message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" + (f" (HTTP {status})" if status else ""))
        self.status = status
        self.code = code
        self.message = message


class ConnectionLost(ClientError):
    """The stream's connection dropped and resuming the session failed."""


class StreamClosed(ClientError):
    """The stream is closed; open a new one (or resume it by session id)."""
