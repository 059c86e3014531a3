"""World v2: the decisions only depth can make exist, are recorded and counted, and the size defaults hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rgbd.dataset import Dataset
from training.synth import SynthConfig, SynthSequence, generate_dataset
from training.synth.generate import split_of
from training.synth.stats import service_spec, split_stats, world_stats
from training.synth.textures import CRATE
from training.synth.world import WORLD_VERSION, sequence_light

TINY = SynthConfig(n_sequences=1, frames=300, width=64, height=48, dark_rate=0.0)


def _window_ends(frames: int) -> list[int]:
    """Last observed frame of each streaming test window, as the service recipe's evaluation counts them."""
    spec = service_spec()
    stride = round(spec.stride_s * spec.fps)
    return [e - 1 for e in range(spec.min_observed_frames, frames - spec.horizon_frames + 1, stride)]


@pytest.mark.parametrize("index", [0, 5])
def test_low_and_tall_crate_give_identical_colour_over_the_crate_but_different_depth(index: int) -> None:
    """The same sequence with a low and with a tall crate: same colour, same labels up to the arrival at the crate;
    over the low crate's pixels the colour is identical and only depth differs; then sit_down or bend follows."""
    cfg = SynthConfig(n_sequences=1, frames=300, dark_rate=0.0)
    low, tall = SynthSequence(cfg, index, "crate_sit"), SynthSequence(cfg, index, "crate_push")
    assert not low.scene.crate_tall and tall.scene.crate_tall
    assert low.scene.push_box.colour == tall.scene.push_box.colour
    d_low, d_tall = low.timeline.decisions[0], tall.timeline.decisions[0]
    assert (d_low.kind, d_low.cue, d_low.next) == ("crate_height", "low", "sit_down")
    assert (d_tall.kind, d_tall.cue, d_tall.next) == ("crate_height", "tall", "bend")
    assert (d_low.start, d_low.end) == (d_tall.start, d_tall.end)
    assert low.labels[: d_low.end] == tall.labels[: d_low.end]
    assert set(low.labels[d_low.start : d_low.end]) == {"walk_away"}
    for i in (0, d_low.end - 1):  # standing at the start, and arrived in front of the crate
        a, b = low.render(i), tall.render(i)
        crate = a.ids == CRATE
        assert crate.sum() >= 40 and (b.ids[crate] == CRATE).all()
        np.testing.assert_array_equal(a.rgb[crate], b.rgb[crate])
        farther = a.z[crate] - b.z[crate]  # the low crate's top face lies behind the tall crate's front face
        assert (farther > 0.1).sum() >= 3 and (farther >= -1e-6).all()
        valid = (a.depth[crate] > 0) & (b.depth[crate] > 0)
        assert (a.depth[crate][valid].astype(int) - b.depth[crate][valid] > 100).any()  # millimetres, past dropouts


def test_every_recorded_decision_names_the_action_that_follows_its_cue() -> None:
    kinds: set[tuple[str, str]] = set()
    for i in range(30):
        seq = SynthSequence(TINY, i)
        for d in seq.timeline.decisions:
            assert 0 <= d.start < d.end < TINY.frames and seq.labels[d.end] == d.next
            assert seq.labels[d.end - 1] != d.next
            if d.kind == "crate_height":
                assert d.cue == ("tall" if seq.scene.crate_tall else "low")
                assert d.next == {"low": "sit_down", "tall": "bend"}[d.cue]
                assert set(seq.labels[d.start : d.end]) == {"walk_away"}
            else:
                assert d.kind == "cup_colour" and d.next == {"red": "drink", "blue": "walk_away"}[d.cue]
                assert set(seq.labels[d.start : d.end]) == {"reach", "pick_up"}
            kinds.add((d.kind, d.cue))
    assert kinds == {("crate_height", "low"), ("crate_height", "tall"), ("cup_colour", "red"), ("cup_colour", "blue")}


def test_stats_count_dark_and_decision_windows_as_the_evaluation_does(tmp_path: Path) -> None:
    cfg = SynthConfig(n_sequences=3, frames=200, width=16, height=12, seed=3, dark_rate=12.0)
    generate_dataset(tmp_path / "ds", cfg, workers=1, previews=False)
    st = split_stats(tmp_path / "ds", "all")
    ends = _window_ends(cfg.frames)
    assert st.sequences == 3 and st.windows == 3 * len(ends) == 3 * 3
    dark = crate = depth_only = 0
    for i in range(3):
        seq = SynthSequence(cfg, i)
        for last in ends:
            in_dark = any(a <= last < b for a, b in seq.dark)
            in_crate = any(d.kind == "crate_height" and d.start <= last < d.end for d in seq.timeline.decisions)
            dark, crate, depth_only = dark + in_dark, crate + in_crate, depth_only + (in_dark or in_crate)
    assert dark > 0 and (st.window_counts["dark"], st.window_counts["crate_height"]) == (dark, crate)
    assert st.window_counts["depth_only"] == depth_only and st.world_versions == {str(WORLD_VERSION): 3}
    meta = Dataset(tmp_path / "ds").meta("synth_00000")
    assert meta.provenance["world_version"] == WORLD_VERSION and meta.provenance["config"]["dark_rate"] == 12.0
    assert world_stats(cfg, "all").to_dict() == st.to_dict()  # the plan alone gives the dataset's counts


def test_default_world_ends_at_least_15_percent_of_streaming_windows_in_darkness() -> None:
    """The light schedule alone (no rendering) of 200 default sequences: the share of window ends that are dark."""
    cfg = SynthConfig()
    ends = _window_ends(cfg.frames)
    dark = [any(a <= last < b for a, b in sequence_light(cfg, i)[1]) for i in range(200) for last in ends]
    assert np.mean(dark) >= 0.15


def test_size_defaults_give_500_sequences_100_test_sequences_and_600_test_windows() -> None:
    cfg = SynthConfig()
    assert cfg.n_sequences >= 500 and (cfg.width, cfg.height, cfg.fps) == (160, 120, 15.0)
    n_test = sum(split_of(i) == "test" for i in range(cfg.n_sequences))
    assert n_test >= 100 and n_test * len(_window_ends(cfg.frames)) >= 600
