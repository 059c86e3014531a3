"""StreamProcessor on its own: the tick grid follows rate changes (model reload), and every frame outcome is counted
in one place."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from server.engine import ModelSpec
from server.streaming import FrameOutcome, StreamProcessor
from tests.server.conftest import tiny_config

SPEC = ModelSpec.from_config(tiny_config())  # 15 fps


def _ticks(proc: StreamProcessor, frames: range, fps: float = 15.0) -> list[int]:
    """Feed frames at ``fps``; the indices where a prediction was due."""
    due = []
    for i in frames:
        ts = i / fps
        if proc.admit(i, ts):
            proc.use(ts)
            if proc.push(i, ts, np.ones((2, 8), np.float32)) is not None:
                due.append(i)
        else:
            proc.skip(ts)
    return due


def test_model_reload_to_a_faster_model_rebuilds_the_tick_grid() -> None:
    """A 30 fps camera asking for 30 ticks per second gets 15 from a 15 fps model, then 30 from a 30 fps one."""
    proc = StreamProcessor(SPEC, 15.0, health_interval_s=1.0, max_jump_s=5.0)
    assert _ticks(proc, range(6), fps=30.0) == [0, 2, 4]
    proc.rebind(dataclasses.replace(SPEC, fps=30.0), tick_hz=30.0)
    assert proc.tick_hz == proc.ticks.rate == 30.0
    assert _ticks(proc, range(6, 12), fps=30.0) == [6, 7, 8, 9, 10, 11]


def test_set_tick_hz_refuses_a_rate_of_zero() -> None:
    proc = StreamProcessor(SPEC, 15.0, health_interval_s=1.0, max_jump_s=5.0)
    with pytest.raises(ValueError, match="expected a tick rate above 0 per second, got 0"):
        proc.set_tick_hz(0.0)


def test_every_outcome_is_counted_once_and_observed() -> None:
    heard: list[tuple[FrameOutcome, int, str]] = []
    proc = StreamProcessor(SPEC, 15.0, health_interval_s=1.0, max_jump_s=5.0)
    proc.observer = lambda outcome, n, reason: heard.append((outcome, n, reason))
    _ticks(proc, range(4), fps=30.0)  # 30 fps into a 15 fps model: every other frame
    proc.reject()
    proc.record(FrameOutcome.DROPPED, 2, "queue_full")
    c = proc.counters
    assert (c.received, c.accepted, c.resampled_out, c.rejected, c.dropped) == (5, 2, 2, 1, 2)
    assert c.received == c.accepted + c.resampled_out + c.rejected
    assert heard == [
        (FrameOutcome.ACCEPTED, 1, ""), (FrameOutcome.RESAMPLED_OUT, 1, ""), (FrameOutcome.ACCEPTED, 1, ""),
        (FrameOutcome.RESAMPLED_OUT, 1, ""), (FrameOutcome.REJECTED, 1, ""), (FrameOutcome.DROPPED, 2, "queue_full"),
    ]  # fmt: skip


def test_the_durable_state_leaves_out_frames_still_queued_for_the_encoder() -> None:
    """What a journal stores: the grids, last_ts and counters as of the newest frame whose tokens are in the window
    (frames accepted but not encoded yet are re-sent by a resuming client, and must then be accepted again)."""
    proc = StreamProcessor(SPEC, 15.0, health_interval_s=1.0, max_jump_s=5.0)
    assert proc.durable_state()["last_ts"] is None and proc.durable_state()["counters"]["received"] == 0
    for i in range(4):  # four frames accepted; the first two encoded (one dropped by policy before it)
        proc.use(i / 15)
    proc.push(0, 0.0, np.ones((2, 8), np.float32))
    proc.record(FrameOutcome.DROPPED, 1, "queue_full")  # frame 1
    proc.push(2, 2 / 15, np.ones((2, 8), np.float32))
    durable = proc.durable_state()
    assert durable["last_ts"] == 2 / 15 and durable["frames"]["last_slot"] == 2
    assert durable["counters"]["accepted"] == 3 and proc.counters.accepted == 4
    restored = StreamProcessor(SPEC, 15.0, health_interval_s=1.0, max_jump_s=5.0)
    restored.load_state({**durable, "window": proc.state()["window"]})
    assert restored.admit(3, 3 / 15)  # the queued frame, re-sent, is taken again
