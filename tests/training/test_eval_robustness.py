from __future__ import annotations

import numpy as np
import pytest

from training.robustness import DEGRADATIONS, SEVERITIES, degradation_table, degrade_frame, parse_degradation

RGB = np.full((120, 160, 3), 200, dtype=np.uint8)
DEPTH = np.full((120, 160), 2000, dtype=np.uint16)
DEPTH[:, :10] = 0  # invalid pixels


def test_every_degradation_has_three_increasing_or_decreasing_levels() -> None:
    for d in DEGRADATIONS.values():
        assert len(d.levels) == len(SEVERITIES) and d.modality in ("rgb", "depth")
        assert list(d.levels) in (sorted(d.levels), sorted(d.levels, reverse=True))
    assert degradation_table().count("\n") == len(DEGRADATIONS) + 1
    assert degradation_table(["rgb_dark"]).splitlines()[2].startswith("| rgb_dark |")
    assert degradation_table(["rgb_dark"]).count("\n") == 2


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_degradation_touches_only_its_modality_and_is_reproducible(name: str) -> None:
    rgb, depth = degrade_frame(RGB, DEPTH, 0.001, name, 2, "seq", 7)
    again = degrade_frame(RGB, DEPTH, 0.001, name, 2, "seq", 7)
    other = degrade_frame(RGB, DEPTH, 0.001, name, 2, "seq", 8)
    assert rgb.dtype == np.uint8 and depth.dtype == np.uint16 and depth.shape == DEPTH.shape
    np.testing.assert_array_equal(rgb, again[0])
    np.testing.assert_array_equal(depth, again[1])
    if DEGRADATIONS[name].modality == "rgb":
        np.testing.assert_array_equal(depth, DEPTH)
    else:
        np.testing.assert_array_equal(rgb, RGB)
        assert not np.array_equal(depth, other[1])


def test_darkness_scales_intensities_by_the_gain() -> None:
    rgb, _ = degrade_frame(RGB, DEPTH, 0.001, "rgb_dark", 3, "s", 0)
    assert int(rgb.max()) == 20  # 200 x 0.1


def test_depth_noise_keeps_invalid_pixels_invalid_and_has_the_stated_sigma() -> None:
    _, depth = degrade_frame(RGB, DEPTH, 0.001, "depth_noise", 2, "s", 0)
    assert (depth[:, :10] == 0).all()
    assert np.std(depth[:, 10:].astype(float) * 0.001) == pytest.approx(0.05, rel=0.05)


def test_depth_holes_zero_about_the_stated_share() -> None:
    _, depth = degrade_frame(RGB, DEPTH, 0.001, "depth_holes", 3, "s", 0)
    holes = (depth[:, 10:] == 0).mean()
    assert 0.4 < holes < 0.6


@pytest.mark.parametrize(
    ("text", "match"), [("fog:1", "unknown degradation"), ("rgb_dark:4", "severity in"), ("rgb_dark", "severity in")]
)
def test_parse_degradation_errors_name_what_was_expected(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_degradation(text)
    assert parse_degradation("rgb_blur:2") == ("rgb_blur", 2)
