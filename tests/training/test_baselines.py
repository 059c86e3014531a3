"""Baselines on the same windows, sequence-bootstrap intervals, paired differences, temperature and ECE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.baselines import FollowerTables, WindowFacts, bootstrap_ci, paired_difference, window_facts
from training.calibration import ece_interval, expected_calibration_error, fit_temperature
from training.evaluate import by_onset
from training.features import SequenceFeatures
from training.sampler import Window

NONE = 9


def _facts(previous: int, current: int, nxt: int, seq: str = "s") -> WindowFacts:
    return WindowFacts(seq, previous, current, nxt)


def test_window_facts_take_previous_run_from_the_whole_sequence_and_next_change_from_the_future() -> None:
    labels = np.array([4, 4, 2, 2, 2, 2, 7, 7], dtype=np.int64)
    seq = SequenceFeatures("a", np.zeros((8, 0)), np.zeros((8, 0)), labels, np.arange(8) / 10)
    w = Window("a", observed=np.array([3, 4]), future=np.array([5, 6, 7]), horizon=3, ratio=0, position=5, length=8)
    # the current action (2) started at frame 2: at the last observed frame (4) it has been going 0.2 s
    assert window_facts(seq, w, NONE) == WindowFacts("a", previous=4, current=2, next=7, current_for_s=0.2)
    unchanged = Window("a", np.array([6]), np.array([7]), 1, 0, 7, 8)
    assert window_facts(seq, unchanged, NONE) == WindowFacts("a", previous=2, current=7, next=NONE, current_for_s=0.0)
    first_run = Window("a", np.array([0, 1]), np.array([2]), 1, 0, 2, 8)
    assert window_facts(seq, first_run, NONE).current_for_s == 0.1  # from the sequence's first frame


def test_current_action_accuracy_by_onset_bins_the_windows_by_how_long_the_action_has_gone_on() -> None:
    records = [{"seq": s, "current_for_s": t} for s, t in [("a", 0.1), ("a", 0.7), ("b", 0.2), ("b", 1.5), ("c", 9.0)]]
    bins = by_onset(records, np.array([0.0, 1.0, 1.0, 1.0, 1.0]))
    assert list(bins) == ["0-0.5 s", "0.5-1 s", "1-2 s", ">= 2 s"]
    assert (bins["0-0.5 s"]["windows"], bins["0-0.5 s"]["accuracy"]) == (2, 0.5)
    assert bins[">= 2 s"] == {"windows": 1, "accuracy": 1.0, "ci95": [1.0, 1.0]}


def test_follower_tables_pick_the_most_frequent_next_with_ties_to_the_lower_class() -> None:
    facts = [_facts(0, 1, 2), _facts(0, 1, 2), _facts(3, 1, 5), _facts(3, 1, 5), _facts(3, 1, 5), _facts(0, 4, 3)]
    facts += [_facts(-1, 6, 8), _facts(-1, 6, 7)]
    tables = FollowerTables.count(facts)
    assert tables.majority == 5
    assert tables.follower == {1: 5, 4: 3, 6: 7}  # 6 -> 7 and 8 tie: the lower wins
    assert tables.predict("oracle_prev_current", _facts(0, 1, 0), -1) == 2  # the pair knows better than the follower
    assert tables.predict("oracle_prev_current", _facts(8, 1, 0), -1) == 5  # unseen pair: the follower
    assert tables.predict("oracle_follower", _facts(0, 11, 0), -1) == 5  # unseen action: the majority
    assert tables.predict("predicted_follower", _facts(0, 1, 0), predicted_current=4) == 3


def test_follower_tables_refuse_an_empty_training_split() -> None:
    with pytest.raises(ValueError, match="expected training windows"):
        FollowerTables.count([])


def test_bootstrap_interval_is_a_point_when_every_sequence_scores_the_same() -> None:
    seqs = ["a", "a", "b", "b", "c"]
    assert bootstrap_ci(seqs, [1, 0, 1, 0, 0.5]) == [0.5, 0.5]


def test_bootstrap_interval_resamples_sequences_not_windows() -> None:
    """Ten sequences, half all right and half all wrong: the interval is that of 10 draws, not of 1000 windows."""
    seqs = [f"s{i}" for i in range(10) for _ in range(100)]
    hits = [float(i < 5) for i in range(10) for _ in range(100)]
    lo, hi = bootstrap_ci(seqs, hits)
    assert lo < 0.25 and hi > 0.75


def test_paired_difference_says_not_distinguishable_when_the_interval_crosses_zero() -> None:
    rng = np.random.default_rng(0)
    seqs = [f"s{i}" for i in range(30) for _ in range(10)]
    a = rng.random(300) < 0.5
    same = paired_difference(seqs, a, a)
    assert same["difference"] == 0 and same["verdict"] == "not distinguishable"
    better = paired_difference(seqs, np.ones(300), a)
    assert better["verdict"] == "first better" and better["ci95"][0] > 0
    assert paired_difference(seqs, a, np.ones(300))["verdict"] == "second better"


def test_ece_is_zero_when_confidence_matches_accuracy_and_the_gap_otherwise() -> None:
    # two classes, every prediction 80 % confident for class 0; class 0 is right in 8 of 10
    logits = torch.tensor([[np.log(4.0), 0.0]] * 10)
    labels = torch.tensor([0] * 8 + [1] * 2)
    assert expected_calibration_error(logits, labels) == pytest.approx(0.0, abs=1e-9)
    assert expected_calibration_error(logits, torch.tensor([0] * 5 + [1] * 5)) == pytest.approx(0.3)


def test_ece_interval_resamples_sequences_and_holds_the_ece_of_the_whole_sample() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(600, 5, generator=g) * 2
    labels = torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(1)
    seqs = [f"s{i // 6}" for i in range(600)]  # 100 sequences of 6 windows
    lo, hi = ece_interval(logits * 3.0, labels, seqs)
    assert lo < expected_calibration_error(logits * 3.0, labels) < hi
    calibrated = ece_interval(logits, labels, seqs)
    assert calibrated[1] < lo  # overconfidence by 3x is told apart from calibration over 100 sequences
    one = ece_interval(logits[:6], labels[:6], seqs[:6])  # one sequence: every resample is the sample itself
    assert one[0] == pytest.approx(one[1]) == pytest.approx(expected_calibration_error(logits[:6], labels[:6]))


def test_fit_temperature_recovers_the_overconfidence_factor() -> None:
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 5, generator=g) * 2
    labels = torch.multinomial(true_logits.softmax(-1), 1, generator=g).squeeze(1)
    t = fit_temperature(true_logits * 3.0, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(true_logits * 3.0, labels)
    assert expected_calibration_error(true_logits * 3.0 / t, labels) < before / 3
