"""The cluster benchmark's report and its refusal of an unreachable Redis (its end-to-end run starts a Ray cluster
and deploys twice, minutes on 2 cores: it is run by hand, docs/scale-out.md; tests/server/test_cluster.py covers the
path it measures)."""

from __future__ import annotations

import argparse

import pytest

from benchmarks import cluster_scale
from tests.redis_server import free_port


def test_cluster_scale_table_gives_each_path_its_ratio_to_one_process() -> None:
    args = argparse.Namespace(streams=2, fps=15.0, seconds=15.0, tick_hz=5.0, ray_cpus=2.0, send_size="full")
    row = {"encoded_fps": 15.0, "p50_ms": 100.0, "p90_ms": 150.0, "late_sends": 0.0, "errors": 0.0}
    slower = {**row, "encoded_fps": 7.5, "p50_ms": 250.0}
    profiles = {1: {"encode": (40.0, 12), "journal": (4.25, 3)}, 2: {"encode": (20.0, 24)}}
    text = cluster_scale.table(args, row, {1: slower, 2: row}, profiles, [3.0, 5.0, 4.0])
    assert "| r3d-serve (one process) | 15.0 | 100 ms | 150 ms | 0 | 0 | 1.00 |" in text
    assert "| cluster, 1 session replica | 7.5 | 250 ms | 150 ms | 0 | 0 | 2.50 |" in text
    assert "| cluster, 2 session replicas | 15.0 | 100 ms | 150 ms | 0 | 0 | 1.00 |" in text
    assert text.startswith("machine: ") and "median 4.0 s (each: 3.0, 5.0, 4.0 s)" in text
    # the per-stage profile: a column per configuration, "-" where a stage has no samples, the client's p50 last
    assert "| encode | FrameEncoder: the batch's model call | 40.0 (12) | 20.0 (24) |" in text
    assert "| journal | session replica: the journal write to the session store | 4.2 (3) | - |" in text
    assert text.endswith("| client latency p50 | the client: frame sent -> its prediction received | 250 | 100 |")


def test_cluster_scale_without_kills_has_no_recovery_line() -> None:
    args = argparse.Namespace(streams=2, fps=15.0, seconds=15.0, tick_hz=5.0, ray_cpus=2.0, send_size="model")
    row = {"encoded_fps": 15.0, "p50_ms": 100.0, "p90_ms": 150.0, "late_sends": 0.0, "errors": 0.0}
    assert "recovery" not in cluster_scale.table(args, row, {1: row}, {1: {}}, [])


def test_cluster_scale_says_when_redis_is_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    assert cluster_scale.main(["--redis", f"redis://127.0.0.1:{free_port()}/0"]) == 2
    assert "cannot reach" in capsys.readouterr().err
