"""r3d-stream against the real service (uvicorn on loopback) with a real RealSense .db3 recording."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import pytest

from clients.stream_cli import build_parser, main, read_labels
from tests.clients.conftest import API_KEY, CLASSES


def test_stream_cli_fast_replay_sends_every_frame_and_writes_every_prediction(
    live_url: str, recording: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db3, labels = recording
    jsonl, png, summary_path = tmp_path / "p.jsonl", tmp_path / "t.png", tmp_path / "summary.json"
    rc = main([str(db3), "--server", live_url, "--token", API_KEY, "--fast", "--jsonl", str(jsonl), "--png", str(png),
               "--summary", str(summary_path), "--labels", str(labels), "--tick-hz", "15", "--no-colour"])  # fmt: skip
    assert rc == 0
    summary = json.loads(summary_path.read_text())
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert summary["frames_sent"] == 45 and summary["client_skipped"] == 0
    assert summary["server_counters"]["received"] == 45
    assert summary["server_counters"]["dropped"] == 0 and summary["server_counters"]["rejected"] == 0
    assert (summary["reconnects"], summary["frames_resent"], summary["frames_lost"]) == (0, 0, 0)
    assert len(lines) == summary["predictions"] >= 40  # one per frame at 15 Hz, the first needs a token
    assert [p["frame_seq"] for p in lines] == sorted(p["frame_seq"] for p in lines)
    assert all(p["current"]["label"] in CLASSES for p in lines)
    assert {p["truth"] for p in lines} == set(CLASSES)  # ground truth from --labels, by frame index
    assert lines[-1]["frame_seq"] == 44 and lines[-1]["t"] == pytest.approx(44 / 15, abs=1e-3)
    image = cv2.imread(str(png))
    assert image is not None and image.shape[1] >= 600
    out = capsys.readouterr().out
    assert "45 frames sent" in out and "now: " in out and "latency: round trip p50" in out
    assert "frames sent again after a resume 0, lost 0" in out


def test_stream_cli_realtime_paces_frames_by_their_timestamps(
    live_url: str, recording: tuple[Path, Path], tmp_path: Path
) -> None:
    db3, _ = recording
    summary_path = tmp_path / "summary.json"
    t0 = time.monotonic()
    rc = main([str(db3), "--server", live_url, "--token", API_KEY, "--realtime", "--max-frames", "16",
               "--summary", str(summary_path), "--print-hz", "0"])  # fmt: skip
    elapsed = time.monotonic() - t0
    summary = json.loads(summary_path.read_text())
    assert rc == 0
    assert summary["frames_sent"] + summary["client_skipped"] == 16
    assert summary["seconds"] >= 15 / 15 * 0.95  # the 16th frame is due 1 s after the first
    assert elapsed < 30


def test_stream_cli_wrong_api_key_fails_with_the_servers_reason(
    live_url: str, recording: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main([str(recording[0]), "--server", live_url, "--token", "not-the-key-0123456789", "--fast"])
    assert rc == 1
    assert "unauthorized" in capsys.readouterr().err


def test_stream_cli_missing_source_fails_with_a_clear_message(
    live_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main([str(tmp_path / "nope.db3"), "--server", live_url, "--token", API_KEY])
    assert rc == 1
    assert "nope.db3 does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "query", "expected"),
    [("frame,timestamp,label\n0,0.0,walk\n1,0.1,\n", (1, 0.1), None),
     ("frame,label\n0,walk\n3,sit\n", (3, 0.0), "sit"),
     ("start,end,label\n0,1.5,walk\n1.5,3,sit\n", (99, 1.5), "sit")],
)  # fmt: skip
def test_read_labels_reads_frame_and_range_tables(
    tmp_path: Path, text: str, query: tuple[int, float], expected: str | None
) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    assert read_labels(path)(*query) == expected


def test_read_labels_unknown_columns_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("t,action\n0,walk\n")
    with pytest.raises(ValueError, match="expected label CSV columns frame,label or start,end,label"):
        read_labels(path)


@pytest.mark.parametrize(("flags", "fast"), [([], False), (["--realtime"], False), (["--fast"], True)])
def test_stream_cli_parser_paces_in_real_time_unless_fast_is_given(flags: list[str], fast: bool) -> None:
    assert build_parser().parse_args(["recording.db3", *flags]).fast is fast


@pytest.mark.parametrize(("depth_scale", "warned"), [("0.0001", False), ("0.0011", True)])
def test_stream_cli_image_folder_streams_at_the_given_fps_and_warns_on_an_implausible_depth_scale(
    live_url: str, capture: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, depth_scale: str, warned: bool
) -> None:
    jsonl = tmp_path / "p.jsonl"
    rc = main([str(capture), "--server", live_url, "--token", API_KEY, "--fast", "--fps", "15", "--depth-scale",
               depth_scale, "--jsonl", str(jsonl), "--tick-hz", "15", "--print-hz", "0"])  # fmt: skip
    assert rc == 0
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert lines and all(p["frame_ts"] == pytest.approx(p["frame_seq"] / 15) for p in lines)
    assert ("implausible depth scale: 0.0011 m per unit puts the median depth" in caplog.text) is warned
