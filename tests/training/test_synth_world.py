"""Synthetic world rendering: determinism, depth units and sensor artefacts, dark stretches."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from training.synth import body as B
from training.synth.render import DepthModel, depth_sensor
from training.synth.textures import BODY
from training.synth.world import SynthConfig, SynthSequence, light_schedule

SMALL = SynthConfig(n_sequences=4, frames=60, width=96, height=72, dark_rate=0.0)


def _body_frame(seq: SynthSequence) -> int:
    """A frame where much of the body is in view and in range."""
    counts = [(seq.render(i).ids == BODY).sum() for i in range(0, seq.cfg.frames, 10)]
    return int(np.argmax(counts)) * 10


def test_config_bad_values_raise_one_error_naming_every_flag() -> None:
    with pytest.raises(ValueError, match=r"--sequences must be >= 0, got -1.*--fps must be > 0, got -1"):
        SynthConfig(n_sequences=-1, fps=-1)


def test_sequence_same_seed_and_config_is_bit_identical() -> None:
    a, b = SynthSequence(SMALL, 1), SynthSequence(SMALL, 1)
    assert a.labels == b.labels and a.activity == b.activity
    for i in (0, 17, 59):
        fa, fb = a.frame(i), b.frame(i)
        np.testing.assert_array_equal(fa.rgb, fb.rgb)
        np.testing.assert_array_equal(fa.depth, fb.depth)


def test_sequence_other_seed_or_index_differs() -> None:
    base = SynthSequence(SMALL, 1).frame(5)
    other_index = SynthSequence(SMALL, 2).frame(5)
    other_seed = SynthSequence(SynthConfig(**{**SMALL.to_dict(), "seed": 7}), 1).frame(5)  # type: ignore[arg-type]
    assert not np.array_equal(base.rgb, other_index.rgb)
    assert not np.array_equal(base.depth, other_seed.depth)


def test_frame_has_contract_types_intrinsics_and_label() -> None:
    seq = SynthSequence(SMALL, 0)
    f = seq.frame(3)
    assert f.rgb.dtype == np.uint8 and f.rgb.shape == (72, 96, 3)
    assert f.depth.dtype == np.uint16 and f.depth.shape == (72, 96)
    assert f.depth_scale == 0.001 and f.timestamp == pytest.approx(3 / 15)
    assert f.intrinsics is not None and (f.intrinsics.width, f.intrinsics.height) == (96, 72)
    assert f.label == seq.labels[3]


def test_rendered_depth_is_millimetres_of_the_true_geometry() -> None:
    seq = SynthSequence(SMALL, 0)
    r = seq.render(10)
    valid = r.depth > 0
    in_range = (r.z >= 0.2) & (r.z <= 6.0)
    assert valid[in_range].mean() > 0.8 and not valid[~in_range].any()
    rel = np.abs(r.depth[valid] / 1000.0 - r.z[valid]) / r.z[valid]
    assert np.median(rel) < 0.01 and np.percentile(rel, 99) < 0.08


def test_rendered_depth_is_zero_beyond_range() -> None:
    cfg = SynthConfig(n_sequences=1, frames=5, width=96, height=72, max_range=3.5)
    r = SynthSequence(cfg, 0).render(0)
    far = r.z > 3.5
    assert far.sum() > 100  # the back of the room is farther than 3.5 m
    assert (r.depth[far] == 0).all()


def test_rendered_depth_loses_pixels_at_body_silhouette_not_inside() -> None:
    seq = SynthSequence(SynthConfig(n_sequences=1, frames=60, width=160, height=120, dark_rate=0.0), 0)
    r = seq.render(_body_frame(seq))
    body = r.ids == BODY
    k = np.ones((3, 3), np.uint8)
    inner = cv2.erode(body.astype(np.uint8), k, iterations=2).astype(bool)
    rim = cv2.dilate(body.astype(np.uint8), k).astype(bool) & ~cv2.erode(body.astype(np.uint8), k).astype(bool)
    assert body.sum() > 200
    assert (r.depth[rim] == 0).mean() > 0.3
    assert (r.depth[inner] == 0).mean() < 0.05


def test_depth_sensor_noise_and_quantisation_grow_with_distance() -> None:
    rng = np.random.default_rng(0)
    model = DepthModel(edge_drop=0.0, speckle=0.0)
    stats = {}
    for z in (1.0, 4.0):
        mm = depth_sensor(np.full((120, 160), z, np.float32), model, rng).astype(np.float64)
        assert (mm > 0).all()
        steps = np.diff(np.unique(mm))
        stats[z] = (np.std(mm - z * 1000), np.median(steps))
    assert stats[1.0][0] < 5.0 and stats[4.0][0] > 4 * stats[1.0][0]  # sigma grows ~ z^2
    assert stats[4.0][1] > 10 * stats[1.0][1]  # disparity steps grow ~ z^2


def test_depth_sensor_drops_edges_and_out_of_range() -> None:
    z = np.full((100, 100), 3.0, np.float32)
    z[30:70, 30:70] = 1.0  # a near square
    z[:, 90:] = 9.0  # beyond range
    z[:5, :5] = 0.1  # too near
    mm = depth_sensor(z, DepthModel(), np.random.default_rng(1))
    assert (mm[:, 90:] == 0).all() and (mm[:5, :5] == 0).all()
    edge = np.zeros_like(z, bool)
    edge[29:31, 30:70] = edge[69:71, 30:70] = edge[30:70, 29:31] = edge[30:70, 69:71] = True
    assert (mm[edge] == 0).mean() > 0.4
    assert (mm[40:60, 40:60] == 0).mean() < 0.02


def test_dark_frame_has_low_rgb_mean_but_the_same_depth() -> None:
    seq = SynthSequence(SMALL, 2)
    lit, dark = seq.render(20, light=1.0), seq.render(20, light=0.03)
    assert lit.rgb.mean() > 60 and dark.rgb.mean() < 15
    np.testing.assert_array_equal(lit.depth, dark.depth)


def test_light_schedule_dark_rate_gives_dark_stretches() -> None:
    level, dark = light_schedule(np.random.default_rng(3), 900, 15.0, dark_rate=6.0, change_rate=0.0)
    assert len(dark) >= 2
    for start, end in dark:
        assert 25 <= end - start <= 80  # about 2-5 s at 15 fps (the default dark_s)
        assert level[start:end].max() < 0.6 * np.median(level)  # the recorded range includes half the ramps
        assert level[start + 3 : end - 3].max() < 0.1 * np.median(level)
    none, no_dark = light_schedule(np.random.default_rng(3), 900, 15.0, dark_rate=0.0, change_rate=0.0)
    assert no_dark == [] and none.min() > 0.5


def test_body_front_and_back_silhouettes_match_but_depth_order_differs() -> None:
    """Walking toward and away over the same floor spot: nearly the same mask, depth trend of opposite sign."""
    seq = SynthSequence(SynthConfig(n_sequences=1, frames=300, width=160, height=120, dark_rate=0.0), 0, "crate_push")
    labels, poses = np.array(seq.labels), seq.timeline.poses

    def first_run(name: str) -> np.ndarray:
        idx = np.nonzero(labels == name)[0]
        return idx[: int(np.argmax(np.diff(idx) > 1)) + 1] if (np.diff(idx) > 1).any() else idx

    away, toward = first_run("walk_away"), first_run("walk_toward")
    ious = []
    for i in toward[4:-4:3]:
        d = np.hypot(poses[away, B.X] - poses[i, B.X], poses[away, B.Z] - poses[i, B.Z])
        if d.min() < 0.05:
            mi, mj = seq.render(int(i)).ids == BODY, seq.render(int(away[d.argmin()])).ids == BODY
            ious.append((mi & mj).sum() / (mi | mj).sum())
    assert len(ious) >= 3 and np.median(ious) > 0.7

    def depth_slope(frames: np.ndarray) -> float:
        renders = [seq.render(int(i)) for i in frames[::3]]
        z = [float(r.z[r.ids == BODY].mean()) for r in renders]
        return float(np.polyfit(frames[::3] / 15.0, z, 1)[0])

    assert depth_slope(toward) < -0.3 and depth_slope(away) > 0.3  # metres per second
