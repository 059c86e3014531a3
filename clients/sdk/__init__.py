"""The R3D client SDK: REST and WebSocket streaming with reconnect and resume (httpx + websockets + numpy).

`AsyncClient` / `AsyncStream` hold the one implementation; `Client` / `Stream` run it from blocking code.
Wire messages come from `server.protocol` (re-exported here where users need them to build requests).
"""

from __future__ import annotations

from clients.sdk.client import AsyncClient
from clients.sdk.errors import ClientError, ConnectionLost, ServerError, StreamClosed
from clients.sdk.reconnect import ReconnectPolicy, SessionLoss
from clients.sdk.stats import SessionReset, StreamStats
from clients.sdk.stream import AsyncStream
from clients.sdk.sync import Client, Stream
from clients.sdk.transport import DEFAULT_MAX_MESSAGE_BYTES, TransportClosed, WSConnection, WSConnector
from server.protocol import AnticipationOut, Backpressure, ColorCodec, DepthCodec, SessionCreate

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "AnticipationOut",
    "AsyncClient",
    "AsyncStream",
    "Backpressure",
    "Client",
    "ClientError",
    "ColorCodec",
    "ConnectionLost",
    "DepthCodec",
    "ReconnectPolicy",
    "ServerError",
    "SessionCreate",
    "SessionLoss",
    "SessionReset",
    "Stream",
    "StreamClosed",
    "StreamStats",
    "TransportClosed",
    "WSConnection",
    "WSConnector",
]
