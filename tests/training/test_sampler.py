from __future__ import annotations

import numpy as np
import pytest

from training.config import load_config
from training.features import SequenceFeatures
from training.sampler import (
    ProtocolSpec,
    WindowDataset,
    collate,
    evaluation_windows,
    future_targets,
    paper_window,
    resample_indices,
    training_windows,
)

NONE = 3


def sequence(labels: list[int], fps: float = 10.0, seq_id: str = "s") -> SequenceFeatures:
    n = len(labels)
    rgb = np.arange(n, dtype=np.float16)[:, None].repeat(4, 1)  # feature value = frame index
    depth = np.zeros((n, 1, 2, 2), dtype=np.float16)
    return SequenceFeatures(seq_id, rgb, depth, np.asarray(labels, dtype=np.int64), np.arange(n) / fps)


def spec(**kw: object) -> ProtocolSpec:
    base: dict[str, object] = {"protocol": "paper", "n_queries": 8, "none_index": NONE, "max_len": 2000}
    return ProtocolSpec(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("times", "fps", "kept"),
    [
        (np.arange(12) / 30.0, 15.0, [0, 2, 4, 6, 8, 10]),  # 30 -> 15 fps: every other frame
        (np.arange(6) / 15.0 + np.array([0, 0.004, -0.003, 0.002, 0, 0.005]), 15.0, [0, 1, 2, 3, 4, 5]),  # jitter
        (np.arange(5) / 10.0, 15.0, [0, 1, 2, 3, 4]),  # slower source: nothing invented, nothing dropped
        (np.array([0.0, 0.066, 0.5, 0.533, 0.566, 0.6]), 15.0, [0, 1, 2, 4]),  # a gap restarts the schedule
    ],
)
def test_resample_indices_drops_frames_and_never_invents(times: np.ndarray, fps: float, kept: list[int]) -> None:
    assert resample_indices(times, fps).tolist() == kept


def test_paper_window_observes_prefix_and_predicts_next_half() -> None:
    w = paper_window(sequence([0] * 30), spec(), 0.2)
    assert w is not None
    assert w.observed.tolist() == list(range(6))
    assert w.future.tolist() == list(range(6, 21)) and w.horizon == 15
    assert (w.position, w.length) == (6, 30)


def test_paper_window_subsamples_and_cuts_the_future_at_the_end() -> None:
    w = paper_window(sequence([0] * 30), spec(frame_step=2), 0.9)
    assert w is not None
    assert w.observed.tolist() == list(range(0, 26, 2))  # int(0.9 * 15) = 13 frames of the 15-frame timeline
    assert w.future.tolist() == [26, 28] and w.horizon == 7


def test_paper_window_floors_without_float_round_off() -> None:
    w = paper_window(sequence([0] * 100), spec(), 0.29)  # 0.29 * 100 = 28.999999999999996 in floating point
    assert w is not None and len(w.observed) == 29


def test_paper_window_longer_than_the_positional_table_keeps_the_latest_frames() -> None:
    w = paper_window(sequence([0] * 100), spec(max_len=16), 0.5)
    assert w is not None
    assert w.observed.tolist() == list(range(34, 50))


def test_streaming_windows_have_full_horizon_and_at_most_window_frames() -> None:
    s = spec(protocol="streaming", fps=10.0, window_s=2.0, horizon_s=1.0, min_observed_s=0.5)
    data = {"a": sequence([0] * 40, seq_id="a"), "b": sequence([1] * 40, seq_id="b")}
    windows = training_windows(data, s, [], windows_per_sequence=20, seed=3)
    assert len(windows) == 40
    for w in windows:
        assert 5 <= len(w.observed) <= 20 and len(w.future) == 10 == w.horizon
        assert w.observed[-1] + 1 == w.future[0]
        assert np.all(np.diff(w.observed) == 1)
    assert any(len(w.observed) < 20 for w in windows)  # windows near the start are partial
    again = training_windows(data, s, [], windows_per_sequence=20, seed=3)
    assert [w.future[0] for w in again] == [w.future[0] for w in windows]


