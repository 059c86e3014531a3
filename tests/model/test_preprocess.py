from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from model import R3D, ConfigError, ImageDecodeError, Preprocessing, R3DConfig, prepare_inputs
from model.preprocess import (
    decode_jpeg_reduced,
    jpeg_size,
    prepare_depth,
    preprocess_depth,
    preprocess_rgb,
    valid_units,
)

PRE = Preprocessing(depth_size=(2, 2))
METRIC = Preprocessing(depth_size=(2, 2), depth_input="metric", depth_mean_m=2.0, depth_std_m=0.5)


def _jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def _smooth_rgb(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 127 // (w + h) + 64], axis=-1).astype(np.uint8)


def test_rgb_is_resized_and_imagenet_normalised() -> None:
    rgb = np.full((240, 320, 3), (124, 116, 104), dtype=np.uint8)  # ~ ImageNet mean
    x = preprocess_rgb(rgb, (120, 160))
    assert x.shape == (1, 3, 120, 160) and x.dtype == torch.float32
    assert torch.allclose(x, torch.zeros_like(x), atol=0.01)
    white = preprocess_rgb(np.full((120, 160, 3), 255, np.uint8), (120, 160))
    torch.testing.assert_close(
        white[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225])
    )


def test_rgb_wrong_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="expected RGB uint8"):
        preprocess_rgb(np.zeros((10, 10, 3), np.float32), (120, 160))


def test_jpeg_size_reads_the_frame_header() -> None:
    assert jpeg_size(_jpeg(_smooth_rgb(48, 64))) == (48, 64)
    with pytest.raises(ImageDecodeError, match="no readable header"):
        jpeg_size(b"\x89PNG....")
    with pytest.raises(ImageDecodeError, match="no readable header"):
        jpeg_size(b"\xff\xd8\xff\xe0\x00\x10JFIF")


@pytest.mark.parametrize(("full", "model", "decoded"), [((480, 640), (120, 160), (120, 160)),
                                                        ((240, 320), (120, 160), (120, 160)),
                                                        ((480, 640), (130, 150), (180, 240)),
                                                        ((120, 160), (120, 160), (120, 160))])  # fmt: skip
def test_jpeg_decodes_at_the_smallest_dct_scaled_size_that_stays_at_least_model_size(
    full: tuple[int, int], model: tuple[int, int], decoded: tuple[int, int]
) -> None:
    assert decode_jpeg_reduced(_jpeg(_smooth_rgb(*full)), model).shape == (*decoded, 3)


def test_jpeg_path_is_close_to_the_decoded_array_path() -> None:
    """DCT-scaled decoding approximates decode-then-area-resize (not bit-equal: both are lossy averages)."""
    rgb = _smooth_rgb(480, 640)
    from_jpeg = prepare_inputs(_jpeg(rgb), np.full((4, 4), 1000, np.uint16), 0.001, Preprocessing())[0]
    from_array = prepare_inputs(rgb, np.full((4, 4), 1000, np.uint16), 0.001, Preprocessing())[0]
    assert from_jpeg.shape == from_array.shape == (3, 120, 160)
    assert np.abs(from_jpeg - from_array).mean() < 0.05  # in normalised units (1 grey level ~ 0.017)


def test_undecodable_jpeg_raises_image_decode_error() -> None:
    data = _jpeg(_smooth_rgb(48, 64))
    with pytest.raises(ImageDecodeError, match="could not be decoded"):
        prepare_inputs(data[:200] + b"\x00" * 50, np.zeros((4, 4), np.uint16), 0.001, PRE)


def test_depth_min_max_over_valid_pixels_with_invalid_as_zero() -> None:
    depth = np.array([[0, 1000], [2000, 3000]], dtype=np.uint16)  # 0 = no reading
    x = preprocess_depth(depth, 0.001, PRE)
    assert x.shape == (1, 1, 2, 2)
    torch.testing.assert_close(x[0, 0], torch.tensor([[0.0, 0.0], [0.5, 1.0]]))


