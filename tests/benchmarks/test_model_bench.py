"""The model benchmark runs end to end at any FrameEncoder batch (it used to read a key named for batch 32 only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import model_bench


def test_model_bench_at_a_batch_other_than_32_prints_and_writes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "bench.json"
    argv = ["--windows", "4", "--repeats", "1", "--threads", "1", "--chunk", "2", "--json", str(out_json)]
    assert model_bench.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine: ") and "ms/frame at batch 2\n" in out and "| 4 |" in out
    res = json.loads(out_json.read_text())
    assert res["frame_encoder_batch"] == 2 and res["frame_encoder_ms_per_frame_batched"] > 0
    assert [row["T"] for row in res["ticks"]] == [4]
    rows = {(r["encoder"], r["batch"]): r for r in res["encoders"]}
    assert sorted(rows) == sorted((e, n) for e in model_bench.ENCODERS for n in (1, 2))
    assert rows[("service", 2)]["vs_service"] == 1.0 and rows[("colour on a person crop too", 2)]["ms_per_frame"] > 0
    assert "| depth 120x160, person crop 64x32 | 2 |" in out
