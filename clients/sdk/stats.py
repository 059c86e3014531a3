"""What a stream reports about itself: its counters (`StreamStats`) and the session resets it went through.

A reset happens when the server no longer knows the stream's session after a reconnect (it restarted, or the session
expired while the client was away): the stream continues on a restored snapshot or a new session, whose token window
is older or empty, so the predictions right after it see less history. Each one is a `SessionReset`.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from server.protocol import StreamCounters

__all__ = ["SessionReset", "StreamStats"]


@dataclass(frozen=True)
class SessionReset:
    """The server lost session `lost_session_id`; the stream continued on `session_id`."""

    lost_session_id: str
    session_id: str
    restored: bool  # True: from the last fetched snapshot (the window as it was then); False: a new, empty window
    window_frames: int  # frames in the window the stream continued with
    frames_sent: int  # frames the client had sent on the stream when the session was lost
    at: float = field(default_factory=time.time)  # wall-clock time of the reset

    def describe(self) -> str:
        how = "restored from the last snapshot" if self.restored else "opened a new session"
        return (
            f"the server lost session {self.lost_session_id} (restarted?); {how} {self.session_id} with "
            f"{self.window_frames} frames in its window after {self.frames_sent} frames sent"
        )


@dataclass
class StreamStats:
    """What happened on a stream so far (client's view plus the server's latest counters)."""

    frames_sent: int = 0  # each frame once, however often it was sent (see frames_resent)
    bytes_sent: int = 0  # of those first sends
    predictions: int = 0
    errors: int = 0
    reconnects: int = 0
    session_resets: int = 0  # reconnects that found the session gone (see SessionReset)
    frames_resent: int = 0  # frames sent again after a resume: the server's last frame was older (clients/sdk/replay)
    frames_lost: int = 0  # frames after the resumed session's last frame that had left the replay buffer
    started: float = field(default_factory=time.monotonic)
    server: StreamCounters | None = None  # counters of the latest prediction (of the current session)
    round_trip_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2000))  # frame sent -> its prediction
    server_latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2000))  # server-measured

    @property
    def send_fps(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.frames_sent / elapsed if elapsed > 0 else 0.0

    @property
    def dropped(self) -> int:
        """Frames the server accepted but dropped (latest-wins queue) plus those it rejected as bad."""
        return (self.server.dropped + self.server.rejected) if self.server else 0

    def latency_ms(self, q: float = 50.0) -> float | None:
        """Percentile `q` of the client-measured round trip, or None before the first prediction."""
        return float(np.percentile(list(self.round_trip_ms), q)) if self.round_trip_ms else None

    def summary(self) -> dict[str, object]:
        return {
            "frames_sent": self.frames_sent,
            "bytes_per_frame": round(self.bytes_sent / self.frames_sent) if self.frames_sent else None,
            "predictions": self.predictions,
            "send_fps": round(self.send_fps, 2),
            "server_counters": self.server.model_dump() if self.server else None,
            "dropped": self.dropped,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "session_resets": self.session_resets,
            "frames_resent": self.frames_resent,
            "frames_lost": self.frames_lost,
            "round_trip_ms_p50": self.latency_ms(50),
            "round_trip_ms_p95": self.latency_ms(95),
            "server_latency_ms_p50": float(np.median(self.server_latency_ms)) if self.server_latency_ms else None,
        }
