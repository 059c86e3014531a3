"""The SDK against the real service (uvicorn on loopback): streaming with no loss, REST views of the same session,
resuming a session on a new connection, and the async core used directly."""

from __future__ import annotations

import asyncio

import pytest

from clients.sdk import AsyncClient, Backpressure, Client, ServerError, SessionCreate
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
