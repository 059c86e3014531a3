"""Resampling a stream to the model's frame rate by timestamp: frames are dropped, never invented.

Frame ``ts`` falls in slot ``floor((ts - t0) * fps + TOLERANCE)`` of the model's frame grid, t0 being the first frame's
time; a frame is used when its slot is later than the last used frame's. A 30 fps stream keeps every other frame, a
15 fps stream with jitter of up to 30 % of a period keeps every frame, a 10 fps stream keeps every frame (slots are
skipped, not filled). The same rule decides the prediction ticks (a grid at the tick rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TOLERANCE = 0.3  # share of a period by which a frame may come early and still open the next slot


@dataclass
class SlotGrid:
    """A grid of slots at ``rate`` per second anchored at the first timestamp it sees."""

    rate: float
    t0: float | None = None
    last_slot: int | None = None

    def slot(self, ts: float) -> int:
        t0 = ts if self.t0 is None else self.t0
        return math.floor((ts - t0) * self.rate + TOLERANCE)

    def opens(self, ts: float) -> bool:
        """Whether ``ts`` opens a new slot (without taking it)."""
        return self.last_slot is None or self.slot(ts) > self.last_slot

    def take(self, ts: float) -> None:
        if self.t0 is None:
            self.t0 = ts
        self.last_slot = self.slot(ts)

    def rebase(self, rate: float) -> None:
        """Change the rate, keeping the grid anchored at the last taken slot's time."""
        if self.t0 is not None and self.last_slot is not None:
            self.t0 = self.t0 + self.last_slot / self.rate
            self.last_slot = 0
        self.rate = rate

    def state(self) -> dict[str, float | int | None]:
        return {"rate": self.rate, "t0": self.t0, "last_slot": self.last_slot}

    @classmethod
    def from_state(cls, d: dict[str, float | int | None]) -> SlotGrid:
        t0, last = d.get("t0"), d.get("last_slot")
        return cls(float(d["rate"] or 1.0), None if t0 is None else float(t0), None if last is None else int(last))
