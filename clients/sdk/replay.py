"""The frames a stream sent lately, kept encoded so that a resume can send again those the server does not have.

A server with a durable session store that crashed restores the session as of its journal's last write: the frames
after that were lost with the process. The resumed session says up to where it has frames (the ``session_resumed``
notice's ``last_ts``); the stream sends again, in order, the frames it kept with a later timestamp. A frame sent
after ``last_ts`` that is no longer kept is lost: it is counted (``StreamStats.frames_lost``), never silently gone.

Memory: the payloads of the frames sent within the last ``replay_s`` seconds (by their timestamps), at most
``replay_bytes`` bytes in all (ReconnectPolicy), plus one float per frame that left the buffer for the last
``LEDGER_FRAMES`` such frames (about 0.5 MB), which is what lets the loss be counted exactly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["LEDGER_FRAMES", "Replay", "ReplayBuffer", "SentFrame"]

LEDGER_FRAMES = 16384  # timestamps of frames that left the buffer: 9 minutes at 30 fps, far past any journal lag


@dataclass(frozen=True)
class SentFrame:
    """One frame as it went on the wire."""

    seq: int
    ts: float
    data: bytes


@dataclass(frozen=True)
class Replay:
    """What to do after a resume whose server has the frames up to `last_ts`."""

    frames: list[SentFrame]  # to send again, oldest first: the kept frames after last_ts
    lost: int  # frames sent after last_ts that were no longer kept
    lost_is_lower_bound: bool  # the loss reaches past the ledger (LEDGER_FRAMES): at least `lost` frames


class ReplayBuffer:
    """The frames sent lately (see the module docstring); `max_s` 0 keeps none (every frame after last_ts is lost)."""

    def __init__(self, max_s: float, max_bytes: int) -> None:
        assert max_s >= 0 and max_bytes >= 0, "ReconnectPolicy validates replay_s and replay_bytes"
        self.max_s, self.max_bytes = max_s, max_bytes
        self._frames: deque[SentFrame] = deque()
        self._bytes = 0
        self._evicted_ts: deque[float] = deque(maxlen=LEDGER_FRAMES)  # oldest first
        self._evicted = 0  # frames that ever left the buffer (and were not reported lost)

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def nbytes(self) -> int:
        """Payload bytes held."""
        return self._bytes

    def add(self, frame: SentFrame) -> None:
        """Keep a frame about to be sent; the oldest frames go once the newest is `max_s` newer or the bytes exceed
        `max_bytes` (the newest frame always stays while it fits in `max_bytes`)."""
        self._frames.append(frame)
        self._bytes += len(frame.data)
        while self._frames and (
            self._bytes > self.max_bytes or frame.ts - self._frames[0].ts > self.max_s or self.max_s == 0
        ):
            old = self._frames.popleft()
            self._bytes -= len(old.data)
            self._evicted_ts.append(old.ts)
            self._evicted += 1

    def clear(self) -> None:
        """Forget everything (the stream continues on a new session: these frames belong to the lost one)."""
        self._frames.clear()
        self._bytes = 0
        self._evicted_ts.clear()
        self._evicted = 0

    def after(self, last_ts: float | None) -> Replay:
        """The kept frames after `last_ts` (None: the server has no frame of the session) and the count of those
        sent after it that are no longer kept. The lost ones are counted once: a later resume does not count them
        again."""
        after = (lambda ts: True) if last_ts is None else (lambda ts: ts > last_ts)
        frames = [f for f in self._frames if after(f.ts)]
        lost = 0
        while self._evicted_ts and after(self._evicted_ts[-1]):
            self._evicted_ts.pop()
            lost += 1
        beyond = not self._evicted_ts and self._evicted > lost  # the ledger ran out while still after last_ts
        self._evicted -= lost
        return Replay(frames, lost, beyond)
