"""python -m benchmarks.loadtest end to end on a tiny model: a real r3d-serve subprocess, real WebSocket streams, the
report's figures and the send-size option (the benchmark itself is a command, not a test: see the README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import loadtest
from benchmarks.loadgen import synthetic_frames


@pytest.mark.slow
def test_loadtest_two_model_size_streams_report_every_prediction_and_small_frames(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    argv = [
        "--model",
        str(checkpoints["base"]),
        "--backend",
        "pytorch",
        "--streams",
        "2",
        "--seconds",
        "3",
        "--fps",
        "15",
        "--tick-hz",
        "5",
        "--send-size",
        "model",
        "--work-dir",
        str(tmp_path),
        "--json",
        str(out),
    ]
    assert loadtest.main(argv) == 0  # fmt: skip
    report = json.loads(out.read_text())
    full_frame = len(synthetic_frames(1, 480, 640)[0])
    assert report["streams"] == 2 and report["send_size"] == "model" and report["rejected"] == 0
    assert report["errors"] == [] and report["frames_sent_per_s"] == pytest.approx(30, rel=0.2)
    assert 0 < report["bytes_per_frame"] < full_frame / 8  # 160x120 colour and 32x24 depth against 640x480
    assert report["predictions_per_s"] > 0 and report["latency_ms"]["p50"] > 0
    assert report["rss_mib_end"] > 0 and report["server_cpu_cores"] > 0
    assert "| bytes per frame " in capsys.readouterr().out


def test_profile_summary_counts_our_functions_once_per_stack_and_the_transport_as_one(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "run (threading.py:1);prepare (server/ingest.py:2);resize (model/pre.py:3);resize (model/pre.py:4) 3\n"
        "run (threading.py:1);data_received (uvicorn/ws.py:5);parse (websockets/frames.py:6) 1\n"
    )
    transport = "WebSocket transport (uvicorn, websockets)"
    assert loadtest.profile_summary(raw) == [("prepare", 0.75), ("resize", 0.75), (transport, 0.25)]
