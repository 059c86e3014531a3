from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rgbd.files import write_json_atomic
from tests.training.train_fixtures import one_thread, shared_tiny_dataset, tiny_config
from training import compare, eval_cli
from training.baselines import paired_difference
from training.train import train


def _records(next_hits: list[int], current_hits: list[int], since: list[float]) -> list[dict[str, Any]]:
    """Windows of four sequences (three each); the true actions are fixed, the predictions hit or miss as given."""
    out = []
    for i, (nh, ch, s) in enumerate(zip(next_hits, current_hits, since, strict=True)):
        current, nxt = i % 3, (i + 1) % 3
        out.append(
            {
                "seq": f"s{i // 3}",
                "previous": -1,
                "current": current,
                "next": nxt,
                "current_for_s": s,
                "current_pred": current if ch else (current + 2) % 3,
                "next_pred": nxt if nh else current,
            }  # fmt: skip
        )
    return out


def _results(
    path: Path, records: list[dict[str, Any]], *, split: str = "val", checkpoint: str = "m.safetensors"
) -> Path:
    clean = {"checkpoint": checkpoint, "split": split, "protocol": "streaming", "windows": records}
    write_json_atomic(path, {"dataset": "world", "split": split, "results": [{"clean": clean}]})
    return path


SINCE = [0.1, 0.7, 1.5, 3.0] * 3


def test_paired_rows_count_each_side_and_the_difference_on_the_same_windows(tmp_path: Path) -> None:
    a = _results(tmp_path / "a.json", _records([1] * 12, [1] * 12, SINCE))
    b = _results(tmp_path / "b.json", _records([1, 0] * 6, [1, 1, 1, 0] * 3, SINCE))
    rows = {r["measure"]: r for r in compare.compare(compare.load_evaluation(a), compare.load_evaluation(b))}
    assert (rows["next action"]["a"], rows["next action"]["b"]) == (1.0, 0.5)
    assert rows["next action"]["windows"] == 12 and rows["next action"]["sequences"] == 4
    seqs = [f"s{i // 3}" for i in range(12)]
    assert rows["next action"]["a_minus_b"] == paired_difference(seqs, [1.0] * 12, [1.0, 0.0] * 6)
    assert rows["current action"]["b"] == 0.75
    # by onset: B misses the current action exactly where it has been going >= 2 s
    assert rows["current action, going >= 2 s"]["b"] == 0.0 and rows["current action, going >= 2 s"]["windows"] == 3
    assert rows["current action, going 0-0.5 s"]["b"] == 1.0
    assert rows["current action, going >= 2 s"]["a_minus_b"]["difference"] == 1.0


def test_a_window_before_any_action_counts_for_next_action_only(tmp_path: Path) -> None:
    records = _records([1] * 12, [1] * 12, SINCE)
    records[0] |= {"current": -1, "current_pred": 0}
    a = _results(tmp_path / "a.json", records)
    rows = {r["measure"]: r for r in compare.compare(*(compare.load_evaluation(a) for _ in range(2)))}
    assert rows["next action"]["windows"] == 12 and rows["current action"]["windows"] == 11
    assert rows["current action, going 0-0.5 s"]["windows"] == 2


def test_the_command_refuses_evaluations_that_are_not_paired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _results(tmp_path / "a" / "results.json", _records([1] * 12, [1] * 12, SINCE))
    moved = _records([1] * 12, [1] * 12, SINCE)
    moved[5]["current_for_s"] = 9.0
    cases = {
        "other_windows": (_results(tmp_path / "b.json", moved), "window 5 differs"),
        "other_split": (_results(tmp_path / "c.json", _records([1] * 12, [1] * 12, SINCE), split="test"), "split"),
        "fewer": (_results(tmp_path / "d.json", _records([1] * 3, [1] * 3, SINCE[:3])), "12 windows"),
        "missing": (tmp_path / "nothing.json", "no such file"),
    }
    paper = {"checkpoint": "m", "protocol": "paper", "paper": {}}
    write_json_atomic(tmp_path / "paper.json", {"dataset": "world", "split": "val", "results": [{"clean": paper}]})
    cases["paper"] = (tmp_path / "paper.json", "no per-window records (protocol 'paper')")
    for name, (other, message) in cases.items():
        assert compare.main([str(tmp_path / "a"), str(other)]) == 2, name
        assert message in capsys.readouterr().err, name
    assert compare.main([str(a), str(a), "--index-b", "1"]) == 2
    assert "index 1 out of range; it holds 1 checkpoint(s)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Path]]:
    """Two tiny checkpoints (seeds 1 and 10), each evaluated on the tiny dataset's test split by r3d-eval."""
    data = shared_tiny_dataset(tmp_path_factory)
    root = tmp_path_factory.mktemp("compare")
    outs = []
    with one_thread():
        for seed in (1, 10):
            over = {"optim.epochs": 1, "optim.warmup_epochs": 0, "run.seed": seed}
            best = train(tiny_config(data, root / f"s{seed}", **over)).best
            out = root / f"eval-s{seed}"
            assert eval_cli.main([str(best), str(data), "--out", str(out), "--no-progress"]) == 0
            outs.append(out)
    yield outs


def test_r3d_compare_pairs_two_r3d_eval_results(
    evaluated: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    out = tmp_path / "pair.json"
    assert compare.main([*map(str, evaluated), "--names", "seed 1", "seed 10", "--out", str(out)]) == 0
    md = capsys.readouterr().out
    saved = json.loads(out.read_text())
    rows = {r["measure"]: r for r in saved["rows"]}
    s1, s10 = (json.loads((p / "results.json").read_text())["results"][0]["clean"]["streaming"] for p in evaluated)
    assert rows["next action"]["a"] == pytest.approx(s1["next_action_acc"])
    assert rows["next action"]["b"] == pytest.approx(s10["next_action_acc"])
    assert rows["current action"]["a"] == pytest.approx(s1["current_action_acc"])
    assert rows["next action"]["a_minus_b"]["difference"] == pytest.approx(
        s1["next_action_acc"] - s10["next_action_acc"]
    )
    onset = [r["windows"] for name, r in rows.items() if name.startswith("current action, going")]
    assert sum(onset) == rows["current action"]["windows"] == s1["windows"]
    assert saved["compared"]["a"][0] == "seed 1" and not Path(saved["compared"]["b"][2]).is_absolute()
    windows = int(s1["windows"])
    assert f"seed 1 against seed 10, paired over the same {windows} windows" in md
    cell = f"| next action | {windows} | {100 * s1['next_action_acc']:.1f} % ["
    assert cell in md
    assert np.isfinite(rows["next action"]["a_minus_b"]["ci95"]).all()
