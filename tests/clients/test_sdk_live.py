"""The SDK against the real service (uvicorn on loopback): streaming with no loss, REST views of the same session,
resuming a session on a new connection, a connection cut by a proxy (the SDK resumes and re-sends only the frames
the server lacks), and the async core used directly."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

import pytest

from clients.sdk import AsyncClient, Backpressure, Client, ReconnectPolicy, ServerError, SessionCreate
from tests.clients.conftest import API_KEY, CLASSES, FPS, H, W, pattern_frame

STREAM = SessionCreate(width=W, height=H, depth_scale=0.001, tick_hz=FPS, backpressure=Backpressure.BLOCK)


def test_sync_stream_replays_frames_and_gets_one_prediction_per_tick_in_order(live_url: str) -> None:
    with Client(live_url, token=API_KEY) as client:
        assert client.model_info().classes == CLASSES
        with client.stream(STREAM) as stream:
            for i in range(30):
                stream.send_frame(pattern_frame(i))
            preds = [*stream.pending(), *stream.drain(timeout=30.0)]
            session_id = stream.session_id
            assert session_id is not None
            public = client.session(session_id)
            latest = client.latest_prediction(session_id)
        assert [p.frame_seq for p in preds] == list(range(30))  # 15 Hz ticks on a 15 fps stream: every frame
        assert [p.seq for p in preds] == list(range(preds[0].seq, preds[0].seq + 30))  # none lost
        assert all(p.current.label in CLASSES and p.model_id == preds[0].model_id for p in preds)
        assert public.counters.received == 30 and public.counters.dropped == 0 and public.predictions == 30
        assert latest is not None and latest.seq == preds[-1].seq
        assert stream.stats.frames_sent == 30 and stream.stats.latency_ms(50) is not None
        with pytest.raises(ServerError) as info:  # bye closed the session
            client.session(session_id)
        assert info.value.status == 404 and info.value.code == "session_not_found"


def test_stream_closed_without_bye_resumes_with_its_token_window(live_url: str) -> None:
    with Client(live_url, token=API_KEY) as client:
        first = client.stream(STREAM)
        first.open()
        for i in range(10):
            first.send_frame(pattern_frame(i))
        first.drain(timeout=30.0)
        first.close(end_session=False)
        assert first.session_id is not None
        with client.stream(STREAM, session_id=first.session_id) as resumed:
            welcome = resumed.inner.welcome
            assert welcome is not None and welcome.resumed is True and welcome.window_frames == 10
            for i in range(10, 15):
                resumed.send_frame(pattern_frame(i))
            preds = resumed.drain(timeout=30.0)
        assert preds[-1].frame_seq == 4  # the new connection numbers its own frames
        assert preds[-1].window.frames == 15  # ...but the window continued from the first connection


def test_async_client_streams_and_lists_its_session(live_url: str) -> None:
    async def scenario() -> tuple[int, list[str], str]:
        async with AsyncClient(live_url, token=API_KEY) as client:
            async with client.stream(STREAM) as stream:
                for i in range(5):
                    await stream.send_frame(pattern_frame(i))
                preds = await stream.drain(timeout=30.0)
                listed = [s.id for s in (await client.sessions()).sessions]
                assert stream.session_id is not None
                return len(preds), listed, stream.session_id

    count, listed, session_id = asyncio.run(scenario())
    assert count == 5 and session_id in listed


def test_rest_without_api_key_is_unauthorized(live_url: str) -> None:
    with Client(live_url) as client, pytest.raises(ServerError, match="unauthorized: missing API key"):
        client.sessions()


class CuttableProxy:
    """A TCP proxy on loopback in front of the server, standing in for the network: `swallow()` makes the open
    connections lose what the client sends from then on, `cut()` ends them without a WebSocket close (the client
    sees 1006, the server a disconnect), as a failing link does. New connections go through."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.links: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            server, swallowing = socket.create_connection(self.upstream), threading.Event()
            self.links.append((client, server, swallowing))
            threading.Thread(target=self._pump, args=(client, server, swallowing), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, threading.Event()), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, swallowing: threading.Event) -> None:
        while True:
            try:
                data = src.recv(1 << 16)
                if not data:
                    break
                if not swallowing.is_set():
                    dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def swallow(self) -> None:
        for _, _, swallowing in self.links:
            swallowing.set()

    def cut(self) -> None:
        for client, server, _ in self.links:
            for s in (client, server):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        self.links.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.mark.parametrize(
    ("vanished", "replay_s", "resent", "lost"),
    [(0, 5.0, 0, 0), (3, 5.0, 3, 0), (3, 0.1, 2, 1)],  # frames 1/15 s apart: 0.1 s keeps 2
    ids=["drop-server-had-all", "drop-lost-3-in-flight", "drop-lost-3-buffer-kept-2"],
)
def test_a_dropped_connection_resumes_and_resends_only_what_the_server_lacks(
    live_url: str, vanished: int, replay_s: float, resent: int, lost: int
) -> None:
    """The server stays up (in-memory resume): frames it had are never sent twice (each would be a bad_timestamp
    error), frames lost on the way are sent again before the next new frame, and one older than the replay buffer
    is counted as lost."""
    proxy = CuttableProxy(live_url)
    policy = ReconnectPolicy(timeout_s=30.0, backoff_s=0.05, max_backoff_s=0.5, replay_s=replay_s)
    try:
        with Client(proxy.url, token=API_KEY) as client, Client(live_url, token=API_KEY) as rest:
            with client.stream(STREAM, reconnect=policy) as stream:
                for i in range(20):
                    stream.send_frame(pattern_frame(i))
                preds = [*stream.pending(), *stream.drain(timeout=30.0)]  # the server has frames 0-19
                proxy.swallow()
                for i in range(20, 20 + vanished):
                    stream.send_frame(pattern_frame(i))
                proxy.cut()
                for i in range(20 + vanished, 30):  # the first waits for the resume and its re-sends
                    stream.send_frame(pattern_frame(i))
                preds += [*stream.pending(), *stream.drain(timeout=30.0)]
                assert stream.session_id is not None
                counters = rest.session(stream.session_id).counters
                notice = [n for n in stream.inner.notices if n.code == "session_resumed"]
    finally:
        proxy.close()
    stats = stream.stats
    assert stats.reconnects == 1 and stats.session_resets == 0
    assert [n.details["last_ts"] for n in notice] == [pytest.approx(19 / FPS)]
    assert (stats.frames_resent, stats.frames_lost, stats.errors, stats.frames_sent) == (resent, lost, 0, 30)
    missing = list(range(20, 20 + lost))  # the oldest of the vanished frames, gone from the replay buffer
    assert [p.frame_seq for p in preds] == [i for i in range(30) if i not in missing]  # each frame answered once
    assert (counters.received, counters.rejected, counters.dropped) == (30 - lost, 0, 0)
