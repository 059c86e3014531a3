"""Service endpoints: auth (health stays open), model info, OpenAPI, Prometheus metrics content."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.server.helpers import API_HEADERS, BYE, frame_msg, open_ws, recv, recv_until, start


@pytest.mark.parametrize(
    ("headers", "match"),
    [({}, "missing API key"), ({"Authorization": "Bearer wrong-key-wrong-key"}, "wrong API key"),
     ({"X-API-Key": "nope"}, "wrong API key")],
)  # fmt: skip
def test_rest_without_valid_key_is_401(live_server: str, headers: dict[str, str], match: str) -> None:
    r = httpx.get(f"{live_server}/v1/sessions", headers=headers)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized" and match in r.json()["message"]


def test_health_and_readiness_are_open(live_server: str) -> None:
    health = httpx.get(f"{live_server}/healthz")
    ready = httpx.get(f"{live_server}/readyz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert ready.status_code == 200 and ready.json()["ready"] is True and ready.json()["model_id"]


def test_websocket_without_key_gets_error_and_close_4401(ws_url: str) -> None:
    with open_ws(ws_url, headers={}) as ws:
        error = recv(ws)
        with pytest.raises(Exception, match="4401"):
            ws.recv(timeout=10)
    assert error.code == "unauthorized" and error.fatal and "missing API key" in error.message


def test_websocket_key_in_query_is_accepted(ws_url: str) -> None:
    with open_ws(ws_url + "?api_key=test-key-0123456789abcdef", headers={}) as ws:
        welcome = start(ws)
        ws.send(BYE)
    assert welcome.type == "welcome"


def test_model_info_names_classes_fps_window_horizon_backend_version(live_server: str) -> None:
    info = httpx.get(f"{live_server}/v1/model", headers=API_HEADERS).json()
    assert info["classes"] == ["walk", "sit", "drink"]
    assert (info["fps"], info["window_s"], info["window_frames"], info["horizon_s"]) == (15.0, 2.0, 30, 2.0)
    assert info["backend"] == "pytorch" and info["backend_info"]["device"] == "cpu"
    assert info["server_version"] and info["protocol_version"] == 1 and len(info["frame_encoder_id"]) == 16


def test_openapi_lists_every_route_and_resolves_every_ref(live_server: str) -> None:
    doc = httpx.get(f"{live_server}/openapi.json").json()
    paths = doc["paths"]
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert refs <= set(doc["components"]["schemas"]) and {"FrameIn", "Hello", "AnticipationOut"} <= refs | set(
        doc["components"]["schemas"]
    )
    for path in (
        "/v1/sessions",
        "/v1/sessions/{session_id}/frames",
        "/v1/sessions/{session_id}/prediction",
        "/v1/jobs",
        "/v1/jobs/{job_id}/results.csv",
        "/v1/model/reload",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path  # fmt: skip


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_report_frames_latencies_queue_and_modality_health(ws_url: str, live_server: str) -> None:
    with open_ws(ws_url) as ws:
        sid = start(ws, backpressure="block", tick_hz=15).session_id
        for i in range(4):
            ws.send(frame_msg(i))
        for _ in range(4):
            recv_until(ws, "prediction")
        ws.send(frame_msg(9, ts=0.0))  # a bad timestamp: counted by code
        recv_until(ws, "error")
        text = httpx.get(f"{live_server}/metrics").text  # metrics_public: no key needed
        ws.send(BYE)
    assert _sample(text, "r3d_frames_total", session=sid, outcome="accepted") == 4
    assert _sample(text, "r3d_frames_total", session=sid, outcome="rejected") == 1
    assert _sample(text, "r3d_predictions_total", session=sid) == 4
    assert _sample(text, "r3d_modality_erank", session=sid, tokens="depth") > 1
    assert _sample(text, "r3d_modality_balance", session=sid) > 0
    assert _sample(text, "r3d_modality_stream_ok", session=sid, stream="rgb") == 1  # a live synthetic stream
    assert _sample(text, "r3d_modality_stream_ok", session=sid, stream="depth") == 1
    assert _sample(text, "r3d_errors_total", code="bad_timestamp") >= 1
    assert _sample(text, "r3d_encode_seconds_count") >= 1 and _sample(text, "r3d_anticipate_seconds_count") >= 1
    assert _sample(text, "r3d_anticipate_batch_ticks_sum") >= 4  # every tick ran, in batches across sessions
    assert _sample(text, "r3d_frame_to_prediction_seconds_count") >= 4
    assert re.search(r'r3d_model_info\{.*backend="pytorch"', text)
    assert "r3d_session_queue_depth" in text and "r3d_session_fps" in text and "r3d_frames_dropped" in text
