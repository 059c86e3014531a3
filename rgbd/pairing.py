"""Pairing of separately timestamped depth and colour frames into RGB-D pairs (recordings hold two streams)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Stamped(Generic[T]):
    """One frame of one stream: absolute time in seconds, the sensor's frame number and the payload."""

    timestamp: float
    number: int
    data: T


class NearestPairer(Generic[T]):
    """Pairs two streams one-to-one by nearest timestamp, in time order, with bounded look-ahead.

    A pair is emitted once each item is the other's nearest neighbour among everything seen (or can no longer
    be beaten because the other stream has moved past it). Items farther apart than `tolerance_s` are never
    paired; unpaired items are counted in `unpaired_depth` / `unpaired_color`, never silently lost.
    """

    def __init__(self, tolerance_s: float) -> None:
        if not tolerance_s > 0:
            raise ValueError(f"expected a positive pairing tolerance in seconds, got {tolerance_s!r}")
        self.tolerance_s = tolerance_s
        self.depth: deque[Stamped[T]] = deque()
        self.color: deque[Stamped[T]] = deque()
        self.unpaired_depth = 0
        self.unpaired_color = 0

    def push_depth(self, item: Stamped[T]) -> None:
        self.depth.append(item)

    def push_color(self, item: Stamped[T]) -> None:
        self.color.append(item)

    def pop_pairs(self, final: bool = False) -> list[tuple[Stamped[T], Stamped[T]]]:
        """Every (depth, colour) pair that is decided; with `final`, decide all and count the leftovers."""
        pairs: list[tuple[Stamped[T], Stamped[T]]] = []
        a, b = self.depth, self.color
        while a and b:
            x, y = a[0], b[0]
            if x.timestamp <= y.timestamp:
                early, late, early_q, is_depth_early = x, y, a, True
            else:
                early, late, early_q, is_depth_early = y, x, b, False
            # The earlier item's best partner is `late` (later items of the other stream are farther away).
            # Is `early` also late's best partner? A successor in the early stream may be closer to `late`.
            if len(early_q) > 1:
                nxt = early_q[1]
                if abs(nxt.timestamp - late.timestamp) <= abs(early.timestamp - late.timestamp):
                    self._drop(early_q, is_depth_early)
                    continue
            elif not final:
                break  # wait for the successor of `early` before deciding
            if late.timestamp - early.timestamp > self.tolerance_s:
                self._drop(early_q, is_depth_early)
                continue
            pairs.append((a.popleft(), b.popleft()))
        if final:
            self.unpaired_depth += len(a)
            self.unpaired_color += len(b)
            a.clear()
            b.clear()
        return pairs

    def _drop(self, queue: deque[Stamped[T]], is_depth: bool) -> None:
        queue.popleft()
        if is_depth:
            self.unpaired_depth += 1
        else:
            self.unpaired_color += 1
