"""A model with a person mask (model/person.py) served live: each session keeps its own PersonLocator and feeds it
every frame it takes, in order, so the served depth inputs equal the feature cache's for the same frames."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from model import R3D, Preprocessing, prepare_inputs, save_checkpoint
from server.app import create_app
from server.protocol import encode_frame
from server.serving import BackgroundServer
from tests.server.conftest import make_settings, tiny_config
from tests.server.helpers import H, W, open_ws, recv_until, start

PRE = Preprocessing(image_size=(120, 160), depth_size=(24, 32), depth_input="metric", person_mask="background")


def walker_frame(i: int) -> tuple[np.ndarray, np.ndarray]:
    """A wall at 3 m and a 'person' (a nearer box at 1.8 m) walking left to right."""
    rgb = np.full((H, W, 3), 90, np.uint8)
    depth = np.full((H, W), 3000, np.uint16)
    left = 10 + 9 * i
    depth[H // 4 : H // 4 + H // 2, left : left + W // 12] = 1800
    rgb[H // 4 : H // 4 + H // 2, left : left + W // 12] = 200
    return rgb, depth


@pytest.fixture(scope="module")
def person_server(
    checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, object]]:
    cfg = tiny_config()
    cfg.preprocessing, cfg.depth_encoder = PRE, "person"
    torch.manual_seed(0)
    path = save_checkpoint(checkpoints["base"].parent / "person.safetensors", R3D(cfg).eval())
    settings = make_settings(path, tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("jobs"))
    app = create_app(settings)
    with BackgroundServer(app, settings) as url:
        yield "ws" + url[len("http") :] + "/v1/stream", app


def test_a_session_feeds_its_person_locator_every_frame_in_order(person_server: tuple[str, object]) -> None:
    url, app = person_server
    n = 8
    with open_ws(url) as conn:
        welcome = start(conn, tick_hz=15.0, backpressure="block")
        for i in range(n):
            conn.send(encode_frame(*walker_frame(i), i / 15.0, i))
        predictions = [recv_until(conn, "prediction")[0] for _ in range(n)]
        session = app.state.runtime.registry.get(welcome.session_id)  # type: ignore[attr-defined]
        locator = session.person_locator(PRE)
    assert [p.frame_seq for p in predictions] == list(range(n))
    reference = PRE.locator()
    masks = [prepare_inputs(*walker_frame(i), 0.001, PRE, reference)[1][2] for i in range(n)]
    assert masks[0].sum() == 0 and all(m.sum() > 0 for m in masks[1:])  # the walker is found once the wall is seen
    np.testing.assert_array_equal(locator.room, reference.room)  # the same room: every frame, in order
