"""r3d-stream --no-color: an RGB-D recording sent as a depth-only stream (hello color false, frames without colour)
to a live server with a depth-only model; the same command against an RGB-D model fails with the server's reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.stream_cli import main
from tests.clients.conftest import API_KEY, CLASSES, FPS


def test_no_color_streams_depth_only_to_a_depth_only_model(
    depth_only_url: str, recording: tuple[Path, Path], tmp_path: Path
) -> None:
    summary_path = tmp_path / "summary.json"
    rc = main([str(recording[0]), "--server", depth_only_url, "--token", API_KEY, "--fast", "--no-color",
               "--summary", str(summary_path), "--tick-hz", "15", "--no-colour", "--print-hz", "0"])  # fmt: skip
    assert rc == 0
    summary = json.loads(summary_path.read_text())
    assert summary["frames_sent"] == 45 and summary["server_counters"]["rejected"] == 0
    assert summary["predictions"] >= 40


def test_no_color_against_an_rgbd_model_fails_with_color_required(
    live_url: str, recording: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main([str(recording[0]), "--server", live_url, "--token", API_KEY, "--fast", "--no-color", "--no-colour"])
    assert rc != 0
    assert "color_required" in capsys.readouterr().err


def test_a_source_without_colour_is_streamed_depth_only_without_the_flag(depth_only_url: str, tmp_path: Path) -> None:
    from rgbd.dataset import DatasetWriter
    from rgbd.frame import Frame
    from tests.clients.conftest import pattern_frame

    writer = DatasetWriter(tmp_path / "ds", name="d", classes=CLASSES, fps=FPS, source="test")
    frames = [pattern_frame(i) for i in range(20)]
    writer.add_sequence("clip", (Frame(None, f.depth, f.depth_scale, f.timestamp, f.index) for f in frames), fps=FPS)
    summary_path = tmp_path / "summary.json"
    rc = main([str(tmp_path / "ds" / "sequences" / "clip"), "--server", depth_only_url, "--token", API_KEY, "--fast",
               "--summary", str(summary_path), "--tick-hz", "15", "--no-colour", "--print-hz", "0"])  # fmt: skip
    assert rc == 0
    summary = json.loads(summary_path.read_text())
    assert summary["frames_sent"] == 20 and summary["server_counters"]["rejected"] == 0
