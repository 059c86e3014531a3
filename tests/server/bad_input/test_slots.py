"""Findings 2 and 6: session slots. A refused snapshot (validated field by field: 422 naming the field, 409 for another
frame encoder) leaves no session behind; a hello and a disconnect do not hold a slot for the reconnect grace; a full
server or client gets 429 saying when to retry."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest

from tests.server.bad_input.conftest import Served
from tests.server.helpers import frame_msg, hello, open_ws, recv

STREAM = {"width": 160, "height": 120, "depth_scale": 0.001}


@pytest.fixture(scope="module")
def snapshot(served: Served) -> dict[str, Any]:
    """A real snapshot of a session that took 3 frames (the session is closed again)."""
    with served.client() as http:
        sid = http.post("/v1/sessions", json=STREAM).json()["id"]
        for i in range(3):
            assert http.post(f"/v1/sessions/{sid}/frames", content=frame_msg(i)).status_code == 202
        deadline = time.monotonic() + 30
        while http.get(f"/v1/sessions/{sid}").json()["window_frames"] < 3:  # encoded in the worker, asynchronously
            assert time.monotonic() < deadline
            time.sleep(0.05)
        doc: dict[str, Any] = msgpack.unpackb(http.get(f"/v1/sessions/{sid}/snapshot").content)
        http.delete(f"/v1/sessions/{sid}")
    return doc


def _edit(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        for key in parents:
            doc = doc[key]
        doc[leaf] = value

    return apply


def _tokens(channels: int, fill: float = 0.5) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        frames = len(doc["processor"]["window"]["seq"])
        doc["processor"]["window"]["shape"] = [frames, 2, channels]
        doc["processor"]["window"]["tokens"] = np.full((frames, 2, channels), fill, "<f4").tobytes()

    return apply


MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], None], int, str]] = {
    "tick_hz_zero": (
        _edit("processor.tick_hz", 0.0),
        422,
        "processor.tick_hz: Input should be greater than 0, got 0.0",
    ),
    "tick_hz_nan": (_edit("processor.tick_hz", math.nan), 422, "processor.tick_hz: Input should be a finite number"),
    "nan_tokens": (_tokens(128, math.nan), 422, "window.tokens: expected finite numbers"),
    "five_channel_tokens": (_tokens(5), 422, "expected tokens of 128 channels, got 5"),
    "negative_counter": (_edit("processor.counters.received", -1), 422, "counters.received: Input should be greater"),
    "missing_processor": (lambda d: d.pop("processor"), 422, "processor: Field required"),
    "stream_not_a_map": (_edit("stream", "x"), 422, "stream: Input should be a valid dictionary"),
    "grid_rate_string": (_edit("processor.frames.rate", "fast"), 422, "processor.frames.rate: Input should be"),
    "window_longer_than_model": (
        _edit("processor.window.seq", list(range(40))),
        422,
        "expected 3 seq and ts entries (shape), got 40 and 3",
    ),
    "other_frame_encoder": (_edit("frame_encoder_id", "deadbeef"), 409, "got tokens of deadbeef"),
    "future_version": (_edit("version", 2), 422, "expected snapshot version 1, got 2"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_restore_of_a_malformed_snapshot_is_refused_and_leaves_no_session(
    served: Served, snapshot: dict[str, Any], case: str
) -> None:
    edit, status, message = MALFORMED[case]
    doc = msgpack.unpackb(msgpack.packb(snapshot))
    edit(doc)
    with served.client() as http:
        before = http.get("/v1/sessions").json()["sessions"]
        answer = http.post("/v1/sessions/restore", content=msgpack.packb(doc))
        after = http.get("/v1/sessions").json()["sessions"]
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == ("bad_snapshot" if status == 422 else "session_state")
    assert message in answer.json()["message"]
    assert len(after) == len(before)
    served.assert_still_serving()


def test_hello_then_disconnect_does_not_hold_a_slot_for_the_reconnect_grace(served: Served) -> None:
    # given a client that says hello and leaves, more times than the server has slots
    for _ in range(9):
        with open_ws(served.ws_url) as ws:
            ws.send(hello())
            served.keep(recv(ws))
    # then within the unstarted grace (1 s here) plus one housekeeping round, a new session gets a slot again
    time.sleep(2.5)
    with served.client() as http:
        created = http.post("/v1/sessions", json=STREAM)
        http.delete(f"/v1/sessions/{created.json().get('id')}")
    assert created.status_code == 201, created.text
    served.assert_still_serving()


def test_a_full_client_gets_429_with_retry_after(served: Served) -> None:
    opened: list[str] = []
    with served.client() as http:
        while (answer := http.post("/v1/sessions", json=STREAM)).status_code == 201 and len(opened) < 20:
            opened.append(answer.json()["id"])
        for sid in opened:
            http.delete(f"/v1/sessions/{sid}")
    assert answer.status_code == 429 and answer.json()["code"] == "too_many_sessions"
    assert "max_sessions_per_client=6" in answer.json()["message"]
    assert int(answer.headers["retry-after"]) >= 1 and answer.json()["retry_after_s"] >= 1
    served.assert_still_serving()
