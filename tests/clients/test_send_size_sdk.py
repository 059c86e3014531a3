"""The SDK's send_size 'model' through its transport seam (no server): it resizes to the size the welcome announces,
follows a model reload's new size, and refuses a server that announces none."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from clients.sdk import AsyncClient, ServerError, SessionCreate
from server.protocol import (
    Backpressure,
    FrameIn,
    Hello,
    ModelInfo,
    Notice,
    NoticeCode,
    SendSize,
    Welcome,
    decode_color,
    pack,
    parse_client_message,
)

STREAM = SessionCreate(width=64, height=48, depth_scale=0.001, send_size=SendSize.MODEL)


def model_info(image_size: tuple[int, int] | None, depth_size: tuple[int, int] | None) -> ModelInfo:
    return ModelInfo(model_id="m", frame_encoder_id="fe", backend="fake", classes=["a"], fps=15.0, window_s=8.0,
                     window_frames=120, horizon_s=8.0, server_version="0", image_size=image_size,
                     depth_size=depth_size, depth_range_m=(0.1, 10.0))  # fmt: skip


class ScriptedConnection:
    """Answers the hello with a welcome for `model` and the first frame with `after_first_frame`; records frames."""

    def __init__(self, model: ModelInfo, after_first_frame: list[Notice]) -> None:
        self.model, self.after_first_frame = model, after_first_frame
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.frames: list[FrameIn] = []

    async def connect(self, url: str, headers: dict[str, str]) -> ScriptedConnection:
        return self

    async def send(self, data: bytes | str) -> None:
        msg = parse_client_message(data)
        if isinstance(msg, Hello):
            await self.outbox.put(pack(Welcome(session_id="s1", resumed=False, window_frames=0, tick_hz=5.0,
                                               backpressure=Backpressure.LATEST_WINS, queue_size=4,
                                               max_message_bytes=1 << 20, model=self.model)))  # fmt: skip
        elif isinstance(msg, FrameIn):
            self.frames.append(msg)
            if len(self.frames) == 1:
                for notice in self.after_first_frame:
                    await self.outbox.put(pack(notice))

    async def recv(self) -> bytes | str:
        return await self.outbox.get()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


def _send_two_frames(conn: ScriptedConnection) -> None:
    rgb, depth = np.full((48, 64, 3), 90, np.uint8), np.full((48, 64), 1500, np.uint16)

    async def scenario() -> None:
        async with AsyncClient("http://fake", ws_connector=conn.connect) as client:
            async with client.stream(STREAM) as stream:
                await stream.send(rgb, depth, 0.0)
                await asyncio.sleep(0.05)  # the stream's reader takes the notice, if any
                await stream.send(rgb, depth, 0.1)

    asyncio.run(scenario())


def test_send_size_model_resizes_to_the_welcome_size_and_follows_a_reload() -> None:
    reload = Notice(code=NoticeCode.MODEL_RELOADED, message="reloaded",
                    details={"model": model_info((6, 8), (3, 4)).model_dump(mode="json")})  # fmt: skip
    conn = ScriptedConnection(model_info((12, 16), (6, 8)), [reload])
    _send_two_frames(conn)
    first, second = conn.frames
    assert decode_color(first, (12, 16)).shape == (12, 16, 3) and first.depth_shape == (6, 8)
    assert decode_color(second, (6, 8)).shape == (6, 8, 3) and second.depth_shape == (3, 4)


def test_send_size_model_against_a_server_without_input_sizes_fails_clearly() -> None:
    with pytest.raises(ServerError, match="does not announce its model's input size"):
        _send_two_frames(ScriptedConnection(model_info(None, None), []))
