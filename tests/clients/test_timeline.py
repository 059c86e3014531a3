"""Terminal timeline lines and the timeline PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clients.timeline import FutureAction, TimelineEntry, plot_timeline_png, render_line, segments


def _entry(t: float = 2.0) -> TimelineEntry:
    future = (FutureAction("sit", 1.0, 2.0, 0.8), FutureAction("drink", 3.0, 1.0, 0.5))
    return TimelineEntry(t, "walk", 0.7, future, truth="walk")


def test_render_line_without_colour_places_actions_on_the_horizon_bar() -> None:
    line = render_line(_entry(), horizon_s=8.0, width=8, latency_ms=12.4)
    assert "|.ssd....|" in line
    assert "now: walk (0.70)" in line
    assert "sit +1.0s for 2.0s (0.80)" in line and "truth: walk" in line and line.endswith("12 ms")


def test_render_line_with_colour_uses_one_escape_per_run() -> None:
    line = render_line(_entry(), horizon_s=8.0, width=8, colour=True)
    assert line.count("██") == 1 and "\x1b[38;2;" in line


def test_render_line_non_positive_horizon_is_refused() -> None:
    with pytest.raises(ValueError, match="expected a positive horizon"):
        render_line(_entry(), horizon_s=0.0)


def test_segments_merges_runs_and_extends_the_last_by_the_median_gap() -> None:
    assert segments([0.0, 0.5, 1.0, 1.5], ["a", "a", "b", None]) == [(0.0, 1.0, "a"), (1.0, 1.5, "b"), (1.5, 2.0, None)]


def test_segments_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="expected as many labels as times"):
        segments([0.0, 1.0], ["a"])


def test_plot_timeline_png_writes_a_png_image(tmp_path: Path) -> None:
    import cv2

    out = plot_timeline_png([_entry(t / 10) for t in range(30)], tmp_path / "sub" / "timeline.png", title="t")
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 600
    assert np.unique(image.reshape(-1, 3), axis=0).shape[0] > 5  # drawn, not blank


def test_plot_timeline_png_empty_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timeline is empty"):
        plot_timeline_png([], tmp_path / "t.png")
