"""`r3d-export bench`: a short run on the tiny bundle writes the table and the JSON with ratios and the machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export.cli import main


def test_bench_writes_table_and_json_with_ratios_against_eager(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    argv = ["bench", str(tiny_bundle), "--json", str(out), "--only", "pytorch cpu", "onnxruntime cpu",
            "--encoder-batches", "1,2", "--lengths", "8,100", "--repeats", "2", "--warmup", "0"]  # fmt: skip
    assert main(argv) == 0

    result = json.loads(out.read_text())
    cells = {(r["backend"], r["graph"], r["batch"], r["T"]) for r in result["rows"]}
    assert cells == {
        (b, "frame_encoder", n, None) for b in ("pytorch cpu fp32", "onnxruntime cpu fp32") for n in (1, 2)
    } | {(b, "anticipator", 1, 8) for b in ("pytorch cpu fp32", "onnxruntime cpu fp32")}
    for row in result["rows"]:
        assert row["median_ms"] > 0 and row["p95_ms"] >= row["median_ms"] and row["runs"] == 2
        if row["backend"] == "pytorch cpu fp32":
            assert row["speedup_vs_eager"] == 1.0
    assert result["machine"]["versions"]["onnxruntime"] and result["machine"]["cpu"]
    assert {"reason": "T=100 exceeds max_len=64", "backend": "onnxruntime cpu fp32"} in result["skipped"]
    table = capsys.readouterr().out
    assert "| onnxruntime cpu fp32 | 2 |" in table and "skipped: T=100 exceeds max_len=64" in table
    assert out.with_suffix(".md").read_text() in table
