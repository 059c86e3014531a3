"""`r3d-data inspect`: statistics printed for a tiny dataset with known labels, and the label-distribution plot."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest

from rgbd.dataset import DatasetWriter
from rgbd.files import write_json_atomic
from rgbd.frame import Frame
from training import inspect
from training.inspect import segments_of


def frames(labels: list[str | None], fps: float) -> list[Frame]:
    rgb = np.zeros((4, 4, 3), np.uint8)
    depth = np.ones((4, 4), np.uint16)
    return [Frame(rgb, depth, 0.001, i / fps, i, label=lab) for i, lab in enumerate(labels)]


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """Three sequences at 2 fps: a (train) 6 frames, b (val) 4 frames, c (test) 2 frames."""
    w = DatasetWriter(
        tmp_path / "tiny", name="tiny", classes=["walk", "sit", "bg"], fps=2.0, source="test", background_class="bg"
    )
    w.add_sequence("a", frames(["bg", "walk", "walk", "walk", "sit", "sit"], 2.0), fps=2.0)
    w.add_sequence("b", frames(["walk", "walk", None, "sit"], 2.0), fps=2.0)
    w.add_sequence("c", frames(["sit", "sit"], 2.0), fps=2.0)
    splits = {"seed": 0, "fractions": [0.4, 0.3, 0.3], "train": ["a"], "val": ["b"], "test": ["c"]}
    write_json_atomic(tmp_path / "tiny" / "splits.json", splits)
    return tmp_path / "tiny"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="r3d-data")
    inspect.register(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_segments_of_ends_each_run_at_the_next_timestamp() -> None:
    assert segments_of([0.0, 0.5, 1.0, 2.0], ["a", "a", "b", "b"], 2.0) == [("a", 1.0), ("b", 1.5)]


def test_inspect_prints_split_class_and_duration_statistics(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["inspect", str(tiny), "--out", str(tiny.parent / "plot.png")]) == 0
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == "dataset tiny (source test), 3 classes, background bg, 2 fps"
    assert "train 1 6 3.00" in lines
    assert "val 1 4 2.00" in lines
    assert "test 1 2 1.00" in lines
    assert "total 3 12 6.00" in lines
    # walk: 3 + 2 frames in segments of 1.5 s and 1.0 s; sit: 2 + 1 + 2 frames, 1.0, 0.5, 1.0 s; bg 1 frame 0.5 s
    assert "walk 5 41.7% 2 1.25 1.00 1.50" in lines
    assert "sit 5 41.7% 3 0.83 0.50 1.00" in lines
    assert "bg 1 8.3% 1 0.50 0.50 0.50" in lines
    assert "(unlabelled) 1 8.3% - - - -" in lines
    assert "segment durations (s): n=6 mean=0.92 min=0.50 max=1.50" in lines
    assert "sequence durations (s): n=3 mean=2.00 min=1.00 max=3.00" in lines
    assert lines[-1] == f"plot: {tiny.parent / 'plot.png'}"


def test_inspect_one_split_counts_only_its_sequences(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(["inspect", str(tiny), "--split", "val", "--out", str(tiny.parent / "val.png")])
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert "total 1 4 2.00" in lines and "walk 2 50.0% 1 1.00 1.00 1.00" in lines


def test_inspect_writes_the_plot_beside_the_dataset_by_default(tiny: Path) -> None:
    run(["inspect", str(tiny)])
    png = tiny.parent / "tiny.label_distribution.png"
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    assert not (tiny / "tiny.label_distribution.png").exists()


def test_inspect_rejects_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a dataset: dataset.json is missing"):
        run(["inspect", str(tmp_path)])
