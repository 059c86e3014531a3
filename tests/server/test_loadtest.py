"""python -m benchmarks.loadtest end to end on a tiny model: a real r3d-serve subprocess, real WebSocket streams, the
report's figures and the send-size option (the benchmark itself is a command, not a test: see the README)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from benchmarks import loadtest, threadcpu
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
    groups = {group: share for group, _, share in report["server_cpu_by_thread"]}
    assert sum(groups.values()) == pytest.approx(1.0, abs=0.01) and groups[threadcpu.NATIVE] < 1.0
    assert "| bytes per frame " in capsys.readouterr().out


def test_profile_summary_counts_our_functions_once_per_stack_and_the_transport_as_one(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "run (threading.py:1);prepare (server/ingest.py:2);resize (model/pre.py:3);resize (model/pre.py:4) 3\n"
        "run (threading.py:1);data_received (uvicorn/ws.py:5);parse (websockets/frames.py:6) 1\n"
    )
    transport = "WebSocket transport (uvicorn, websockets)"
    assert loadtest.profile_summary(raw) == [("prepare", 0.75), ("resize", 0.75), (transport, 0.25)]


def test_cpu_by_thread_names_python_threads_groups_pools_and_counts_the_rest_as_native() -> None:
    dump = (
        "Process 7: python -m server.cli bundle\nPython v3.11.7\n\n"
        'Thread 7 (idle): "MainThread"\n    Runner.run (asyncio/runners.py:118)\n'
        'Thread 9 (active): "r3d-decode_0"\n    prepare_frame (server/streaming/ingest.py:40)\n'
        'Thread 10 (idle): "r3d-decode_1"\n    _worker (concurrent/futures/thread.py:81)\n'
        'Thread 11 (active+gil): "r3d-inference"\n    InferenceWorker._run (server/streaming/worker.py:88)\n'
    )
    names = threadcpu.parse_dump(dump)
    assert names == {7: "MainThread", 9: "r3d-decode_0", 10: "r3d-decode_1", 11: "r3d-inference"}
    before = {7: 1.0, 9: 2.0, 10: 2.0, 11: 0.5, 12: 3.0}
    after = {7: 1.5, 9: 3.0, 10: 3.0, 11: 1.0, 12: 4.5, 13: 0.5}  # 13 started during the run
    assert threadcpu.cpu_by_thread(before, after, names) == [
        (threadcpu.NATIVE, 2.0, 0.4),
        ("r3d-decode", 2.0, 0.4),
        ("MainThread (event loop)", 0.5, 0.1),
        ("r3d-inference", 0.5, 0.1),
    ]


def test_thread_cpu_seconds_reads_this_process_threads() -> None:
    sum(i * i for i in range(200_000))  # some CPU time on this thread
    seconds = threadcpu.thread_cpu_seconds(os.getpid())
    assert threading.get_native_id() in seconds and seconds[threading.get_native_id()] > 0
    assert threadcpu.thread_cpu_seconds(2**22 + 1) == {}  # no such process
