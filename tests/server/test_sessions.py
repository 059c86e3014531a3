"""Session lifecycle: reconnect (also after a disconnect mid-message, or while the old connection's frame decodes),
REST-only clients, delete, snapshot and restore, latest-wins drops, and the modality-health signal."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from server.app import create_app
from server.serving import BackgroundServer
from tests.server.conftest import make_settings
from tests.server.helpers import API_HEADERS, BYE, frame_msg, hello, open_ws, recv, recv_until, start


def _stream(ws: ClientConnection, frames: range) -> list[Any]:
    for i in frames:
        ws.send(frame_msg(i))
    return [recv_until(ws, "prediction")[0] for _ in frames]


def test_reconnect_with_session_id_keeps_the_token_window(ws_url: str) -> None:
    with open_ws(ws_url) as ws:
        sid = start(ws, backpressure="block").session_id
        _stream(ws, range(5))
    with open_ws(ws_url) as ws:  # closed without bye: the session waits for us
        welcome = start(ws, session_id=sid, backpressure="block")
        notice, _ = recv_until(ws, "notice")
        (after,) = _stream(ws, range(5, 6))
        ws.send(BYE)
    assert welcome.resumed and welcome.session_id == sid and welcome.window_frames == 5
    assert notice.code == "session_resumed"
    assert after.window.frames == 6 and after.counters.accepted == 6


def _predictions_until(ws: ClientConnection, last_seq: int) -> list[Any]:
    out = []
    while not out or out[-1].frame_seq != last_seq:
        out.append(recv_until(ws, "prediction")[0])
    return out


def _tick_periods(predictions: list[Any]) -> set[float]:
    ts = [p.frame_ts for p in predictions]
    return {round(b - a, 4) for a, b in zip(ts, ts[1:], strict=False)}


def test_resume_with_another_tick_rate_delivers_the_rate_it_announces(ws_url: str) -> None:
    """The tick grid follows the resumed hello's rate (it used to keep the old one while welcome said the new one)."""
    with open_ws(ws_url) as ws:
        first = start(ws, backpressure="block", tick_hz=5)
        for i in range(13):  # 15 fps for 0.8 s: ticks at frames 0, 3, 6, 9, 12
            ws.send(frame_msg(i))
        slow = _predictions_until(ws, 12)
    with open_ws(ws_url) as ws:  # closed without bye, back with 15 ticks per second
        welcome = start(ws, session_id=first.session_id, backpressure="block", tick_hz=15)
        for i in range(13, 43):
            ws.send(frame_msg(i))
        fast = _predictions_until(ws, 42)
        ws.send(BYE)
    assert first.tick_hz == 5 and welcome.resumed and welcome.tick_hz == 15
    assert [p.frame_seq for p in slow] == [0, 3, 6, 9, 12] and _tick_periods(slow) == {round(1 / 5, 4)}
    assert [p.frame_seq for p in fast] == list(range(13, 43)) and _tick_periods(fast) == {round(1 / 15, 4)}
    assert fast[-1].counters.received == fast[-1].counters.accepted == 43