def test_depth_beyond_range_is_invalid() -> None:
    depth = np.array([[500, 1500, 65000]], dtype=np.uint16)  # 65 m is beyond the 10 m range
    x = preprocess_depth(depth, 0.001, Preprocessing(depth_size=(1, 3)))
    torch.testing.assert_close(x[0, 0], torch.tensor([[0.0, 1.0, 0.0]]))


def test_depth_scale_converts_units() -> None:
    depth_mm = np.array([[1000, 2000]], dtype=np.uint16)
    depth_units = np.array([[4000, 8000]], dtype=np.uint16)  # 0.25 mm units
    pre = Preprocessing(depth_size=(1, 2))
    torch.testing.assert_close(preprocess_depth(depth_mm, 0.001, pre), preprocess_depth(depth_units, 0.00025, pre))


def test_depth_without_any_valid_pixel_is_all_zero() -> None:
    for pre in (PRE, METRIC):
        x = preprocess_depth(np.zeros((4, 4), np.uint16), 0.001, pre)
        assert x.shape == (1, pre.depth_channels, 2, 2)
        assert torch.count_nonzero(x) == 0 and torch.isfinite(x).all()


def test_depth_resize_ignores_holes_instead_of_averaging_them_in() -> None:
    """A 2x2 block with one hole averages its three valid readings; a block of mostly holes becomes a hole."""
    depth = np.array([[0, 2000, 1000, 1000],
                      [2000, 2000, 1000, 1000],
                      [0, 0, 3000, 3000],
                      [0, 4000, 3000, 3000]], dtype=np.uint16)  # fmt: skip
    x = preprocess_depth(depth, 0.001, METRIC)[0]
    metres = x[0] * 0.5 + 2.0
    torch.testing.assert_close(x[1], torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    torch.testing.assert_close(metres[x[1] > 0], torch.tensor([2.0, 1.0, 3.0]))
    assert x[0, 1, 0] == 0.0


def test_metric_depth_is_standardised_metres_with_a_validity_channel() -> None:
    depth = np.array([[0, 1000], [2500, 20000]], dtype=np.uint16)  # hole, 1 m, 2.5 m, 20 m (beyond range)
    x = preprocess_depth(depth, 0.001, METRIC)
    assert x.shape == (1, 2, 2, 2) and METRIC.depth_channels == 2 and PRE.depth_channels == 1
    torch.testing.assert_close(x[0, 0], torch.tensor([[0.0, -2.0], [1.0, 0.0]]))
    torch.testing.assert_close(x[0, 1], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))


def test_a_near_surface_and_a_hole_differ_in_metric_but_not_in_minmax() -> None:
    """The reason for "metric": in min-max a hole and the nearest surface are both 0."""
    near_and_hole = np.array([[0, 1000], [3000, 3000]], dtype=np.uint16)
    near_and_near = np.array([[1000, 1000], [3000, 3000]], dtype=np.uint16)
    minmax = [preprocess_depth(d, 0.001, PRE) for d in (near_and_hole, near_and_near)]
    metric = [preprocess_depth(d, 0.001, METRIC) for d in (near_and_hole, near_and_near)]
    assert torch.equal(minmax[0], minmax[1])
    assert not torch.equal(metric[0], metric[1])


@pytest.mark.parametrize(
    ("depth", "scale", "match"),
    [(np.zeros((4, 4), np.float32), 0.001, "expected depth uint16"), (np.zeros((4, 4), np.uint16), 0.0, "depth scale")],
)
def test_depth_bad_input_is_refused(depth: np.ndarray, scale: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        preprocess_depth(depth, scale, PRE)


def test_bad_preprocessing_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="depth_input"):
        Preprocessing(depth_input="log")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="depth_std_m"):
        Preprocessing(depth_std_m=0.0)


