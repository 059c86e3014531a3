"""Where the person is, from depth alone: the mask the person-aware depth encoder crops around.

The person covers 3-7 % of a frame, so a global view of the frame is mostly the room (issue 13). Depth finds the
person cheaply: a static camera sees the room behind the person once the person has moved, and the person is
nearer than that room. `PersonLocator` keeps, per stream, the farthest valid reading seen at each pixel (the room)
and marks the largest connected region that is nearer than it by more than a margin. It runs at the model's depth
size (80x60 for the service model: about 0.1 ms per frame) on the depth map the model already gets.

Two sources of the mask (`Preprocessing.person_mask`):
  "background": the running background above; state per stream, so every consumer (feature cache, streaming
                session, batch scoring) runs one locator per sequence, in frame order, from the first frame.
  "segmented":  the camera or dataset has already removed the background (e.g. UTD-MHAD, a body-tracking SDK):
                every valid pixel belongs to the person; stateless.
A frame where nothing is found gives an all-zero mask (at the start of a stream until the person moves).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

PersonMask = Literal["none", "background", "segmented"]
PERSON_MASKS: tuple[str, ...] = ("none", "background", "segmented")

MARGIN_M = 0.25  # nearer than the room by more than this is foreground: well above the sensor noise at 1-5 m
MIN_AREA = 4  # pixels of the model's depth map; smaller regions are noise, not a person


class PersonLocator:
    """One stream's person mask, frame by frame (module docstring). Feed every frame, in order."""

    def __init__(self, mode: PersonMask) -> None:
        if mode not in ("background", "segmented"):
            raise ValueError(f"a PersonLocator needs person_mask 'background' or 'segmented', got {mode!r}")
        self.mode = mode
        self._room: np.ndarray | None = None  # (h, w) float32 metres, 0 where never valid

    @property
    def room(self) -> np.ndarray | None:
        """The farthest valid reading seen so far per pixel (metres, 0 where never valid); None before a frame."""
        return self._room

    def __call__(self, metres: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """metres (h, w) float32 and valid (h, w) bool of one frame -> person mask (h, w) float32 in {0, 1}."""
        seen = np.where(valid, metres, np.float32(0.0))
        if self.mode == "segmented":
            foreground = valid
        else:
            if self._room is None or self._room.shape != seen.shape:
                self._room = seen.copy()
            else:  # a new array, not in place: a locator that crossed processes (Ray) may hold a read-only one
                self._room = np.maximum(self._room, seen)
            foreground = valid & (seen < self._room - np.float32(MARGIN_M))
        return largest_region(foreground)


def largest_region(foreground: np.ndarray) -> np.ndarray:
    """bool (h, w) -> float32 mask of its largest 8-connected region (all zero when it has < MIN_AREA pixels)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(foreground.astype(np.uint8), connectivity=8)
    mask = np.zeros(foreground.shape, np.float32)
    if n > 1:
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        if stats[largest, cv2.CC_STAT_AREA] >= MIN_AREA:
            mask[labels == largest] = 1.0
    return mask
