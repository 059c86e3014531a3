"""Finding 8 (server side): the service's own signals are honest. Modality health flags a noise or black colour
stream and a depth stream without readings; both graphs are warmed up before /readyz says ready; ``r3d-serve DIR``
serves the folder's one checkpoint (the suite's server is started that way) and refuses an ambiguous folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from server.cli import main
from server.protocol import encode_frame
from tests.server.bad_input.conftest import Served
from tests.server.helpers import BYE, open_ws, recv_until, start, synthetic_frame

RNG = np.random.default_rng(11)


def _noise_colour(i: int) -> tuple[np.ndarray, np.ndarray]:
    return RNG.integers(0, 256, (120, 160, 3), dtype=np.uint8), synthetic_frame(i)[1]


def _black_colour(i: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((120, 160, 3), np.uint8), synthetic_frame(i)[1]


def _no_depth_readings(i: int) -> tuple[np.ndarray, np.ndarray]:
    depth = np.zeros((120, 160), np.uint16)
    depth[60, 80:83] = 1500  # a few stuck pixels: not refused as all-zero, yet no usable depth
    return synthetic_frame(i)[0], depth


STREAMS = {
    "live": (synthetic_frame, "ok", "ok"),
    "noise_colour": (_noise_colour, "noise", "ok"),
    "black_colour": (_black_colour, "blank", "ok"),
    "no_depth_readings": (_no_depth_readings, "ok", "blank"),
}


@pytest.mark.parametrize("case", sorted(STREAMS))
def test_modality_health_flags_a_dead_blank_or_noise_stream(served: Served, case: str) -> None:
    make, rgb_status, depth_status = STREAMS[case]
    with open_ws(served.ws_url) as ws:
        start(ws, backpressure="block", tick_hz=15)
        for i in range(16):  # a second of stream time: health is measured once a second
            ws.send(encode_frame(*make(i), i / 15, i))
        last = [recv_until(ws, "prediction")[0] for _ in range(16)][-1]
        ws.send(BYE)
    assert last.modality is not None and last.modality.frames >= 8
    assert (last.modality.rgb_status, last.modality.depth_status) == (rgb_status, depth_status), last.modality
    served.assert_still_serving()


def test_both_graphs_are_warmed_up_before_the_server_says_ready(served: Served) -> None:
    log = served.log().splitlines()
    warmed = next(i for i, line in enumerate(log) if "model default warmed up in" in line)
    ready = next(i for i, line in enumerate(log) if "Application startup complete" in line)
    assert warmed < ready  # /readyz answers 200 only once the lifespan has finished, warm-up included
    served.assert_still_serving()


def test_serve_refuses_a_folder_without_exactly_one_checkpoint(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a.safetensors", "b.safetensors"):
        shutil.copy(checkpoints["base"], tmp_path / name)
    code = main([str(tmp_path), "--jobs-dir", str(tmp_path / "jobs")])
    message = capsys.readouterr().err
    assert code == 2
    assert "expected exactly one *.safetensors file, found 2 ['a.safetensors', 'b.safetensors']" in message
