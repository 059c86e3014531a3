"""Synthetic world grammar: class list, labels, and the cues only colour or only depth carry."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from training.synth import ACTIONS, ACTIVITIES
from training.synth.world import SynthConfig, SynthSequence

TINY = SynthConfig(n_sequences=1, frames=300, width=64, height=48, dark_rate=0.0)


def _segments(labels: list[str]) -> list[tuple[str, int, int]]:
    out, start = [], 0
    for name, group in itertools.groupby(labels):
        n = len(list(group))
        out.append((name, start, start + n))
        start += n
    return out


def test_class_list_is_fixed_snake_case_and_10_to_16_long() -> None:
    assert 10 <= len(ACTIONS) <= 16 and len(set(ACTIONS)) == len(ACTIONS)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", a) for a in ACTIONS)


def test_sequences_label_every_frame_from_the_class_list_and_cover_it() -> None:
    seen: set[str] = set()
    for i in range(25):
        seq = SynthSequence(TINY, i)
        assert len(seq.labels) == TINY.frames
        assert set(seq.labels) <= set(ACTIONS)
        assert seq.activity in ACTIVITIES
        seen |= set(seq.labels)
        segments = _segments(seq.labels)
        assert len(segments) >= 4
        assert max((e - s) / TINY.fps for _, s, e in segments[1:-1]) <= 5.5  # 1-5 s each, walks a bit longer
    assert seen == set(ACTIONS)


def test_unknown_activity_is_refused_with_the_list() -> None:
    with pytest.raises(ValueError, match=r"expected an activity in \('coffee_break'"):
        SynthSequence(TINY, 0, activity="juggling")


@pytest.mark.parametrize("index", [0, 3])
def test_cup_colour_alone_decides_drink_or_carry_away(index: int) -> None:
    """Red and blue cup runs are identical in depth up to the end of pick_up; only colour differs; then they fork."""
    red, blue = SynthSequence(TINY, index, "coffee_break"), SynthSequence(TINY, index, "tidy_cup")
    end = max(e for name, _, e in _segments(red.labels) if name == "pick_up")
    assert red.labels[:end] == blue.labels[:end]
    assert red.labels[end] == "drink" and blue.labels[end] == "walk_away"
    for i in range(0, end, 7):
        np.testing.assert_array_equal(red.render(i).depth, blue.render(i).depth)
    held_r, held_b = red.render(end - 1), blue.render(end - 1)
    np.testing.assert_array_equal(held_r.depth, held_b.depth)
    diff = np.abs(held_r.rgb.astype(int) - held_b.rgb.astype(int)).sum(-1)
    assert (diff > 60).sum() >= 2  # the cup's pixels swap red and blue


def test_picked_cup_colour_predicts_the_next_action_in_random_sequences() -> None:
    checked = 0
    for i in range(40):
        seq = SynthSequence(TINY, i)
        cups = seq.timeline.cups
        for name, s, e in _segments(seq.labels):
            if name != "pick_up" or e >= TINY.frames:
                continue
            moved = int(np.argmax(np.abs(cups[e - 1] - cups[s]).sum(-1)))
            colour = seq.timeline.cup_colours[moved]
            assert seq.labels[e] == {"red": "drink", "blue": "walk_away"}[colour]
            checked += 1
    assert checked >= 5


@pytest.mark.parametrize("index", [0, 1])
def test_walk_direction_along_the_camera_axis_leads_to_the_chair_or_the_crate(index: int) -> None:
    sit, crate = SynthSequence(TINY, index, "errand_sit"), SynthSequence(TINY, index, "errand_crate")
    seg_sit = [n for n, _, _ in _segments(sit.labels)][:3]
    seg_crate = [n for n, _, _ in _segments(crate.labels)][:3]
    assert seg_sit == ["idle", "walk_toward", "sit_down"]
    assert seg_crate == ["idle", "walk_away", "bend" if crate.scene.crate_tall else "sit_down"]