def test_disconnect_mid_message_then_reconnect_keeps_the_window(ws_url: str) -> None:
    with open_ws(ws_url) as ws:
        sid = start(ws, backpressure="block").session_id
        _stream(ws, range(3))
        payload = frame_msg(3)
        mask = os.urandom(4)
        header = struct.pack("!BBQ", 0x82, 0x80 | 127, len(payload)) + mask  # binary, masked, 64-bit length
        half = bytes(b ^ mask[i % 4] for i, b in enumerate(payload[: len(payload) // 2]))
        ws.socket.sendall(header + half)  # the connection dies half-way through a frame
        ws.socket.close()
    with open_ws(ws_url) as ws:
        welcome = start(ws, session_id=sid, backpressure="block")
        (after,) = _stream(ws, range(3, 4))
        ws.send(BYE)
    assert welcome.resumed and welcome.window_frames == 3
    assert after.window.frames == 4 and after.frame_seq == 3


@pytest.mark.parametrize("drop", ["reset", "silent"])
def test_resume_right_after_a_dropped_connection_takes_the_session_over(ws_url: str, drop: str) -> None:
    """The client's connection drops and it resumes at once, before the server has released the old socket: with a
    TCP reset (the server may or may not have seen it yet) or silently (the peer vanished without a close or reset,
    so nothing tells the server until a write or ping fails). The resume gets the session with its window; the old
    connection, if still there, is told session_taken_over and closed."""
    with open_ws(ws_url) as old:
        sid = start(old, backpressure="block").session_id
        _stream(old, range(4))
        if drop == "reset":  # SO_LINGER 0: close() sends a reset, no WebSocket close
            old.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            old.socket.close()
        with open_ws(ws_url) as ws:
            welcome = start(ws, session_id=sid, backpressure="block")
            (after,) = _stream(ws, range(4, 5))
            ws.send(BYE)
        if drop == "silent":  # the old connection is still open on our side: the server let it go
            error, _ = recv_until(old, "error")
            assert error.code.value == "session_taken_over" and error.fatal and sid in error.message
            with pytest.raises(ConnectionClosed) as closed:
                recv(old, timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409
    assert welcome.resumed and welcome.session_id == sid and welcome.window_frames == 4
    assert after.window.frames == 5 and after.counters.accepted == 5 and after.counters.rejected == 0


def test_rest_client_posts_frames_and_long_polls_predictions(live_server: str) -> None:
    with httpx.Client(base_url=live_server, headers=API_HEADERS, timeout=60) as http:
        created = http.post("/v1/sessions", json={"width": 160, "height": 120, "depth_scale": 0.001, "tick_hz": 15})
        sid = created.json()["id"]
        acks = [http.post(f"/v1/sessions/{sid}/frames", content=frame_msg(i, ts=i / 30)).json() for i in range(4)]
        first = http.get(f"/v1/sessions/{sid}/prediction", params={"after": 0, "timeout_s": 20})
        second = http.get(f"/v1/sessions/{sid}/prediction", params={"after": 1, "timeout_s": 20})
        none_yet = http.get(f"/v1/sessions/{sid}/prediction", params={"after": 2, "timeout_s": 0.2})
        listed = http.get("/v1/sessions").json()
        deleted = http.delete(f"/v1/sessions/{sid}")
        gone = http.get(f"/v1/sessions/{sid}")
    assert created.status_code == 201 and created.json()["state"] == "created"
    assert [a["status"] for a in acks] == ["queued", "resampled_out", "queued", "resampled_out"]
    assert first.status_code == 200 and first.json()["seq"] >= 1
    assert second.json()["frame_seq"] == 2 and second.json()["window"]["frames"] == 2
    assert none_yet.status_code == 204
    assert sid in [s["id"] for s in listed["sessions"]]
    assert deleted.status_code == 204
    assert gone.status_code == 404 and gone.json()["code"] == "session_not_found"


def test_delete_session_tells_and_closes_its_websocket(ws_url: str, live_server: str) -> None:
    with open_ws(ws_url) as ws:
        sid = start(ws).session_id
        httpx.delete(f"{live_server}/v1/sessions/{sid}", headers=API_HEADERS)
        bye, _ = recv_until(ws, "bye")
    assert bye.reason == "session closed: deleted over REST"


def test_snapshot_restore_continues_with_identical_predictions(ws_url: str, live_server: str) -> None:
    with open_ws(ws_url) as ws:
        sid = start(ws, backpressure="block").session_id
        _stream(ws, range(6))
        snap = httpx.get(f"{live_server}/v1/sessions/{sid}/snapshot", headers=API_HEADERS)
        (reference,) = _stream(ws, range(6, 7))
        ws.send(BYE)
    restored = httpx.post(f"{live_server}/v1/sessions/restore", content=snap.content, headers=API_HEADERS)
    with open_ws(ws_url) as ws:
        welcome = start(ws, session_id=sid, backpressure="block")
        (after,) = _stream(ws, range(6, 7))
        ws.send(BYE)
    assert snap.headers["content-type"] == "application/msgpack" and len(snap.content) < 100_000
    assert restored.status_code == 201 and restored.json()["id"] == sid and restored.json()["window_frames"] == 6
    assert welcome.resumed and welcome.window_frames == 6
    assert after.window == reference.window and after.current.label == reference.current.label
    np.testing.assert_allclose(
        list(after.current.probabilities.values()), list(reference.current.probabilities.values()), atol=1e-4
    )


def test_restore_of_garbage_is_refused(live_server: str) -> None:
    r = httpx.post(f"{live_server}/v1/sessions/restore", content=b"nonsense", headers=API_HEADERS)
    assert r.status_code == 422 and r.json()["code"] == "bad_snapshot"
    assert "expected a session snapshot" in r.json()["message"]


def test_burst_over_a_full_queue_drops_oldest_counts_and_reports(ws_url: str) -> None:
    with open_ws(ws_url) as ws:
        start(ws, backpressure="latest_wins", tick_hz=15)
        for i in range(40):
            ws.send(frame_msg(i))
        notice, _ = recv_until(ws, "notice")
        ws.send(frame_msg(100, ts=100 / 15))
        while (last := recv_until(ws, "prediction")[0]).frame_seq != 100:
            pass
        ws.send(BYE)
    assert notice.code == "frames_dropped" and notice.details["dropped"] >= 1 and "latest wins" in notice.message
    assert last.counters.dropped >= 1
    assert last.counters.accepted == 41 and last.counters.rejected == 0
    assert last.seq == 41 - last.counters.dropped  # every frame that was not dropped got its prediction


def test_dead_depth_collapses_depth_rank_in_the_health_signal(ws_url: str) -> None:
    def health(dead: bool) -> Any:
        with open_ws(ws_url) as ws:
            start(ws, backpressure="block", tick_hz=15)
            for i in range(16):  # health is measured once a second of stream time
                ws.send(frame_msg(i, dead_depth=dead))
            preds = [recv_until(ws, "prediction")[0] for _ in range(16)]
            ws.send(BYE)
        return preds[-1].modality

    live, dead = health(False), health(True)
    assert live.erank_depth > 1.5 and live.erank_rgb > 1.5
    assert dead.erank_depth < 1.01 and dead.erank_rgb > 1.5
    assert dead.balance > 1.5 * live.balance


def test_detached_session_expires_after_the_reconnect_grace(server_factory: object) -> None:
    with server_factory(reconnect_grace_s=0.3) as url:  # type: ignore[operator]
        ws_url = "ws" + url[4:] + "/v1/stream"
        with open_ws(ws_url) as ws:
            sid = start(ws, backpressure="block").session_id
            ws.send(frame_msg(0))  # a session that streamed: the reconnect grace, not the shorter unstarted one
            recv_until(ws, "prediction")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            listed = httpx.get(f"{url}/v1/sessions", headers=API_HEADERS).json()["sessions"]
            if sid not in [s["id"] for s in listed]:
                break
            time.sleep(0.2)
        with open_ws(ws_url) as ws:
            ws.send(hello(session_id=sid))
            error = recv(ws)
    assert error.code == "session_not_found" and f"{sid!r}" in error.message


class GatedPool(ThreadPoolExecutor):
    """The runtime's decode pool as a real one-thread pool held shut until ``gate`` is set (its first job waits on
    it); ``queued`` is set once a frame's decode waits behind it."""

    def __init__(self) -> None:
        super().__init__(1, thread_name_prefix="gated-decode")
        self.gate, self.queued = threading.Event(), threading.Event()
        super().submit(self.gate.wait)

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        future = super().submit(fn, *args, **kwargs)
        self.queued.set()
        return future


def test_a_frame_still_decoding_when_its_session_is_taken_over_is_left_to_the_resuming_client(
    checkpoints: dict[str, Path], data_root: Path, tmp_path: Path
) -> None:
    """The old connection's frame 4 is mid-decode when the client resumes on a new connection, whose welcome says
    the session has frames up to 3 (last_ts): the client re-sends 4. The old connection must not take 4 afterwards,
    or the re-sent 4 would be refused as a duplicate (bad_timestamp)."""
    settings = make_settings(checkpoints["base"], data_root, tmp_path / "jobs")
    app = create_app(settings)
    with BackgroundServer(app, settings) as url, open_ws("ws" + url[4:] + "/v1/stream") as old:
        sid = start(old, backpressure="block").session_id
        _stream(old, range(4))
        runtime, gated = app.state.runtime, GatedPool()
        runtime.decode_pool, decode_pool = gated, runtime.decode_pool
        try:
            old.send(frame_msg(4))
            assert gated.queued.wait(10), "the old connection's frame never reached the decode pool"
            with open_ws("ws" + url[4:] + "/v1/stream") as ws:
                start(ws, session_id=sid, backpressure="block")
                notice, _ = recv_until(ws, "notice")
                gated.gate.set()  # the old connection's frame 4 decodes now
                error, _ = recv_until(old, "error")  # the take-over, told to the old connection
                for i in range(4, 7):  # from last_ts on, as the client knows it
                    ws.send(frame_msg(i))
                answers = [recv_until(ws, "prediction") for _ in range(4, 7)]
                ws.send(BYE)
        finally:
            runtime.decode_pool = decode_pool
            gated.shutdown()
    assert notice.code == "session_resumed" and notice.details["last_ts"] == pytest.approx(3 / 15)
    assert error.code.value == "session_taken_over"
    assert [others for _, others in answers] == [[], [], []]  # no bad_timestamp for the re-sent frame 4
    preds = [p for p, _ in answers]
    assert [p.frame_seq for p in preds] == [4, 5, 6] and preds[-1].window.frames == 7
    assert (preds[-1].counters.accepted, preds[-1].counters.rejected) == (7, 0)  # frame 4 taken once
