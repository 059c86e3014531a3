"""A session's token window: the modality tokens of its most recent used frames, bounded by the model's window
(``window_frames`` tokens and ``window_s`` seconds of stream time)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowEntry:
    seq: int
    ts: float
    tokens: np.ndarray  # (2, C) float32: RGB token, depth token


class TokenWindow:
    """Bounded by frame count and by time: an entry older than ``max_seconds`` before the newest is evicted."""

    def __init__(self, max_frames: int, max_seconds: float) -> None:
        self.max_frames = max_frames
        self.max_seconds = max_seconds
        self._entries: deque[WindowEntry] = deque(maxlen=max_frames)

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, seq: int, ts: float, tokens: np.ndarray) -> None:
        self._entries.append(WindowEntry(seq, ts, tokens))
        # keep frames within max_seconds of the newest: a window spans at most window_frames periods of the grid
        while self._entries and ts - self._entries[0].ts > self.max_seconds + 1e-9:
            self._entries.popleft()

    def tokens(self) -> np.ndarray:
        """(T, 2, C) float32, oldest first."""
        return np.stack([e.tokens for e in self._entries]).astype(np.float32, copy=False)

    @property
    def first(self) -> WindowEntry:
        return self._entries[0]

    @property
    def last(self) -> WindowEntry:
        return self._entries[-1]

    def clear(self) -> None:
        self._entries.clear()

    def resize(self, max_frames: int, max_seconds: float) -> None:
        self.max_frames, self.max_seconds = max_frames, max_seconds
        self._entries = deque(self._entries, maxlen=max_frames)

    def entries(self) -> list[WindowEntry]:
        return list(self._entries)
