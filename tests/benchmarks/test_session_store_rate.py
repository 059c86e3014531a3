"""The durable-session write-rate benchmark runs end to end on a tiny model against a real redis-server: each journal
interval gets a row whose writes, commands and bytes come from Redis's own counters."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks import session_store_rate
from tests.redis_server import RedisServer
from tests.server.conftest import tiny_config


def test_session_store_rate_reports_redis_traffic_per_stream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from model import R3D, save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", R3D(tiny_config()).eval())
    with RedisServer(tmp_path / "redis") as redis_server:
        argv = ["--redis", redis_server.url, "--model", str(ckpt), "--backend", "pytorch", "--streams", "1",
                "--seconds", "3", "--repeats", "1", "--journal-frames", "1,4"]  # fmt: skip
        assert session_store_rate.main(argv) == 0
    out = capsys.readouterr().out
    number, kib = r" ([\d.]+) \|", r" ([\d.]+) KiB \|"
    row = re.compile(r"^\| (\d+) \|" + 3 * number + 3 * kib + 2 * number + "$", re.M)
    rows = {int(m[0]): [float(v) for v in m[1:]] for m in row.findall(out)}
    assert set(rows) == {1, 4} and out.startswith("machine: "), out
    for frames, writes, commands, kib_in, _, kib_per_frame, per_write, trip_ms in rows.values():
        assert frames > 0 and 0 < writes <= frames and commands > writes and kib_in > 0, out
        assert 1.0 < kib_per_frame < 64 and per_write > 5, out  # at least the tokens (2 x 128 float32) of a frame
        assert 0 < trip_ms < 1000, out
    # every 4 frames: each write but the claim covers at least 4 new frames (rates over the 4 s of a run, to 0.1)
    frames, writes = rows[4][:2]
    assert writes <= frames / 4 + 1 / 4 + 0.1, out


def test_session_store_rate_says_when_redis_is_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.redis_server import free_port

    assert session_store_rate.main(["--redis", f"redis://127.0.0.1:{free_port()}/0"]) == 2
    assert "cannot reach" in capsys.readouterr().err
