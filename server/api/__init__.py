"""HTTP and WebSocket routes of the service (imported by server.app only: they need FastAPI)."""

from __future__ import annotations

__all__: list[str] = []
