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
    views = {(r["color_view"], r["batch"]): r for r in res["colour_views"]}
    assert sorted(views) == [("frame", 1), ("frame", 2), ("frame+person", 1), ("frame+person", 2)]
    assert views[("frame", 2)]["vs_frame"] == 1.0 and views[("frame+person", 2)]["ms_per_frame"] > 0
    assert "| frame+person | 2 |" in out
