"""Durable sessions with a real redis-server: a session outlives the SIGKILL of its r3d-serve process within the
journal's loss bound, and a client that re-sends the frames after ``last_ts`` gets the predictions of an uninterrupted
stream; a server that lost a session to another is fenced; a Redis outage leaves streaming untouched and is resynced;
a window of another frame encoder is refused; a malformed store URL stops r3d-serve at startup."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from websockets.sync.client import ClientConnection

from benchmarks.loadtest import metric, wait_ready
from server.app import create_app
from server.cli import main
from server.protocol import pack
from server.serving import BackgroundServer
from server.session_store.redis_store import RedisSessionStore
from tests.redis_server import RedisServer, free_port
from tests.server.conftest import API_KEY, make_settings
from tests.server.helpers import API_HEADERS, BYE, frame_msg, open_ws, recv_until, start


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


def _predictions(ws: ClientConnection, frames: range) -> list[Any]:
    """Send these frames; their predictions (a tick per frame: tick_hz 15 = the model's fps)."""
    for i in frames:
        ws.send(frame_msg(i))
    return [recv_until(ws, "prediction")[0] for _ in frames]


def _stored_window(url: str, sid: str) -> list[int]:
    data = RedisSessionStore(url).load(sid)
    assert data is not None
    seq: list[int] = msgpack.unpackb(data)["processor"]["window"]["seq"]
    return seq


class ServeProcess:
    """``r3d-serve`` as a child process (SIGKILL is a crash: nothing is flushed or closed)."""

    def __init__(self, model: Path, store_url: str, log: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "server.cli", str(model), "--backend", "pytorch", "--port", str(self.port),
               "--session-store", store_url]  # fmt: skip
        environ = dict(os.environ, R3D_API_KEYS=API_KEY, R3D_LOG_LEVEL="warning", R3D_INFERENCE_THREADS="1", **env)
        with log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, env=environ, stdout=subprocess.DEVNULL, stderr=out)
        wait_ready(self.url, self.proc, timeout=120)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


def test_a_session_survives_sigkill_of_its_server_within_k_frames_and_resent_frames_lose_nothing(
    checkpoints: dict[str, Path], redis_server: RedisServer, tmp_path: Path
) -> None:
    k = 3
    # one frame per encoder batch and one tick per Anticipator call: bit-identical numbers (docs/protocol.md)
    env = {"R3D_SESSION_JOURNAL_FRAMES": str(k), "R3D_ENCODER_MAX_BATCH": "1", "R3D_ANTICIPATOR_MAX_BATCH": "1"}
    first = ServeProcess(checkpoints["base"], redis_server.url, tmp_path / "serve.log", **env)
    try:
        with open_ws(first.ws_url) as ws:
            sid = start(ws, backpressure="block").session_id
            _predictions(ws, range(20))  # every frame encoded; journaled when 3 are new (and at the first)
            first.kill()
    finally:
        first.proc.kill()
    stored = _stored_window(redis_server.url, sid)
    assert stored == list(range(len(stored))) and 20 - len(stored) < k

    second = ServeProcess(checkpoints["base"], redis_server.url, tmp_path / "serve.log", **env)
    try:
        with open_ws(second.ws_url) as ws:
            welcome = start(ws, session_id=sid, backpressure="block")
            notice, _ = recv_until(ws, "notice")
            resent_from = next(i for i in range(20) if i / 15.0 > notice.details["last_ts"])
            resumed = _predictions(ws, range(resent_from, 30))
            ws.send(BYE)
        with open_ws(second.ws_url) as ws:  # the same frames, never interrupted
            start(ws, backpressure="block")
            control = _predictions(ws, range(30))[resent_from:]
            ws.send(BYE)
        scraped = httpx.get(f"{second.url}/metrics").text
    finally:
        second.kill()
    assert welcome.resumed and welcome.session_id == sid
    assert welcome.window_frames == len(stored)
    assert notice.code == "session_resumed" and resent_from == len(stored)
    assert [p.frame_seq for p in resumed] == [p.frame_seq for p in control] == list(range(resent_from, 30))
    for got, want in zip(resumed, control, strict=True):
        assert got.window.frames == want.window.frames
        assert got.current.probabilities == pytest.approx(want.current.probabilities, abs=1e-6)
    assert resumed[-1].counters == control[-1].counters  # the lost frames were re-sent: each counted once
    assert metric(scraped, "r3d_sessions_restored_total") == 1