def test_config_without_depth_input_loads_as_minmax_and_metric_round_trips() -> None:
    old = R3DConfig(classes=["a", "b"]).to_dict()
    old["preprocessing"] = {k: v for k, v in old["preprocessing"].items() if k in ("image_size", "depth_size")}
    assert R3DConfig.from_dict(old).preprocessing.depth_input == "minmax"
    cfg = R3DConfig(classes=["a", "b"], preprocessing=METRIC)
    assert R3DConfig.from_dict(cfg.to_dict()).preprocessing == METRIC


def test_r3d_runs_end_to_end_on_metric_depth() -> None:
    pre = Preprocessing(image_size=(32, 32), depth_size=(6, 8), depth_input="metric")
    cfg = R3DConfig(classes=["a", "b"], max_len=8, window_s=0.4, preprocessing=pre)
    model = R3D(cfg, with_backbone=False).eval()
    depths = preprocess_depth(np.full((3, 12, 16), 1500, np.uint16), 0.001, cfg.preprocessing)
    out = model.forward_features(torch.randn(1, 3, cfg.feature_dim), depths[None], torch.ones(1, 3, dtype=torch.bool))
    assert model.frame_encoder.depth_proj[1].in_features == 2 * 6 * 8
    assert out.action_logits.shape == (1, cfg.n_queries, 3) and torch.isfinite(out.action_logits).all()


def test_depth_resize_in_integer_form_is_within_one_unit_of_the_exact_mean_of_valid_readings() -> None:
    """480x640 -> 60x80 (8x8 blocks) with holes and out-of-range readings: the uint16 resize plus the one float
    conversion at model size gives the exact mean of the valid readings to within a sensor unit (OpenCV rounds the
    uint16 mean) plus 2e-5 of the value (the mask's 1/65535 steps), and exactly the blocks with at least half valid
    readings are valid."""
    rng = np.random.default_rng(0)
    depth = rng.integers(300, 9000, (480, 640)).astype(np.uint16)
    depth[rng.random(depth.shape) < 0.3] = 0
    depth[rng.random(depth.shape) < 0.2] = 12000  # 12 m: beyond the 10 m range
    depth[:8, :8] = 0  # a block with no reading at all
    depth[8:16, :8] = 0
    depth[8:16, :4] = 1000  # exactly half valid
    pre = Preprocessing(depth_size=(60, 80), depth_input="metric", depth_mean_m=0.0, depth_std_m=1.0)
    x = prepare_depth(depth, 0.001, pre)
    blocks = depth.reshape(60, 8, 80, 8).transpose(0, 2, 1, 3).reshape(60, 80, 64).astype(np.float64)
    valid = (blocks >= 100) & (blocks <= 10000)
    count = valid.sum(axis=-1)
    exact_m = np.where(count > 0, (blocks * valid).sum(axis=-1) / np.maximum(count, 1), 0.0) * 0.001
    np.testing.assert_array_equal(x[1], (count >= 32).astype(np.float32))
    assert x[1, 0, 0] == 0.0 and x[1, 1, 0] == 1.0 and x[0, 1, 0] == pytest.approx(1.0, abs=0.001)
    np.testing.assert_allclose(x[0][count >= 32], exact_m[count >= 32], rtol=2e-5, atol=0.001)


@pytest.mark.parametrize(
    ("scale", "range_m", "units"),
    [(0.001, (0.1, 10.0), (100, 10000)),  # the bounds themselves are inside, despite 0.1 / 0.001 > 100 in floats
     (0.00025, (0.1, 10.0), (400, 40000)),
     (0.001, (0.0, 100.0), (1, 65535))],  # 0 is a hole whatever the range; the range ends at the sensor's maximum
)  # fmt: skip
def test_valid_units_are_the_readings_inside_the_range(
    scale: float, range_m: tuple[float, float], units: tuple[int, int]
) -> None:
    assert valid_units(scale, *range_m) == units
