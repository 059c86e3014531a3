"""A server that dies or restarts mid-stream does not end the client's stream: r3d-stream against a real r3d-serve
process on a loopback port, killed (SIGKILL) or stopped (SIGTERM, a graceful drain) mid-recording and started again on
the same port. The stream must finish, write its summary (with the session reset counted) and its JSONL, and the
predictions after the restart must be there. With a Redis session store the SDK's stream keeps its very session, and
re-sends the frames the crash lost (those after the journal's last write): the session ends as an uninterrupted one.

Slow: each test starts r3d-serve once more (about 3 s on an idle machine, 15 s on a busy one: importing torch)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import pytest

from clients.sdk import Backpressure, Client, ReconnectPolicy, SessionCreate, SessionLoss
from clients.stream_cli import main
from server.session_store.redis_store import RedisSessionStore
from tests.clients.conftest import FPS, H, W, pattern_frame
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 60  # 4 s of recording at 15 fps
KILL_AFTER = 15  # frames the first server receives before it goes


class ServerProcess:
    """r3d-serve in a subprocess on a fixed loopback port, so it can be killed and started again on the same port."""

    def __init__(self, checkpoint: Path, log: Path, *options: str, env: dict[str, str] | None = None) -> None:
        self.checkpoint, self.log, self.options, self.env = checkpoint, log, options, env or {}
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "R3D_DEFAULT_TICK_HZ": str(FPS), "R3D_INFERENCE_THREADS": "1",
               **self.env}  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server.cli", str(self.checkpoint), "--backend", "pytorch", "--port",
                 str(self.port), "--log-level", "info", *self.options],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"r3d-serve exited with {self.proc.returncode}: {self.log.read_text()}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"r3d-serve was not ready within {timeout_s:g} s: {self.log.read_text()}")

    def frames_received(self) -> int:
        try:
            sessions = httpx.get(f"{self.url}/v1/sessions", timeout=1.0).json()["sessions"]
        except httpx.TransportError:
            return 0
        return max((s["counters"]["received"] for s in sessions), default=0)

    def stop(self, sig: signal.Signals, timeout_s: float = 60.0) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout_s)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server process for the module; each test stops it and starts it again."""
    proc = ServerProcess(tiny_checkpoint, tmp_path_factory.mktemp("serve") / "serve.log")
    proc.start()
    yield proc
    proc.close()


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60-frame (4 s) 160x120 RealSense .db3 recording."""
    from rgbd.realsense import record_db3

    path = tmp_path_factory.mktemp("long") / "long.db3"
    assert record_db3(path, [pattern_frame(i) for i in range(FRAMES)], fps=int(FPS)) == FRAMES
    return path


def _wait_for(condition: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting for the stream"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_stream_cli_server_restart_mid_stream_finishes_on_a_new_session(
    server: ServerProcess, long_recording: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    jsonl, summary_path = tmp_path / "p.jsonl", tmp_path / "summary.json"
    argv = [str(long_recording), "--server", server.url, "--jsonl", str(jsonl), "--summary", str(summary_path),
            "--tick-hz", str(FPS), "--print-hz", "0"]  # fmt: skip  # paced in real time: the default
    rc: list[int] = []
    client = threading.Thread(target=lambda: rc.append(main(argv)), name="r3d-stream")
    client.start()
    _wait_for(lambda: server.frames_received() >= KILL_AFTER, 30.0)
    server.stop(sig)  # SIGTERM: the server drains (shutdown notice, bye, close 1001) and exits
    server.start()
    client.join(120)

    assert rc == [0]
    summary = json.loads(summary_path.read_text())
    assert summary["session_resets"] == 1 and summary["reconnects"] >= 1
    first, second = summary["session_ids"]
    assert first != second == summary["session_id"]
    assert not jsonl.with_name(jsonl.name + ".partial").exists()
    predictions = [json.loads(line) for line in jsonl.read_text().splitlines()]
    after = [p for p in predictions if p["session_id"] == second]
    assert after and after[-1]["frame_seq"] >= FRAMES - 3  # the rest of the recording was streamed and answered
    assert all(p["window"]["frames"] <= p["frame_seq"] - KILL_AFTER + 1 for p in after)  # a new, shorter window
    assert summary["frames_sent"] + summary["client_skipped"] == FRAMES


def test_sdk_restores_the_last_snapshot_when_the_server_lost_the_session(server: ServerProcess) -> None:
    stream_spec = SessionCreate(width=W, height=H, depth_scale=0.001, tick_hz=FPS, backpressure=Backpressure.BLOCK)
    policy = ReconnectPolicy(timeout_s=60.0, on_session_lost=SessionLoss.RESTORE_SNAPSHOT)
    seen = []
    with Client(server.url) as client, client.stream(stream_spec, reconnect=policy, on_reset=seen.append) as stream:
        for i in range(10):
            stream.send_frame(pattern_frame(i))
        stream.drain(timeout=30.0)
        stream.fetch_snapshot()
        lost = stream.session_id
        server.stop(signal.SIGKILL)
        server.start()
        for i in range(10, 15):
            stream.send_frame(pattern_frame(i))
        last = stream.next_prediction(timeout=60.0)  # the restarted server's first model call is slow (cold)
        while last is not None and last.frame_seq < 14:
            last = stream.next_prediction(timeout=30.0)
    assert [(r.lost_session_id, r.session_id, r.restored, r.window_frames) for r in seen] == [(lost, lost, True, 10)]
    assert stream.stats.session_resets == 1
    assert last is not None and last.window.frames == 15  # the window went on from the snapshot's 10 frames


def test_sdk_resends_the_frames_a_crash_lost_and_the_session_ends_as_an_uninterrupted_one(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    k = 4  # the journal is written every 4 used frames: the crash loses up to 3
    # one frame per encoder batch and one tick per Anticipator call: bit-identical numbers (docs/protocol.md)
    env = {"R3D_SESSION_JOURNAL_FRAMES": str(k), "R3D_ENCODER_MAX_BATCH": "1", "R3D_ANTICIPATOR_MAX_BATCH": "1"}
    stream_spec = SessionCreate(width=W, height=H, depth_scale=0.001, tick_hz=FPS, backpressure=Backpressure.BLOCK)
    policy = ReconnectPolicy(timeout_s=90.0, max_backoff_s=0.5, on_session_lost=SessionLoss.FAIL)
    with RedisServer(tmp_path / "redis") as redis_server:
        server = ServerProcess(tiny_checkpoint, tmp_path / "serve.log", "--session-store", redis_server.url, env=env)
        server.start()
        try:
            with Client(server.url) as client:
                with client.stream(stream_spec, reconnect=policy) as stream:
                    for i in range(20):
                        stream.send_frame(pattern_frame(i))
                    stream.drain(timeout=30.0)  # all 20 encoded; the journal holds the frames up to its last write
                    before = stream.session_id
                    server.stop(signal.SIGKILL)
                    stored = _stored_window(redis_server.url, stream.session_id)
                    server.start()
                    _wait_for(lambda: stream.stats.reconnects == 1, 60.0)  # resumed, and the lost frames re-sent
                    for i in range(20, 30):
                        stream.send_frame(pattern_frame(i))
                    resumed = stream.drain(timeout=60.0)[-1]
                    notices = [n for n in stream.inner.notices if n.code == "session_resumed"]
                with client.stream(stream_spec) as control:  # the same 30 frames on a new session, never interrupted
                    for i in range(30):
                        control.send_frame(pattern_frame(i))
                    uninterrupted = control.drain(timeout=60.0)[-1]
        finally:
            server.close()
    assert stream.session_id == before  # the very session, its window back from Redis
    assert stored == list(range(len(stored))) and 0 < 20 - len(stored) < k  # the crash lost 1 to 3 frames
    assert [n.details["last_ts"] for n in notices] == [pytest.approx((len(stored) - 1) / FPS)]
    stats = stream.stats
    assert (stats.frames_resent, stats.frames_lost, stats.errors, stats.session_resets) == (20 - len(stored), 0, 0, 0)
    assert resumed.frame_seq == uninterrupted.frame_seq == 29
    assert resumed.window.frames == uninterrupted.window.frames == 30
    assert resumed.counters == uninterrupted.counters  # every frame taken exactly once
    assert resumed.current.probabilities == pytest.approx(uninterrupted.current.probabilities, abs=1e-6)


def _stored_window(url: str, session_id: str | None) -> list[int]:
    """The frame seqs of the token window the session store holds for the session."""
    assert session_id is not None
    data = RedisSessionStore(url).load(session_id)
    assert data is not None
    seq: list[int] = msgpack.unpackb(data)["processor"]["window"]["seq"]
    return seq
