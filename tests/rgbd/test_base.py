"""The FrameSource contract (lifecycle, iteration), timestamp rebasing, pacing and depth/colour pairing."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from rgbd.base import FrameSource, Pacer, SourceError, TimestampGuard
from rgbd.frame import Frame
from rgbd.pairing import NearestPairer, Stamped


class _Counting(FrameSource):
    def __init__(self) -> None:
        super().__init__()
        self.opened = 0
        self.closed = 0

    @property
    def name(self) -> str:
        return "counting"

    def _open(self) -> None:
        self.opened += 1
        self._fps, self._num_frames = 10.0, 2

    def _close(self) -> None:
        self.closed += 1

    def _frames(self) -> Iterator[Frame]:
        for i in range(2):
            yield Frame(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint16), 0.001, i / 10, i)


def test_source_opens_once_and_closes_on_exit() -> None:
    src = _Counting()
    with src as s:
        assert s is src and src.is_open and src.fps == 10.0 and src.num_frames == 2
        assert [f.index for f in src] == [0, 1]
        assert [f.index for f in src] == [0, 1]
    assert (src.opened, src.closed, src.is_open) == (1, 1, False)
    assert repr(src) == "_Counting('counting')"


def test_source_error_is_a_runtime_error() -> None:
    assert issubclass(SourceError, RuntimeError)


def test_timestamp_guard_rebases_and_drops_non_increasing() -> None:
    guard = TimestampGuard("x")
    assert [guard.rebase(t) for t in (100.0, 100.5, 100.5, 100.2, 101.0)] == [0.0, 0.5, None, None, 1.0]
    assert guard.dropped == 2


def test_pacer_waits_for_timestamps_only_when_enabled() -> None:
    start = time.monotonic()
    pacer = Pacer(True)
    for t in (0.0, 0.05, 0.1):
        pacer.wait(t)
    assert time.monotonic() - start >= 0.095
    start = time.monotonic()
    off = Pacer(False)
    off.wait(0.0)
    off.wait(10.0)
    assert time.monotonic() - start < 0.05


def _run(depth: list[float], color: list[float], tolerance: float) -> tuple[list[tuple[float, float]], int, int]:
    """Feed both streams merged in time order, as the readers do, and collect the pairs."""
    pairer: NearestPairer[int] = NearestPairer(tolerance)
    events = sorted([(t, "d") for t in depth] + [(t, "c") for t in color])
    pairs = []
    for t, kind in events:
        (pairer.push_depth if kind == "d" else pairer.push_color)(Stamped(t, 0, 0))
        pairs += pairer.pop_pairs()
    pairs += pairer.pop_pairs(final=True)
    return [(d.timestamp, c.timestamp) for d, c in pairs], pairer.unpaired_depth, pairer.unpaired_color


def test_pairer_pairs_equal_rate_streams_with_jitter() -> None:
    depth = [i / 30 for i in range(10)]
    color = [i / 30 + 0.004 for i in range(10)]
    pairs, ud, uc = _run(depth, color, 1 / 30)
    assert pairs == list(zip(depth, color, strict=True)) and (ud, uc) == (0, 0)


def test_pairer_leaves_the_farther_duplicate_unpaired() -> None:
    # the D435 fixture: depth at 815 and 981 ms, colour at 713 ms -> the 815 ms depth pairs
    pairs, ud, uc = _run([0.815, 0.981], [0.713], 1 / 6)
    assert pairs == [(0.815, 0.713)] and (ud, uc) == (1, 0)


def test_pairer_skips_a_missing_frame_in_either_stream() -> None:
    depth = [0.0, 0.1, 0.2, 0.4, 0.5]  # depth frame at 0.3 is missing
    color = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    pairs, ud, uc = _run(depth, color, 0.05)
    assert pairs == [(0.0, 0.0), (0.1, 0.1), (0.2, 0.2), (0.4, 0.4), (0.5, 0.5)] and (ud, uc) == (0, 1)


def test_pairer_refuses_pairs_beyond_tolerance() -> None:
    pairs, ud, uc = _run([0.0, 1.0], [0.5, 1.01], 0.1)
    assert pairs == [(1.0, 1.01)] and (ud, uc) == (1, 1)


def test_pairer_handles_faster_depth_stream() -> None:
    depth = [i / 30 for i in range(30)]
    color = [i / 15 + 0.001 for i in range(15)]
    pairs, ud, uc = _run(depth, color, 1 / 15)
    assert [c for _, c in pairs] == color and ud == 15 and uc == 0
    assert all(abs(d - c) < 0.002 for d, c in pairs)


def test_pairer_rejects_non_positive_tolerance() -> None:
    with pytest.raises(ValueError, match="positive pairing tolerance"):
        NearestPairer(0.0)
