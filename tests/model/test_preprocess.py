from __future__ import annotations

import numpy as np
import pytest
import torch

from model import preprocess_depth, preprocess_rgb


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


def test_depth_min_max_over_valid_pixels_with_invalid_as_zero() -> None:
    depth = np.array([[0, 1000], [2000, 3000]], dtype=np.uint16)  # 0 = no reading
    x = preprocess_depth(depth, 0.001, (2, 2), 0.1, 10.0)
    assert x.shape == (1, 1, 2, 2)
    torch.testing.assert_close(x[0, 0], torch.tensor([[0.0, 0.0], [0.5, 1.0]]))


def test_depth_beyond_range_is_invalid() -> None:
    depth = np.array([[500, 1500, 65000]], dtype=np.uint16)  # 65 m is beyond the 10 m range
    x = preprocess_depth(depth, 0.001, (1, 3), 0.1, 10.0)
    torch.testing.assert_close(x[0, 0], torch.tensor([[0.0, 1.0, 0.0]]))


def test_depth_scale_converts_units() -> None:
    depth_mm = np.array([[1000, 2000]], dtype=np.uint16)
    depth_units = np.array([[4000, 8000]], dtype=np.uint16)  # 0.25 mm units
    torch.testing.assert_close(
        preprocess_depth(depth_mm, 0.001, (1, 2), 0.1, 10.0), preprocess_depth(depth_units, 0.00025, (1, 2), 0.1, 10.0)
    )


def test_depth_without_any_valid_pixel_is_all_zero() -> None:
    x = preprocess_depth(np.zeros((4, 4), np.uint16), 0.001, (2, 2), 0.1, 10.0)
    assert torch.count_nonzero(x) == 0 and torch.isfinite(x).all()


@pytest.mark.parametrize(
    ("depth", "scale", "match"),
    [(np.zeros((4, 4), np.float32), 0.001, "expected depth uint16"), (np.zeros((4, 4), np.uint16), 0.0, "depth scale")],
)
def test_depth_bad_input_is_refused(depth: np.ndarray, scale: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        preprocess_depth(depth, scale, (2, 2), 0.1, 10.0)
