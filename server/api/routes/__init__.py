"""One router per resource: sessions, frames/predictions, the stream WebSocket, jobs, model, health, metrics."""

from __future__ import annotations

__all__: list[str] = []
