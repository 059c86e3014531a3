"""The GPU load script runs end to end on the CPU for one stream (its GPU figures need a lent GPU machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import gpu_load
from tests.server.conftest import tiny_config


@pytest.mark.slow
def test_gpu_load_on_cpu_for_two_streams_over_two_servers_writes_its_table(tmp_path: Path) -> None:
    import torch

    from model import R3D, save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", R3D(tiny_config()).eval())
    argv = ["--out", str(tmp_path / "out"), "--model", str(ckpt), "--device", "cpu", "--streams", "2,4", "--servers",
            "2", "--seconds", "2", "--fps", "15", "--client-processes", "1", "--decode-threads", "1"]  # fmt: skip
    assert gpu_load.main(argv) == 0
    result = json.loads((tmp_path / "out" / "gpu_load.json").read_text())
    assert result["machine"]["cpus"] >= 1 and result["device"] == "cpu"
    row = result["rows"][0]
    assert row["streams"] == 2 and row["servers"] == 2  # stops at the first count that misses the goal
    assert [r["streams"] for r in row["per_server"]] == [1, 1]
    assert row["frames_sent_per_s"] == pytest.approx(sum(r["frames_sent_per_s"] for r in row["per_server"]))
    assert row["latency_ms"]["p99"] == max(r["latency_ms"]["p99"] for r in row["per_server"])
    table = (tmp_path / "out" / "gpu_load.md").read_text()
    assert "| streams | servers | frames used/s |" in table and "\n| 2 | 2 | " in table


def _report(streams: int, p99: float, dropped: int, verdict: str) -> dict[str, object]:
    return {"streams": streams, "frames_sent_per_s": 30.0 * streams, "frames_used_per_s": 15.0 * streams,
            "predictions_per_s": 5.0 * streams, "dropped": dropped, "unanswered": 0, "server_cpu_cores": 0.5,
            "loadgen_cpu_cores": 0.25, "encode_batch_mean": 4.0, "encode_ms_per_batch": 8.0 * streams,
            "anticipate_batch_mean": 2.0, "anticipate_ms_per_batch": 3.0, "decode_ms_per_frame": 1.0,
            "latency_ms": {"p50": p99 / 2, "p95": p99 - 1, "p99": p99, "max": p99 + 1}, "verdict": verdict}  # fmt: skip


def test_merge_sums_counts_keeps_the_worst_latency_and_meets_the_goal_only_when_every_server_did() -> None:
    met = _report(4, 60.0, 0, "goal met: p99 60.0 ms")
    merged = gpu_load.merge([met, _report(4, 80.0, 0, "goal met: p99 80.0 ms")])
    assert (merged["streams"], merged["frames_sent_per_s"], merged["server_cpu_cores"]) == (8, 240.0, 1.0)
    assert merged["latency_ms"] == {"p50": 40.0, "p95": 79.0, "p99": 80.0, "max": 81.0}
    assert merged["encode_ms_per_batch"] == 32.0 and merged["servers"] == 2
    assert merged["verdict"] == "goal met on every server: worst p99 80.0 ms, no drops"
    missed = gpu_load.merge([met, _report(4, 150.0, 3, "goal missed (p99 150.0 ms, 3 dropped)")])
    assert (
        missed["dropped"] == 3 and missed["verdict"] == "goal missed (server 1: goal missed (p99 150.0 ms, 3 dropped))"
    )
    assert gpu_load.merge([met])["servers"] == 1
