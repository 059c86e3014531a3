"""Model reload under traffic: predictions continue without an error; the token window is kept when the new model
has the same frame encoder and reset with a notice when it does not; a failed reload leaves the old model serving."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.server.helpers import ADMIN_HEADERS, API_HEADERS, BYE, frame_msg, open_ws, recv, start


def test_reload_under_traffic_keeps_or_resets_windows(
    server_factory: Callable[..., Any], checkpoints: dict[str, Path]
) -> None:
    with server_factory() as url, httpx.Client(base_url=url, headers=API_HEADERS, timeout=120) as http:
        before = http.get("/v1/model").json()
        messages: list[Any] = []
        reloads: dict[int, Any] = {}
        with open_ws("ws" + url[4:] + "/v1/stream") as ws:
            start(ws, backpressure="block", tick_hz=15)

            def reload_at(i: int) -> None:
                name = {10: "same_encoder", 25: "other_encoder"}[i]
                reloads[i] = http.post(
                    "/v1/model/reload", json={"model": checkpoints[name].name}, headers=ADMIN_HEADERS
                )

            threads = []
            for i in range(40):
                ws.send(frame_msg(i))
                if i in (10, 25):  # reload while frames are in flight
                    threads.append(threading.Thread(target=reload_at, args=(i,)))
                    threads[-1].start()
                    threads[-1].join()
            while not any(m.type == "prediction" and m.frame_seq == 39 for m in messages):
                messages.append(recv(ws))
            ws.send(BYE)
        bad = http.post("/v1/model/reload", json={"model": "missing.safetensors"}, headers=ADMIN_HEADERS)
        after = http.get("/v1/model").json()
    preds = [m for m in messages if m.type == "prediction"]
    notices = [m for m in messages if m.type == "notice"]
    assert not [m for m in messages if m.type == "error"]
    assert [p.frame_seq for p in preds] == list(range(40))  # no frame lost across two reloads
    assert reloads[10].json()["sessions_kept"] == 1 and reloads[10].json()["sessions_reset"] == 0
    assert reloads[25].json()["sessions_reset"] == 1
    assert [n.code for n in notices] == ["model_reloaded", "window_reset", "model_reloaded"]
    assert "different frame encoder" in notices[1].message
    ids = [p.model_id for p in preds]
    assert ids[0] == before["model_id"] and len(set(ids)) == 3  # base, then same_encoder, then other_encoder
    windows = [p.window.frames for p in preds]
    reset_at = ids.index(reloads[25].json()["model"]["model_id"])
    assert windows[:reset_at] == list(range(1, reset_at + 1))  # kept across the same-encoder reload
    first = windows[reset_at]  # frames already queued when the reset came are in the new window
    assert first <= 4 and windows[reset_at:] == [min(k, 30) for k in range(first, first + 40 - reset_at)]
    assert bad.status_code == 404 and bad.json()["code"] == "model_not_found"
    assert "no model 'missing.safetensors' to reload; available: ['base.safetensors'," in bad.json()["message"]
    assert after["model_id"] == reloads[25].json()["model"]["model_id"]  # the failed reload changed nothing
