"""The streaming protocol against a live server: hello/welcome, predictions, resampling, order, ping, bye."""

from __future__ import annotations

import json

import httpx

from tests.server.helpers import API_HEADERS, BYE, frame_msg, open_ws, recv, recv_until, start


def test_stream_frames_at_model_fps_get_one_prediction_each_in_order(ws_url: str, live_server: str) -> None:
    with open_ws(ws_url) as ws:
        welcome = start(ws, tick_hz=15.0, backpressure="block")
        assert welcome.model.classes == ["walk", "sit", "drink"] and welcome.model.fps == 15.0
        assert welcome.model.window_frames == 30 and welcome.model.horizon_s == 2.0
        assert welcome.tick_hz == 15.0 and not welcome.resumed
        for i in range(12):
            ws.send(frame_msg(i))
        preds = [recv_until(ws, "prediction")[0] for _ in range(12)]
        ws.send(BYE)
    assert [p.frame_seq for p in preds] == list(range(12))
    assert [p.seq for p in preds] == list(range(1, 13))
    assert [p.window.frames for p in preds] == list(range(1, 13))
    last = preds[-1]
    assert abs(sum(last.current.probabilities.values()) - 1) < 1e-5
    assert last.current.label in ("walk", "sit", "drink")
    assert all(0 <= a.start_s <= 2.0 + 1e-6 and a.duration_s >= 0 for a in last.future)
    assert last.counters.accepted == 12 and last.counters.dropped == 0 and last.counters.rejected == 0
    assert last.modality is not None and last.modality.erank_rgb is not None
    assert last.latency.frame_to_prediction_ms > 0
    sessions = httpx.get(f"{live_server}/v1/sessions", headers=API_HEADERS).json()["sessions"]
    assert welcome.session_id not in [s["id"] for s in sessions]


def test_stream_at_twice_model_fps_is_resampled_without_inventing_frames(ws_url: str) -> None:
    with open_ws(ws_url) as ws:
        start(ws, tick_hz=15.0, backpressure="block")
        for i in range(16):  # 30 fps
            ws.send(frame_msg(i, ts=i / 30.0))
        ws.send(frame_msg(99, ts=20.0))  # flush: a frame far later
        preds = [recv_until(ws, "prediction")[0] for _ in range(9)]
        ws.send(BYE)
    assert [p.frame_seq for p in preds] == [0, 2, 4, 6, 8, 10, 12, 14, 99]
    last = preds[-1]
    assert (last.counters.received, last.counters.accepted, last.counters.resampled_out) == (17, 9, 8)
    assert last.window.frames == 1  # 20 s later: the 2 s window holds only the new frame


def test_stream_ping_is_answered_with_pong(ws_url: str) -> None:
    with open_ws(ws_url) as ws:
        ws.send('{"type": "ping", "id": 7}')
        pong = recv(ws)
    assert pong.type == "pong" and pong.id == 7


def test_stream_json_hello_gets_json_answers(ws_url: str) -> None:
    with open_ws(ws_url) as ws:
        ws.send('{"type": "hello", "width": 160, "height": 120, "depth_scale": 0.001, "encoding": "json"}')
        raw = ws.recv(timeout=30)
        ws.send('{"type": "bye"}')
    assert isinstance(raw, str) and json.loads(raw)["type"] == "welcome"
