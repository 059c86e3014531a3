"""RealSense sources: playback of a real D435 .bag, record_db3 round trips, no-drop playback, live-camera errors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from rgbd import DeviceNotFoundError, Frame, Intrinsics, RealSenseCamera, RealSensePlayback, record_db3
from rgbd.base import UnreadableSourceError
from rgbd.realsense import default_intrinsics
from rgbd.registration import register_depth, scale_intrinsics
from rgbd.rs_common import check_filters, to_intrinsics
from tests.real_fixtures import REAL_FIXTURES, real_fixture

rs = pytest.importorskip("pyrealsense2", reason="pyrealsense2 is not installed (pip install pyrealsense2)")

REAL = REAL_FIXTURES
D435_BAG = REAL / "realsense_d435" / "single_depth_color_640x480.bag"


def make_frames(
    n: int, h: int = 48, w: int = 64, scale: float = 0.00025, seed: int = 0, fps: float = 15.0
) -> list[Frame]:
    rng = np.random.default_rng(seed)
    return [
        Frame(
            rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            depth=rng.integers(0, 65536, (h, w), dtype=np.uint16),
            depth_scale=scale,
            timestamp=i / fps,
            index=i,
            intrinsics=Intrinsics(w, h, 50.0, 51.0, 31.5, 23.5),
        )
        for i in range(n)
    ]


@pytest.fixture
def d435_bag() -> Path:
    return real_fixture(str(D435_BAG.relative_to(REAL)))


def test_playback_d435_bag_yields_one_paired_frame_with_metadata(d435_bag: Path) -> None:
    src = RealSensePlayback(d435_bag)
    with src:
        assert src.depth_scale == 0.001
        assert src.fps == 6.0
        assert src.num_frames is None
        frames = list(src)
    assert len(frames) == 1  # the bag holds one colour frame (and two depth frames, the nearer one pairs)
    f = frames[0]
    assert f.rgb.shape == (480, 640, 3) and f.rgb.dtype == np.uint8
    assert f.depth.shape == (480, 640) and f.depth.dtype == np.uint16
    assert f.depth_scale == 0.001 and f.timestamp == 0.0 and f.index == 0
    assert f.depth_aligned is False  # raw D435 streams: different intrinsics, non-identity extrinsics
    assert f.intrinsics is not None
    intr = f.intrinsics
    assert (intr.width, intr.height) == (640, 480)
    assert intr.fx == pytest.approx(613.2037, abs=1e-3) and intr.fy == pytest.approx(613.4193, abs=1e-3)
    assert intr.cx == pytest.approx(319.9388, abs=1e-3) and intr.cy == pytest.approx(239.1830, abs=1e-3)
    valid = f.depth[f.depth > 0] * f.depth_scale
    assert (f.depth > 0).mean() > 0.9  # an office wall: almost every pixel has a depth
    assert 0.3 < float(np.median(valid)) < 3.5
    assert f.rgb.std() > 5.0  # a real image, not a constant
    assert src.unpaired_depth == 1 and src.unpaired_color == 0


def test_record_db3_round_trips_bit_exactly(tmp_path: Path) -> None:
    frames = make_frames(12)
    path = tmp_path / "take.db3"
    assert record_db3(path, frames, fps=15) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.db3"]  # no temporary left behind
    with RealSensePlayback(path) as src:
        assert src.depth_scale == 0.00025 and src.fps == 15.0
        out = list(src)
    assert len(out) == len(frames)
    for a, b in zip(frames, out, strict=True):
        np.testing.assert_array_equal(b.rgb, a.rgb)
        np.testing.assert_array_equal(b.depth, a.depth)
        assert b.timestamp == pytest.approx(a.timestamp, abs=1e-6)
        assert b.index == a.index and b.depth_scale == a.depth_scale and b.depth_aligned
        assert b.intrinsics is not None and a.intrinsics is not None
        for field in ("width", "height", "fx", "fy", "cx", "cy"):
            assert getattr(b.intrinsics, field) == pytest.approx(getattr(a.intrinsics, field), rel=1e-6)


def test_record_db3_without_intrinsics_writes_default_pinhole(tmp_path: Path) -> None:
    frames = [Frame(f.rgb, f.depth, 0.001, f.timestamp, f.index) for f in make_frames(2)]
    record_db3(tmp_path / "a.db3", frames)
    out = list(RealSensePlayback(tmp_path / "a.db3"))
    assert out[0].intrinsics is not None
    assert out[0].intrinsics.fx == pytest.approx(default_intrinsics(64, 48).fx, rel=1e-6)


def test_record_db3_unaligned_depth_plays_back_unaligned(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = [
        Frame(
            rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
            rng.integers(0, 4000, (24, 32), dtype=np.uint16),
            0.001,
            i / 30,
            i,
            depth_aligned=False,
        )
        for i in range(3)
    ]
    record_db3(tmp_path / "u.db3", frames, fps=30)
    out = list(RealSensePlayback(tmp_path / "u.db3"))
    assert [f.depth.shape for f in out] == [(24, 32)] * 3
    assert not any(f.depth_aligned for f in out)
    np.testing.assert_array_equal(out[2].depth, frames[2].depth)


def test_playback_slow_consumer_loses_no_frames(tmp_path: Path) -> None:
    frames = make_frames(120, h=24, w=32, fps=30)
    record_db3(tmp_path / "long.db3", frames, fps=30)
    got = []
    for f in RealSensePlayback(tmp_path / "long.db3", queue_size=4):
        time.sleep(0.002)
        got.append(f)
    assert [f.index for f in got] == list(range(120))
    assert all(np.array_equal(a.depth, b.depth) for a, b in zip(frames, got, strict=True))
    assert all(b.timestamp > a.timestamp for a, b in zip(got, got[1:], strict=False))


def test_playback_is_repeatable_and_stops_early_cleanly(tmp_path: Path) -> None:
    record_db3(tmp_path / "r.db3", make_frames(20), fps=15)
    src = RealSensePlayback(tmp_path / "r.db3")
    first = []
    for f in src:
        first.append(f.index)
        if len(first) == 3:
            break
    assert first == [0, 1, 2]
    assert len(list(src)) == 20


def test_playback_realtime_paces_by_timestamps(tmp_path: Path) -> None:
    record_db3(tmp_path / "p.db3", make_frames(6, fps=30), fps=30)
    start = time.monotonic()
    out = list(RealSensePlayback(tmp_path / "p.db3", realtime=True))
    assert len(out) == 6
    assert time.monotonic() - start >= 5 / 30 - 0.01


def test_playback_filters_apply_to_depth(tmp_path: Path) -> None:
    frames = make_frames(3, h=48, w=64, scale=0.001)
    frames = [Frame(f.rgb, np.full((48, 64), 1500, np.uint16), 0.001, f.timestamp, f.index) for f in frames]
    record_db3(tmp_path / "f.db3", frames)
    out = list(RealSensePlayback(tmp_path / "f.db3", filters=["decimation"]))
    assert [f.depth.shape for f in out] == [(24, 32)] * 3  # default decimation magnitude 2
    assert not out[0].depth_aligned


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"path": "x.bag"}, ValueError, r"expected a path ending in \.db3"),
        ({"path": "x.db3", "frames": []}, ValueError, "no frames to record"),
    ],
)
def test_record_db3_bad_arguments_raise(tmp_path: Path, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        record_db3(tmp_path / kwargs["path"], kwargs.get("frames", make_frames(1)))


def test_record_db3_shape_change_raises_and_leaves_no_file(tmp_path: Path) -> None:
    frames = make_frames(2) + make_frames(1, h=24, w=32)
    frames[2] = Frame(frames[2].rgb, frames[2].depth, 0.00025, 1.0, 2)
    with pytest.raises(ValueError, match=r"frame 2: expected rgb \(48, 64, 3\)"):
        record_db3(tmp_path / "bad.db3", frames)
    assert list(tmp_path.iterdir()) == []


def test_playback_missing_or_corrupt_file_raises(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSourceError, match="does not exist"):
        RealSensePlayback(tmp_path / "none.bag").open()
    bad = tmp_path / "bad.bag"
    bad.write_bytes(b"not a rosbag" * 10)
    with pytest.raises(UnreadableSourceError, match="cannot play back"):
        RealSensePlayback(bad).open()


def test_camera_without_device_raises_device_not_found() -> None:
    if len(rs.context().query_devices()) > 0:
        pytest.skip("a RealSense camera is connected")
    with pytest.raises(DeviceNotFoundError, match="no RealSense camera found"):
        RealSenseCamera(width=640, height=480, fps=30).open()


def test_unknown_filter_name_is_rejected() -> None:
    assert check_filters(["Hole-Filling", "spatial"]) == ["hole_filling", "spatial"]
    with pytest.raises(ValueError, match="unknown RealSense filter"):
        RealSenseCamera(filters=["median"])


def test_register_depth_equals_rs_align_on_the_d435_bag(d435_bag: Path) -> None:
    pipe, cfg = rs.pipeline(), rs.config()
    cfg.enable_device_from_file(str(d435_bag), repeat_playback=False)
    profile = pipe.start(cfg)
    try:
        profile.get_device().as_playback().set_real_time(False)
        ok, frames = pipe.try_wait_for_frames(3000)
        if not ok or not frames.get_depth_frame() or not frames.get_color_frame():
            pytest.skip("rs.pipeline delivered no depth+colour frameset from the bag (it drops frames)")
        depth_frame = frames.get_depth_frame()
        raw = np.array(np.asanyarray(depth_frame.get_data()), copy=True)
        reference = np.array(np.asanyarray(rs.align(rs.stream.color).process(frames).get_depth_frame().get_data()))
        dprof = depth_frame.get_profile().as_video_stream_profile()
        cprof = frames.get_color_frame().get_profile().as_video_stream_profile()
        ext = dprof.get_extrinsics_to(cprof)
    finally:
        pipe.stop()
    ours = register_depth(
        raw,
        to_intrinsics(dprof.get_intrinsics()),
        to_intrinsics(cprof.get_intrinsics()),
        np.array(ext.rotation).reshape(3, 3).T,
        np.array(ext.translation),
        0.001,
    )
    assert ours.shape == reference.shape == (480, 640)
    np.testing.assert_array_equal(ours, reference)


def test_playback_align_registers_d435_depth_onto_colour(d435_bag: Path) -> None:
    raw = next(iter(RealSensePlayback(d435_bag)))
    aligned = next(iter(RealSensePlayback(d435_bag, align=True)))
    assert aligned.depth_aligned and aligned.depth.shape == (480, 640)
    np.testing.assert_array_equal(aligned.rgb, raw.rgb)
    assert (aligned.depth > 0).mean() > 0.9
    raw_median = float(np.median(raw.depth[raw.depth > 0]))
    assert abs(float(np.median(aligned.depth[aligned.depth > 0])) - raw_median) < 0.1 * raw_median  # other FOV
    assert not np.array_equal(aligned.depth, raw.depth)  # the 14 mm baseline and other focal length moved pixels


def test_playback_align_of_decimated_aligned_depth_restores_colour_size(tmp_path: Path) -> None:
    frames = [Frame(f.rgb, np.full((48, 64), 1500, np.uint16), 0.001, f.timestamp, f.index) for f in make_frames(2)]
    record_db3(tmp_path / "d.db3", frames)
    out = list(RealSensePlayback(tmp_path / "d.db3", filters=["decimation"], align=True))
    assert [f.depth.shape for f in out] == [(48, 64)] * 2 and all(f.depth_aligned for f in out)
    assert (out[0].depth == 1500).mean() > 0.95


def test_playback_align_refuses_unaligned_record_without_calibration(tmp_path: Path) -> None:
    rgb = np.zeros((48, 64, 3), np.uint8)
    frames = [Frame(rgb, np.ones((24, 32), np.uint16), 0.001, i / 15, i, depth_aligned=False) for i in range(2)]
    record_db3(tmp_path / "u.db3", frames)
    with pytest.raises(UnreadableSourceError, match="cannot align depth to colour"):
        RealSensePlayback(tmp_path / "u.db3", align=True).open()


def test_scale_intrinsics_keeps_pixel_centres() -> None:
    intr = Intrinsics(640, 480, 600.0, 600.0, 319.5, 239.5)
    half = scale_intrinsics(intr, (240, 320))
    assert half == Intrinsics(320, 240, 300.0, 300.0, 159.5, 119.5)
    assert scale_intrinsics(intr, (480, 640)) is intr