def test_streaming_evaluation_windows_end_every_stride() -> None:
    s = spec(protocol="streaming", fps=10.0, window_s=2.0, horizon_s=1.0, min_observed_s=0.5, stride_s=0.5)
    windows = evaluation_windows({"a": sequence([0] * 30, seq_id="a")}, s)
    assert [w.position for w in windows] == [5, 10, 15, 20]
    assert [len(w.observed) for w in windows] == [5, 10, 15, 20]


def test_streaming_resamples_to_the_model_fps() -> None:
    s = spec(protocol="streaming", fps=10.0, window_s=1.0, horizon_s=1.0, min_observed_s=0.5, stride_s=1.0)
    (w, *_) = evaluation_windows({"a": sequence([0] * 60, fps=20.0, seq_id="a")}, s)
    assert w.observed.tolist() == [0, 2, 4, 6, 8] and w.future.tolist() == list(range(10, 30, 2))


def test_future_targets_run_length_then_none_then_padding() -> None:
    actions, durations = future_targets(np.array([1, 1, 2, 2, 2, -1, 0]), n_queries=8, none_index=NONE)
    assert actions.tolist() == [1, 2, -1, 0, NONE, -1, -1, -1]
    np.testing.assert_allclose(durations, [2 / 7, 3 / 7, 1 / 7, 1 / 7, 0, 0, 0, 0], rtol=1e-6)


def test_future_targets_cut_to_the_queries_keep_none_and_renormalise() -> None:
    actions, durations = future_targets(np.array([0, 1, 1, 2, 0, 1]), n_queries=3, none_index=NONE)
    assert actions.tolist() == [0, 1, NONE]
    np.testing.assert_allclose(durations, [1 / 3, 2 / 3, 0], rtol=1e-6)


def test_window_dataset_flags_transitions_and_collate_pads() -> None:
    data = {"a": sequence([0, 0, 0, 1, 1, 1, 1, 1, 2, 2], seq_id="a")}
    s = spec()
    w_change = paper_window(data["a"], s, 0.3)  # last seen 0, next 1
    w_same = paper_window(data["a"], s, 0.5)  # last seen 1, next 1
    assert w_change is not None and w_same is not None
    ds = WindowDataset(data, [w_change, w_same], s)
    batch = collate([ds[0], ds[1]])
    assert batch["transition"].tolist() == [True, False]
    assert batch["valid"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert batch["segmentation"].tolist() == [[0, 0, 0, -1, -1], [0, 0, 0, 1, 1]]
    assert batch["features"].shape == (2, 5, 4) and float(batch["features"][0, 3:].abs().sum()) == 0
    assert batch["actions"][0].tolist() == [1, NONE, -1, -1, -1, -1, -1, -1]
    assert batch["actions"][1].tolist() == [1, 2, NONE, -1, -1, -1, -1, -1]


def test_streaming_speed_jitter_plays_each_window_at_its_own_speed() -> None:
    # 30 fps source, 10 fps model: every 3rd frame at speed 1; a window at speed s keeps about every 3 s-th frame
    data = {"a": sequence([0] * 300, fps=30.0, seq_id="a")}
    steady = spec(protocol="streaming", fps=10.0, window_s=2.0, horizon_s=0.5, min_observed_s=0.5)
    for w in training_windows(data, steady, [], windows_per_sequence=10, seed=1):
        assert np.all(np.diff(w.observed) == 3)
    jittered = spec(protocol="streaming", fps=10.0, window_s=2.0, horizon_s=0.5, min_observed_s=0.5, speed_jitter=0.4)
    windows = training_windows(data, jittered, [], windows_per_sequence=40, seed=1)
    steps = [float(np.mean(np.diff(np.concatenate([w.observed, w.future])))) for w in windows]
    assert len(windows) == 40 and min(steps) < 2.6 and max(steps) > 3.4  # faster and slower than the recording
    assert all(3 * 0.6 - 0.5 <= step <= 3 * 1.4 + 0.5 for step in steps)
    for w in windows:
        assert w.observed[-1] < w.future[0] and len(w.future) == w.horizon == 5
    again = training_windows(data, jittered, [], windows_per_sequence=40, seed=1)
    assert [w.observed.tolist() for w in again] == [w.observed.tolist() for w in windows]
    with pytest.raises(Exception, match="data.speed_jitter"):
        load_config(None, {"data.speed_jitter": 0.5})
