"""Ticks due at the same moment across sessions run as one Anticipator batch (against a live server; the numerical
parity of a padded batch with per-window calls is tests/export/test_batched_anticipation.py)."""

from __future__ import annotations

from contextlib import ExitStack

import httpx
import pytest

from tests.server.conftest import ServerFactory
from tests.server.helpers import frame_msg, open_ws, recv_until, start

SESSIONS = 3


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


@pytest.mark.parametrize(("max_tick_batch", "calls"), [(64, 1), (1, SESSIONS)])
def test_ticks_of_frames_encoded_together_run_as_one_anticipator_batch(
    server_factory: ServerFactory, max_tick_batch: int, calls: int
) -> None:
    # the worker waits up to 1 s to fill a batch of 3 frames: one frame from each session makes exactly one batch;
    # anticipator_max_batch = 1 runs one call per tick instead (as before batching)
    settings = {"encoder_max_batch": SESSIONS, "encoder_max_delay_ms": 1000.0, "anticipator_max_batch": max_tick_batch}
    with server_factory(**settings) as url:
        ws_url = "ws" + url[len("http") :] + "/v1/stream"
        with ExitStack() as stack:
            sockets = [stack.enter_context(open_ws(ws_url)) for _ in range(SESSIONS)]
            for ws in sockets:
                start(ws, tick_hz=15.0, backpressure="block")
            for ws in sockets:
                ws.send(frame_msg(0))
            predictions = [recv_until(ws, "prediction")[0] for ws in sockets]
        text = httpx.get(f"{url}/metrics").text
    assert _metric(text, "r3d_anticipate_batch_ticks_count") == calls
    assert _metric(text, "r3d_anticipate_batch_ticks_sum") == SESSIONS
    assert len({p.session_id for p in predictions}) == SESSIONS and all(p.frame_seq == 0 for p in predictions)
    assert len({p.latency.anticipate_ms for p in predictions}) == calls  # each call timed once, shared by its ticks
