"""Client SDK through its transport seams (no server): reconnect and resume, error mapping, the sync wrapper,
and the import boundary. The same SDK against the real server is in test_sdk_live.py."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from clients.sdk import (
    AsyncClient,
    Client,
    ConnectionLost,
    ReconnectPolicy,
    ServerError,
    SessionCreate,
    SessionLoss,
    SessionReset,
    StreamClosed,
    StreamStats,
    TransportClosed,
)
from server.protocol import (
    AnticipationOut,
    Backpressure,
    CurrentAction,
    ErrorCode,
    ErrorOut,
    FrameIn,
    Hello,
    Latency,
    ModelInfo,
    Notice,
    NoticeCode,
    Ping,
    Pong,
    StreamCounters,
    Welcome,
    WindowInfo,
    pack,
    parse_client_message,
)

ROOT = Path(__file__).resolve().parents[2]
STREAM = SessionCreate(width=8, height=6, depth_scale=0.001)


class FakeServer:
    """An in-memory stand-in for the service's WebSocket endpoint: welcome (with the session_resumed notice and its
    last_ts when resumed), one prediction per frame, bad_timestamp for a frame not after the last one, and a
    connection drop after `drop_after` frames of the first connection (with `restart`, the drop also forgets every
    session, as a restarted server does). The `vanish` frames before the drop never arrive (lost in the network)."""

    def __init__(self, drop_after: int | None = None, *, restart: bool = False, vanish: int = 0) -> None:
        self.drop_after, self.restart, self.vanish = drop_after, restart, vanish
        self.hellos: list[Hello] = []
        self.frames: list[FrameIn] = []
        self.sessions: set[str] = set()
        self.created = 0
        self.connections = 0

    async def connect(self, url: str, headers: dict[str, str]) -> FakeConnection:
        self.connections += 1
        return FakeConnection(self, self.connections)


class FakeConnection:
    def __init__(self, server: FakeServer, number: int) -> None:
        self.server, self.number = server, number
        self.outbox: asyncio.Queue[bytes | TransportClosed] = asyncio.Queue()
        self.frames_here = 0
        self.closed = False

    async def send(self, data: bytes | str) -> None:
        if self.closed:
            raise TransportClosed(1006, "dropped")
        msg = parse_client_message(data)
        if isinstance(msg, Hello):
            self.server.hellos.append(msg)
            if msg.session_id is not None and msg.session_id not in self.server.sessions:
                err = ErrorOut(code=ErrorCode.SESSION_NOT_FOUND, message=f"no session {msg.session_id!r}", fatal=True)
                await self.outbox.put(pack(err))
                return
            resumed = msg.session_id is not None
            if msg.session_id is None:
                self.server.created += 1
            session_id = msg.session_id or f"s{self.server.created}"
            self.server.sessions.add(session_id)
            model = ModelInfo(model_id="m", frame_encoder_id="fe", backend="fake", classes=["a", "b"], fps=15.0,
                              window_s=8.0, window_frames=120, horizon_s=8.0, server_version="0")  # fmt: skip
            window = len(self.server.frames) if resumed else 0
            welcome = Welcome(session_id=session_id, resumed=resumed, window_frames=window, tick_hz=15.0,
                              backpressure=Backpressure.LATEST_WINS, queue_size=8, max_message_bytes=1 << 20,
                              model=model)  # fmt: skip
            await self.outbox.put(pack(welcome))
            if resumed:
                last_ts = self.server.frames[-1].ts if self.server.frames else None
                notice = Notice(code=NoticeCode.SESSION_RESUMED, message="resumed", details={"last_ts": last_ts})
                await self.outbox.put(pack(notice))
        elif isinstance(msg, FrameIn):
            drop_after = self.server.drop_after
            if self.number == 1 and drop_after is not None and self.frames_here >= drop_after:
                self.closed = True
                if self.server.restart:
                    self.server.sessions.clear()
                await self.outbox.put(TransportClosed(1006, "network went away"))
                raise TransportClosed(1006, "network went away")
            self.frames_here += 1
            if self.number == 1 and drop_after is not None and self.frames_here > drop_after - self.server.vanish:
                return  # sent, never received
            if self.server.frames and msg.ts <= self.server.frames[-1].ts:
                err = ErrorOut(code=ErrorCode.BAD_TIMESTAMP, message=f"not after {self.server.frames[-1].ts}",
                               seq=msg.seq, fatal=False)  # fmt: skip
                await self.outbox.put(pack(err))
                return
            self.server.frames.append(msg)
            n = len(self.server.frames)
            counters = StreamCounters(received=n, accepted=n, resampled_out=0, dropped=0, rejected=0)
            pred = AnticipationOut(
                session_id="s1", seq=n - 1, frame_seq=msg.seq, frame_ts=msg.ts, model_id="m",
                current=CurrentAction(action=0, label="a", probability=0.9, probabilities={"a": 0.9, "b": 0.1}),
                future=[], window=WindowInfo(frames=n, start_ts=0.0, end_ts=msg.ts),
                latency=Latency(frame_to_prediction_ms=1.0, queue_ms=0.1, encode_ms=0.5, anticipate_ms=0.4),
                counters=counters,
            )  # fmt: skip
            await self.outbox.put(pack(pred))
        elif isinstance(msg, Ping):
            await self.outbox.put(pack(Pong(id=msg.id)))

    async def recv(self) -> bytes | str:
        item = await self.outbox.get()
        if isinstance(item, TransportClosed):
            raise item
        return item

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            await self.outbox.put(TransportClosed(code, reason))


def _frame(i: int) -> tuple[np.ndarray, np.ndarray, float]:
    rgb = np.full((6, 8, 3), i, np.uint8)
    depth = np.full((6, 8), 1000 + i, np.uint16)
    return rgb, depth, 0.1 * (i + 1)


def test_async_stream_dropped_connection_resumes_session_and_loses_no_frame() -> None:
    server = FakeServer(drop_after=4)

    async def scenario() -> tuple[list[int], int]:
        async with AsyncClient("http://fake", ws_connector=server.connect) as client:
            async with client.stream(STREAM, reconnect=ReconnectPolicy(timeout_s=5.0)) as stream:
                for i in range(10):
                    await stream.send(*_frame(i))
                preds = await stream.drain(timeout=5.0)
                preds = [*preds, *stream.pending()]
                return [p.frame_seq for p in preds], stream.stats.reconnects

    seqs, reconnects = asyncio.run(scenario())
    assert [f.seq for f in server.frames] == list(range(10))  # each once: a duplicate would be a bad_timestamp
    assert [f.ts for f in server.frames] == pytest.approx([0.1 * (i + 1) for i in range(10)])
    assert reconnects == 1 and server.connections == 2
    assert [h.session_id for h in server.hellos] == [None, "s1"]
    assert sorted(seqs)[-1] == 9


def test_async_stream_session_lost_on_reconnect_continues_on_a_new_session_and_reports_the_reset() -> None:
    server = FakeServer(drop_after=4, restart=True)
    seen: list[SessionReset] = []

    async def scenario() -> tuple[list[int], StreamStats, list[SessionReset]]:
        async with AsyncClient("http://fake", ws_connector=server.connect) as client:
            async with client.stream(STREAM, on_reset=seen.append) as stream:
                for i in range(10):
                    await stream.send(*_frame(i))
                preds = [*await stream.drain(timeout=5.0), *stream.pending()]
                return [p.frame_seq for p in preds], stream.stats, stream.resets

    seqs, stats, resets = asyncio.run(scenario())
    assert [h.session_id for h in server.hellos] == [None, "s1", None]  # resume refused: a new session
    assert [(r.lost_session_id, r.session_id, r.restored, r.window_frames, r.frames_sent) for r in seen] == [
        ("s1", "s2", False, 0, 4)
    ]
    assert resets == seen and stats.session_resets == 1 and stats.reconnects == 1
    assert [f.seq for f in server.frames] == list(range(10))  # the frame whose send failed went out again
    assert max(seqs) == 9


def test_async_stream_refused_snapshot_restore_falls_back_to_a_new_session(caplog: pytest.LogCaptureFixture) -> None:
    server = FakeServer(drop_after=3, restart=True)
    requests: list[str] = []

    def rest(request: httpx.Request) -> httpx.Response:
        requests.append(f"{request.method} {request.url.path}")
        if request.method == "GET":
            return httpx.Response(200, content=b"snapshot-bytes")
        assert request.content == b"snapshot-bytes"
        body = {"type": "error", "v": 1, "code": "session_state", "message": "another frame encoder", "fatal": False}
        return httpx.Response(409, json=body)

    async def scenario() -> list[SessionReset]:
        policy = ReconnectPolicy(on_session_lost=SessionLoss.RESTORE_SNAPSHOT)
        async with AsyncClient("http://fake", ws_connector=server.connect, transport=httpx.MockTransport(rest)) as c:
            async with c.stream(STREAM, reconnect=policy) as stream:
                await stream.send(*_frame(0))
                assert await stream.fetch_snapshot() == b"snapshot-bytes"
                for i in range(1, 6):
                    await stream.send(*_frame(i))
                return stream.resets

    [reset] = asyncio.run(scenario())
    assert requests == ["GET /v1/sessions/s1/snapshot", "POST /v1/sessions/restore"]
    assert (reset.lost_session_id, reset.session_id, reset.restored) == ("s1", "s2", False)
    assert "could not restore the last snapshot (session_state: another frame encoder (HTTP 409))" in caplog.text


def test_async_stream_session_lost_with_fail_policy_ends_the_stream() -> None:
    server = FakeServer(drop_after=2, restart=True)

    async def scenario() -> None:
        async with AsyncClient("http://fake", ws_connector=server.connect) as client:
            policy = ReconnectPolicy(on_session_lost=SessionLoss.FAIL)
            async with client.stream(STREAM, reconnect=policy) as stream:
                for i in range(5):
                    await stream.send(*_frame(i))

    with pytest.raises(ConnectionLost, match="could not resume session s1: session_not_found"):
        asyncio.run(scenario())


def test_async_stream_failing_reset_observer_does_not_end_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    server = FakeServer(drop_after=2, restart=True)

    def observer(reset: SessionReset) -> None:
        raise RuntimeError("observer bug")

    async def scenario() -> int:
        async with AsyncClient("http://fake", ws_connector=server.connect) as client:
            async with client.stream(STREAM, on_reset=observer) as stream:
                for i in range(5):
                    await stream.send(*_frame(i))
                return stream.stats.frames_sent

    assert asyncio.run(scenario()) == 5
    assert "the on_reset callback failed" in caplog.text


def test_async_stream_outage_longer_than_the_reconnect_timeout_ends_with_connection_lost() -> None:
    server = FakeServer(drop_after=2)
    attempts: list[float] = []

    async def connect(url: str, headers: dict[str, str]) -> FakeConnection:
        if server.connections >= 1:  # the server stays down after the first connection drops
            attempts.append(time.monotonic())
            raise TransportClosed(1006, "connection refused")
        return await server.connect(url, headers)

    async def scenario() -> None:
        policy = ReconnectPolicy(timeout_s=0.6, backoff_s=0.05, max_backoff_s=0.2)
        async with AsyncClient("http://fake", ws_connector=connect) as client:
            async with client.stream(STREAM, reconnect=policy) as stream:
                for i in range(5):
                    await stream.send(*_frame(i))

    with pytest.raises(ConnectionLost, match=r"within 0.6 s \(\d+ attempts; ReconnectPolicy.timeout_s\)"):
        asyncio.run(scenario())
    assert len(attempts) >= 4  # backoff from 0.05 s doubling to 0.2 s within 0.6 s
    assert 0.55 <= attempts[-1] - attempts[0] <= 1.5


def test_reconnect_policy_delays_back_off_exponentially_with_jitter_up_to_the_cap() -> None:
    delays = list(itertools.islice(ReconnectPolicy(backoff_s=0.2, max_backoff_s=1.0).delays(random.Random(0)), 6))
    ceilings = [0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule
    assert ReconnectPolicy().timeout_s >= 30.0  # outlasts a graceful server drain (about 15 s by default)


def test_reconnect_policy_refuses_non_positive_times() -> None:
    with pytest.raises(ValueError, match=r"timeout_s must be > 0, got 0; max_backoff_s \(0.1\) must be >= backoff_s"):
        ReconnectPolicy(timeout_s=0, backoff_s=0.2, max_backoff_s=0.1)


def test_async_stream_counts_latency_per_answered_frame() -> None:
    server = FakeServer()

    async def scenario() -> tuple[int, float | None, int]:
        async with AsyncClient("http://fake", ws_connector=server.connect) as client:
            async with client.stream(STREAM) as stream:
                for i in range(5):
                    await stream.send(*_frame(i))
                    assert (await stream.next_prediction(timeout=2.0)) is not None
                return stream.stats.predictions, stream.stats.latency_ms(50), stream.stats.frames_sent

    predictions, p50, sent = asyncio.run(scenario())
    assert predictions == 5 and sent == 5
    assert p50 is not None and 0 < p50 < 1000


def test_async_stream_send_after_close_raises_stream_closed() -> None:
    async def scenario() -> None:
        async with AsyncClient("http://fake", ws_connector=FakeServer().connect) as client:
            stream = client.stream(STREAM)
            await stream.open()
            await stream.close()
            await stream.send(*_frame(0))

    with pytest.raises(StreamClosed, match="closed"):
        asyncio.run(scenario())


def test_async_stream_refused_hello_raises_server_error_with_code() -> None:
    async def connect(url: str, headers: dict[str, str]) -> FakeConnection:
        conn = FakeConnection(FakeServer(), 1)

        async def refuse(data: bytes | str) -> None:
            err = ErrorOut(code=ErrorCode.TOO_MANY_SESSIONS, message="expected at most 1 session, got 2", fatal=True)
            await conn.outbox.put(pack(err))

        conn.send = refuse  # type: ignore[method-assign]
        return conn

    async def scenario() -> None:
        async with AsyncClient("http://fake", ws_connector=connect) as client:
            await client.stream(STREAM).open()

    with pytest.raises(ServerError, match="too_many_sessions: expected at most 1 session"):
        asyncio.run(scenario())


def test_rest_error_body_becomes_server_error_with_status_code_and_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/sessions/nope"
        body = {"type": "error", "v": 1, "code": "session_not_found", "message": "no session 'nope'", "fatal": False}
        return httpx.Response(404, json=body)

    async def scenario() -> None:
        async with AsyncClient("http://fake", transport=httpx.MockTransport(handler)) as client:
            await client.session("nope")

    with pytest.raises(ServerError, match="session_not_found: no session 'nope' \\(HTTP 404\\)") as info:
        asyncio.run(scenario())
    assert info.value.status == 404 and info.value.code == "session_not_found"


def test_client_rejects_a_url_without_scheme() -> None:
    with pytest.raises(ValueError, match="expected a server URL starting with http"):
        Client("localhost:8000")


def test_sync_client_streams_frames_and_reads_rest_through_the_same_core() -> None:
    server = FakeServer()

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer k"
        return httpx.Response(200, json={"status": "ok", "ready": True, "version": "0"})

    with Client("http://fake", token="k", transport=httpx.MockTransport(handler), ws_connector=server.connect) as c:
        assert c.health().ready is True
        with c.stream(STREAM) as stream:
            seqs = [stream.send(*_frame(i)) for i in range(3)]
            got = [stream.next_prediction(timeout=2.0) for _ in seqs]
    assert seqs == [0, 1, 2]
    assert [p.frame_seq for p in got if p is not None] == [0, 1, 2]
    assert server.hellos[0].width == 8 and server.hellos[0].depth_scale == 0.001


def test_clients_package_imports_neither_torch_nor_fastapi() -> None:
    code = (
        "import sys, json\n"
        "import clients, clients.sdk, clients.timeline, clients.stream_cli, clients.score_cli\n"
        "print(json.dumps([m for m in ('torch', 'fastapi', 'starlette', 'uvicorn') if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def _resume_after_loss(server: FakeServer, policy: ReconnectPolicy) -> StreamStats:
    async def scenario() -> StreamStats:
        async with AsyncClient("http://fake", ws_connector=server.connect) as client:
            async with client.stream(STREAM, reconnect=policy) as stream:
                for i in range(10):
                    await stream.send(*_frame(i))
                await stream.drain(timeout=5.0)
                return stream.stats

    return asyncio.run(scenario())


def test_async_stream_resends_after_a_resume_exactly_the_frames_after_the_servers_last_ts() -> None:
    server = FakeServer(drop_after=4, vanish=2)  # frames 2 and 3 vanish, the send of 4 fails
    stats = _resume_after_loss(server, ReconnectPolicy(timeout_s=5.0))
    assert [f.seq for f in server.frames] == list(range(10))  # each once: a duplicate would be a bad_timestamp
    assert (stats.frames_resent, stats.frames_lost, stats.errors, stats.frames_sent) == (3, 0, 0, 10)
    assert stats.summary()["frames_resent"] == 3 and stats.summary()["frames_lost"] == 0


def test_async_stream_counts_frames_older_than_its_replay_buffer_as_lost(caplog: pytest.LogCaptureFixture) -> None:
    server = FakeServer(drop_after=4, vanish=2)
    stats = _resume_after_loss(server, ReconnectPolicy(timeout_s=5.0, replay_s=0.15))  # frames 0.1 s apart: 2 kept
    assert [f.seq for f in server.frames] == [0, 1, 3, *range(4, 10)]
    assert (stats.frames_resent, stats.frames_lost, stats.errors) == (2, 1, 0)
    assert "1 frames sent after ts 0.2 are lost: they had left the replay buffer" in caplog.text


def test_replay_buffer_keeps_the_last_seconds_within_its_bytes_and_counts_a_loss_once() -> None:
    from clients.sdk.replay import ReplayBuffer, SentFrame

    buffer = ReplayBuffer(max_s=1.0, max_bytes=35)
    for i in range(10):
        buffer.add(SentFrame(i, 0.25 * i, bytes(10)))
    assert len(buffer) == 3 and buffer.nbytes == 30  # 35 bytes hold 3 frames of 10; 1 s would hold 5
    replay = buffer.after(1.0)  # the server has frames up to seq 4
    assert [f.seq for f in replay.frames] == [7, 8, 9] and (replay.lost, replay.lost_is_lower_bound) == (2, False)
    again = buffer.after(1.0)
    assert [f.seq for f in again.frames] == [7, 8, 9] and again.lost == 0  # reported once
    assert [f.seq for f in buffer.after(2.0).frames] == [9]
    buffer.clear()
    assert len(buffer) == 0 and buffer.after(None).frames == [] and buffer.after(None).lost == 0


def test_reconnect_policy_refuses_a_negative_replay_buffer() -> None:
    with pytest.raises(ValueError, match=r"replay_s must be >= 0, got -1; replay_bytes must be >= 0, got -5"):
        ReconnectPolicy(replay_s=-1, replay_bytes=-5)
