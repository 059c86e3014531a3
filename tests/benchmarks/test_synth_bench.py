"""The synthetic-world benchmark runs as a command and names the machine it measured."""

from __future__ import annotations

import pytest

from benchmarks import synth_bench


def test_synth_bench_prints_a_table_naming_the_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert synth_bench.main(["--sequences", "1", "--frames", "3", "--width", "32", "--height", "24"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("machine: ") and "cores" in out and "frames/s" in out
    assert "| write dataset, 2 workers" in out and "| render only, 1 process" in out
