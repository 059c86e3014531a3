"""Graceful shutdown: streaming clients are told (notice, bye, close 1001) and unfinished jobs are marked
interrupted, which a restarted server still reports."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from server.app import create_app
from server.serving import BackgroundServer
from tests.server.conftest import make_settings
from tests.server.helpers import API_HEADERS, open_ws, recv, start, write_recording


def test_shutdown_tells_clients_and_marks_jobs_interrupted(
    checkpoints: dict[str, Path], data_root: Path, tmp_path: Path
) -> None:
    write_recording(data_root, "long", 60)
    settings = make_settings(checkpoints["base"], data_root, tmp_path / "jobs", shutdown_grace_s=0.0)
    server = BackgroundServer(create_app(settings), settings)
    url = server.__enter__()
    job = httpx.post(f"{url}/v1/jobs", json={"path": "long"}, headers=API_HEADERS).json()
    with open_ws("ws" + url[4:] + "/v1/stream") as ws:
        start(ws)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        notice, bye = recv(ws), recv(ws)
        try:
            ws.recv(timeout=10)
            code = None
        except Exception as exc:  # the close frame
            code = getattr(getattr(exc, "rcvd", None), "code", None)
        stopper.join()
    restarted = make_settings(checkpoints["base"], data_root, tmp_path / "jobs")
    with BackgroundServer(create_app(restarted), restarted) as url2:
        after = httpx.get(f"{url2}/v1/jobs/{job['id']}", headers=API_HEADERS).json()
    assert (notice.type, notice.code) == ("notice", "shutdown")
    assert bye.type == "bye" and "shutting down" in bye.reason
    assert code == 1001
    assert after["state"] == "interrupted" and "shut down" in after["error"]
