"""Simple next-action predictors scored on the model's own evaluation windows, and the bootstrap statistics that say
whether two methods differ.

Per streaming window: `current` is the last observed frame's action, `next` the first future action that differs
from it (NONE when it does not change within the horizon: training.metrics), `previous` the action of the run before
the current one in the whole sequence (-1 at the start). The baselines, counted on the training split's windows:
  majority              always the most frequent `next`
  oracle_follower       the true `current` -> its most frequent `next`
  oracle_prev_current   the true (`previous`, `current`) -> its most frequent `next` (unseen pairs: the follower)
  predicted_follower    the model's own `current` (its segmentation of the last frame) -> the most frequent `next`
Ties go to the lower class index, so the tables are deterministic.

Uncertainty: windows of one sequence are not independent, so intervals resample whole test sequences (a percentile
bootstrap, 2000 resamples, seeded). A comparison of two methods on the same windows resamples the sequences once
for both (a paired bootstrap of the difference); its verdict is "not distinguishable" when the 95 % interval of the
difference contains 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.features import SequenceFeatures
from training.metrics import next_change
from training.sampler import ProtocolSpec, Window, evaluation_windows

BASELINES = ("majority", "oracle_follower", "oracle_prev_current", "predicted_follower")
RESAMPLES = 2000


@dataclass(frozen=True)
class WindowFacts:
    """The true actions around one window's end."""

    seq: str
    previous: int
    current: int
    next: int
    current_for_s: float = 0.0  # how long the current action has been going at the last observed frame (seconds)


def window_facts(seq: SequenceFeatures, w: Window, none_index: int) -> WindowFacts:
    labels = seq.labels
    current = int(labels[w.observed[-1]])
    change = next_change(labels[w.future], current)
    before = labels[: int(w.observed[-1]) + 1][::-1]
    previous = next(
        (int(x) for x in before if x >= 0 and x != current), -1
    )  # the run before the current one, across the whole sequence
    start = int(w.observed[-1]) - next((i for i, x in enumerate(before) if x != current), len(before)) + 1
    since = float(seq.timestamps[int(w.observed[-1])] - seq.timestamps[start])
    return WindowFacts(w.seq, previous, current, change[0] if change else none_index, since)


def _most_common(counter: Counter[int]) -> int:
    top = max(counter.values())
    return min(k for k, v in counter.items() if v == top)


@dataclass(frozen=True)
class FollowerTables:
    """Most frequent next action overall, per current action and per (previous, current) pair."""

    majority: int
    follower: dict[int, int]
    follower_pair: dict[tuple[int, int], int]

    @classmethod
    def count(cls, facts: Iterable[WindowFacts]) -> FollowerTables:
        overall: Counter[int] = Counter()
        by_current: dict[int, Counter[int]] = {}
        by_pair: dict[tuple[int, int], Counter[int]] = {}
        for f in facts:
            overall[f.next] += 1
            by_current.setdefault(f.current, Counter())[f.next] += 1
            by_pair.setdefault((f.previous, f.current), Counter())[f.next] += 1
        if not overall:
            raise ValueError("expected training windows to count the baselines on, got none")
        return cls(
            _most_common(overall),
            {k: _most_common(c) for k, c in by_current.items()},
            {k: _most_common(c) for k, c in by_pair.items()},
        )

    def predict(self, name: str, facts: WindowFacts, predicted_current: int) -> int:
        if name == "majority":
            return self.majority
        if name == "oracle_follower":
            return self.follower.get(facts.current, self.majority)
        if name == "oracle_prev_current":
            return self.follower_pair.get((facts.previous, facts.current), self.predict("oracle_follower", facts, -1))
        if name == "predicted_follower":
            return self.follower.get(predicted_current, self.majority)
        raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")


def training_tables(train: dict[str, SequenceFeatures], spec: ProtocolSpec) -> FollowerTables:
    """The follower tables counted on the training split's streaming windows (the evaluation stride)."""
    return FollowerTables.count(window_facts(train[w.seq], w, spec.none_index) for w in evaluation_windows(train, spec))


def _resample(seqs: Sequence[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(unique sequence names, (RESAMPLES, S) indices of a bootstrap over them)."""
    names = np.array(sorted(set(seqs)))
    rng = np.random.default_rng(seed)
    return names, rng.integers(0, len(names), size=(RESAMPLES, len(names)))


def _per_sequence(seqs: Sequence[str], values: np.ndarray, names: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = np.searchsorted(names, np.asarray(seqs))
    sums = np.bincount(pos, weights=values.astype(np.float64), minlength=len(names))
    counts = np.bincount(pos, minlength=len(names)).astype(np.float64)
    return sums, counts


def bootstrap_ci(seqs: Sequence[str], hits: Sequence[float] | np.ndarray, seed: int = 0) -> list[float]:
    """95 % interval [lo, hi] of the mean of `hits` (one per window), resampling sequences."""
    if len(seqs) == 0:
        return [float("nan"), float("nan")]
    names, idx = _resample(seqs, seed)
    sums, counts = _per_sequence(seqs, np.asarray(hits), names)
    means = sums[idx].sum(1) / np.maximum(counts[idx].sum(1), 1.0)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def paired_difference(
    seqs: Sequence[str], hits_a: Sequence[float] | np.ndarray, hits_b: Sequence[float] | np.ndarray, seed: int = 0
) -> dict[str, Any]:
    """Mean of a - b over the same windows with its 95 % paired-bootstrap interval and a verdict."""
    diff = np.asarray(hits_a, dtype=np.float64) - np.asarray(hits_b, dtype=np.float64)
    if len(diff) == 0:
        return {"difference": float("nan"), "ci95": [float("nan"), float("nan")], "verdict": "no windows"}
    lo, hi = bootstrap_ci(seqs, diff, seed)
    verdict = "not distinguishable" if lo <= 0 <= hi else ("first better" if lo > 0 else "second better")
    return {"difference": float(diff.mean()), "ci95": [lo, hi], "verdict": verdict}


def baseline_hits(records: list[dict[str, Any]], tables: FollowerTables) -> dict[str, np.ndarray]:
    """Per baseline, 1.0/0.0 per window record (keys seq, previous, current, next, current_pred)."""
    out = {}
    for name in BASELINES:
        hits = []
        for r in records:
            facts = WindowFacts(r["seq"], r["previous"], r["current"], r["next"])
            hits.append(float(tables.predict(name, facts, r["current_pred"]) == r["next"]))
        out[name] = np.asarray(hits)
    return out
