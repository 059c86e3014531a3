"""Finding 6: a server bug is told apart from a normal end. A WebSocket gets an ``internal`` error and close 1011, a
REST call a 500 ``internal`` ErrorOut, and the log holds exactly one traceback per bug. The bug is injected into a
live in-process server's engine (the only way to have one on purpose)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from server.app import create_app
from server.serving import BackgroundServer
from tests.server.conftest import make_settings
from tests.server.helpers import API_HEADERS, frame_msg, open_ws, recv_until, start


class Tracebacks(logging.Handler):
    """Counts log records that carry a traceback, on the root and uvicorn's loggers (which do not propagate)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture
def app_and_url(checkpoints: dict[str, Path], data_root: Path, tmp_path: Path) -> Iterator[tuple[Any, str, Tracebacks]]:
    settings = make_settings(checkpoints["base"], data_root, tmp_path / "jobs")
    app = create_app(settings)
    tracebacks = Tracebacks()
    loggers = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.error")]
    with BackgroundServer(app, settings) as url:
        for logger in loggers:
            logger.addHandler(tracebacks)
        try:
            yield app, url, tracebacks
        finally:
            for logger in loggers:
                logger.removeHandler(tracebacks)


def _broken(*args: object) -> tuple[np.ndarray, np.ndarray]:
    raise KeyError("a bug in preprocessing")


def test_stream_bug_is_an_internal_error_with_close_1011_and_one_traceback(
    app_and_url: tuple[Any, str, Tracebacks], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, url, tracebacks = app_and_url
    monkeypatch.setattr(app.state.runtime.engine, "prepare", _broken)
    with open_ws("ws" + url[4:] + "/v1/stream") as ws:
        start(ws, backpressure="block")
        ws.send(frame_msg(0))
        error, _ = recv_until(ws, "error")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert (error.code, error.fatal) == ("internal", True)
    assert error.message == "internal error; the server log has the details"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    assert len(tracebacks.records) == 1 and "KeyError" in str(tracebacks.records[0].exc_info)


def test_rest_bug_is_a_500_internal_error_out_with_one_traceback(
    app_and_url: tuple[Any, str, Tracebacks], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, url, tracebacks = app_and_url
    monkeypatch.setattr(app.state.runtime.engine, "prepare", _broken)
    with httpx.Client(base_url=url, headers=API_HEADERS, timeout=30) as http:
        sid = http.post("/v1/sessions", json={"width": 160, "height": 120, "depth_scale": 0.001}).json()["id"]
        answer = http.post(f"/v1/sessions/{sid}/frames", content=frame_msg(0))
        alive = http.get("/healthz")
    assert answer.status_code == 500
    assert answer.json() == {
        "type": "error", "v": 1, "code": "internal", "seq": None, "fatal": False, "retry_after_s": None,
        "message": "internal error; the server log has the details",
    }  # fmt: skip
    assert alive.status_code == 200
    assert len(tracebacks.records) == 1
