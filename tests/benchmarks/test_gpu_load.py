"""The GPU load script runs end to end on the CPU for one stream (its GPU figures need a lent GPU machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import gpu_load
from tests.server.conftest import tiny_config


@pytest.mark.slow
def test_gpu_load_on_cpu_for_one_stream_writes_its_table(tmp_path: Path) -> None:
    import torch

    from model import R3D, save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", R3D(tiny_config()).eval())
    argv = ["--out", str(tmp_path / "out"), "--model", str(ckpt), "--device", "cpu", "--streams", "1,2",
            "--seconds", "2", "--fps", "15", "--client-processes", "1", "--decode-threads", "1"]  # fmt: skip
    assert gpu_load.main(argv) == 0
    result = json.loads((tmp_path / "out" / "gpu_load.json").read_text())
    assert result["machine"]["cpus"] >= 1 and result["device"] == "cpu"
    assert [row["streams"] for row in result["rows"]][:1] == [1]  # stops at the first count that misses the goal
    assert result["rows"][0]["frames_sent_per_s"] > 0
    table = (tmp_path / "out" / "gpu_load.md").read_text()
    assert "| streams | frames used/s |" in table and "\n| 1 | " in table