def test_a_server_that_lost_its_session_to_another_is_fenced_and_ends_it(
    checkpoints: dict[str, Path], data_root: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    def settings(name: str) -> Any:
        return make_settings(checkpoints["base"], data_root, tmp_path / name, session_store=redis_server.url)

    with BackgroundServer(create_app(settings("a")), settings("a")) as url_a:
        with open_ws("ws" + url_a[4:] + "/v1/stream") as ws:
            sid = start(ws, backpressure="block").session_id
            _predictions(ws, range(6))
        with BackgroundServer(create_app(settings("b")), settings("b")) as url_b:
            with open_ws("ws" + url_b[4:] + "/v1/stream") as ws:  # server a is partitioned from its client
                assert start(ws, session_id=sid, backpressure="block").resumed
                _predictions(ws, range(6, 9))
            stored = _stored_window(redis_server.url, sid)
            # server a still holds the session and takes a frame for it (REST): its journal write is refused
            frame = httpx.post(f"{url_a}/v1/sessions/{sid}/frames", content=frame_msg(20), headers={
                **API_HEADERS, "Content-Type": "application/msgpack"})  # fmt: skip
            deadline = time.monotonic() + 10
            while httpx.get(f"{url_a}/v1/sessions/{sid}", headers=API_HEADERS).status_code != 404:
                assert time.monotonic() < deadline, "server a kept a session it no longer owns"
                time.sleep(0.1)
            scraped = httpx.get(f"{url_a}/metrics").text
            assert httpx.get(f"{url_b}/v1/sessions/{sid}", headers=API_HEADERS).json()["window_frames"] == 9
    assert frame.status_code == 202
    assert stored == list(range(9)) == _stored_window(redis_server.url, sid)  # a's write changed nothing
    assert metric(scraped, "r3d_sessions_fenced_total") == 1


def test_a_session_resumed_on_another_server_and_back_continues_from_the_store(
    checkpoints: dict[str, Path], data_root: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Server a still holds its copy (never written since b claimed the session): a resume back on a must get the
    window b journaled, not a's, which is 3 frames behind (and would then be fenced at its first write)."""

    def settings(name: str) -> Any:
        return make_settings(checkpoints["base"], data_root, tmp_path / name, session_store=redis_server.url)

    with BackgroundServer(create_app(settings("a")), settings("a")) as url_a:
        ws_a = "ws" + url_a[4:] + "/v1/stream"
        with open_ws(ws_a) as ws:
            sid = start(ws, backpressure="block").session_id
            _predictions(ws, range(6))
        with BackgroundServer(create_app(settings("b")), settings("b")) as url_b:
            with open_ws("ws" + url_b[4:] + "/v1/stream") as ws:
                assert start(ws, session_id=sid, backpressure="block").resumed
                _predictions(ws, range(6, 9))
        assert httpx.get(f"{url_a}/v1/sessions/{sid}", headers=API_HEADERS).json()["window_frames"] == 6  # stale
        with open_ws(ws_a) as ws:
            welcome = start(ws, session_id=sid, backpressure="block")
            after = _predictions(ws, range(9, 12))
            ws.send(BYE)
        scraped = httpx.get(f"{url_a}/metrics").text
    assert welcome.resumed and welcome.window_frames == 9
    assert [(p.frame_seq, p.window.frames) for p in after] == [(9, 10), (10, 11), (11, 12)]
    assert after[-1].counters.accepted == 12  # a's own 6, b's 3 and these 3: every frame counted once
    assert metric(scraped, "r3d_sessions_fenced_total") == 1 and metric(scraped, "r3d_sessions_restored_total") == 1


def test_a_redis_outage_keeps_sessions_streaming_then_resyncs_them(
    checkpoints: dict[str, Path],
    data_root: Path,
    redis_server: RedisServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = make_settings(checkpoints["base"], data_root, tmp_path / "jobs", session_store=redis_server.url)
    caplog.set_level(logging.WARNING, logger="server.streaming.journal")
    with BackgroundServer(create_app(s), s) as url, open_ws("ws" + url[4:] + "/v1/stream") as ws:
        sid = start(ws, backpressure="block").session_id
        _predictions(ws, range(5))
        redis_server.stop()
        during = _predictions(ws, range(5, 10))
        down = metric(httpx.get(f"{url}/metrics").text, "r3d_session_store_up")
        redis_server.start()  # the same port, empty: a restart without persistence
        deadline = time.monotonic() + 10  # the housekeeping retries once a second
        while (up := metric(httpx.get(f"{url}/metrics").text, "r3d_session_store_up")) != 1:
            assert time.monotonic() < deadline, "the journal did not resync within 10 s of Redis coming back"
            time.sleep(0.1)
        after = _predictions(ws, range(10, 12))
        stored = _stored_window(redis_server.url, sid)
        ws.send(BYE)
    assert [p.frame_seq for p in during + after] == list(range(5, 12)) and after[-1].window.frames == 12
    assert (down, up) == (0.0, 1.0)
    assert stored == list(range(12))  # the whole window, written again when Redis came back
    messages = [r.getMessage() for r in caplog.records]
    assert any("unavailable" in m and "keep streaming in memory" in m for m in messages)
    assert any("answers again" in m and "1 sessions resynced" in m for m in messages)


def test_a_journal_of_another_frame_encoder_is_refused_with_both_ids(
    checkpoints: dict[str, Path], data_root: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    base = make_settings(checkpoints["base"], data_root, tmp_path / "a", session_store=redis_server.url)
    other = make_settings(checkpoints["other_encoder"], data_root, tmp_path / "b", session_store=redis_server.url)
    with BackgroundServer(create_app(base), base) as url, open_ws("ws" + url[4:] + "/v1/stream") as ws:
        sid = start(ws, backpressure="block").session_id
        _predictions(ws, range(3))
    with BackgroundServer(create_app(other), other) as url, open_ws("ws" + url[4:] + "/v1/stream") as ws:
        ws.send(pack({"type": "hello", "v": 1, "camera": "synthetic", "width": 160, "height": 120,
                      "depth_scale": 0.001, "session_id": sid}))  # fmt: skip
        error, _ = recv_until(ws, "error")
    assert error.fatal and error.code == "session_state"
    assert f"session {sid!r} in the session store cannot continue here" in error.message
    assert "expected a snapshot of frame encoder" in error.message and "got tokens of" in error.message
    assert _stored_window(redis_server.url, sid) == [0, 1, 2]  # refused, not taken over


def test_a_malformed_session_store_url_stops_r3d_serve_at_startup(
    checkpoints: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(checkpoints["base"]), "--session-store", "redis://127.0.0.1:port/0"]) == 2
    err = capsys.readouterr().err
    assert "session_store" in err and "expected a port number (0-65535)" in err
