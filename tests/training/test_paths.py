"""Paths recorded in kept files are relative to the working directory, never absolute."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.paths import recorded_command, recorded_path


def test_recorded_path_of_an_absolute_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert recorded_path(tmp_path / "data" / "synth") == "data/synth"
    assert recorded_path(tmp_path.parent / "runs" / "a.safetensors") == "../runs/a.safetensors"


def test_recorded_path_keeps_a_relative_path_as_given() -> None:
    assert recorded_path("data/synth") == "data/synth"


def test_recorded_command_relativises_only_the_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["--dataset", str(tmp_path / "data" / "synth"), "--out", "reports/synthetic", "--epochs", "15"]
    assert recorded_command("python -m training.report", argv) == (
        "python -m training.report --dataset data/synth --out reports/synthetic --epochs 15"
    )
