"""The model's input contract: one camera frame -> the FrameEncoder's inputs, by one function (`prepare_inputs`).

Training (the feature cache), evaluation, batch scoring and streaming all call `prepare_inputs`, so the same
encoded frame gives bit-identical tensors everywhere. Every step works at model resolution as early as it can,
because the model sees 160x120 colour and 80x60 depth while cameras send 640x480:

- colour, JPEG bytes: libjpeg-turbo (simplejpeg, strict) decodes straight to a DCT-scaled size, M/8 of the
  original, the smallest that stays >= the model size (640x480 -> 160x120 in one step); decoded colour: as is.
  Then an OpenCV INTER_AREA resize in uint8 to the model size (skipped when already there), and one conversion to
  float32 normalised with ImageNet mean/std: (3, h, w).
- depth, uint16 sensor units: a validity-aware INTER_AREA resize to model size in integer form (resize_valid_depth:
  the valid readings and the validity mask are resized as uint16 and divided), so a hole (0, or outside
  [depth_min_m, depth_max_m]) never pulls a surface towards 0; a model pixel is valid when at least half of the
  sensor pixels under it are. Metres, the one float conversion, exist only at model size. Then the depth input the
  config selects (`Preprocessing.depth_input`):
    "minmax" (the paper; what models without the field were trained on): per-frame min-max of the valid pixels to
             [0, 1], holes 0: (1, h, w).
    "metric": metres standardised by fixed statistics, (m - depth_mean_m) / depth_std_m, holes 0, plus the
             validity mask as a second channel, so a hole is told apart from a near surface: (2, h, w).
  With `Preprocessing.person_mask` "background" or "segmented" (metric only), a third channel marks the person
  (model.person.PersonLocator): (3, h, w). `Preprocessing.color_view` "frame+person" (which needs a person mask) has
  the frozen backbone pool a crop of the colour image around that mask too (model.r3d.color_features): the inputs
  stay the same two arrays, the crop is cut in the FrameEncoder. The "background" locator keeps state per stream,
  so callers hold one `PersonLocator` per sequence or session and feed it every frame in order
  (`Preprocessing.locator()` makes one).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import simplejpeg
import torch

from model.backbones import IMAGENET_MEAN, IMAGENET_STD
from model.errors import ConfigError, ImageDecodeError
from model.person import PERSON_MASKS, PersonLocator, PersonMask

DepthInput = Literal["minmax", "metric"]
DEPTH_INPUTS: tuple[str, ...] = ("minmax", "metric")
ColorView = Literal["frame", "frame+person"]
COLOR_VIEWS: tuple[str, ...] = ("frame", "frame+person")


@dataclass(frozen=True)
class Preprocessing:
    image_size: tuple[int, int] = (120, 160)  # (H, W) of the RGB input to the backbone
    depth_size: tuple[int, int] = (120, 160)  # (H, W) of the depth map fed to the depth encoder
    depth_min_m: float = 0.1  # nearer readings are invalid (holes)
    depth_max_m: float = 10.0  # farther readings are invalid (holes)
    # "minmax" (the paper's, and what a config without this field means) or "metric" (see the module docstring)
    depth_input: DepthInput = "minmax"
    # fixed statistics of "metric": indoor RGB-D cameras see rooms at about 0.5-5 m (a uniform spread over that
    # range has mean 2.75 m, standard deviation 1.3 m); rounded to 2.5 / 1.5 so that the usual range maps to
    # about [-1.3, 1.7]. Training may fit them on its data; they are part of the model's config once trained.
    depth_mean_m: float = 2.5
    depth_std_m: float = 1.5
    # "none", or where the person is as a third depth channel (model/person.py): "background" (a static camera's
    # running room model) or "segmented" (depth whose background the camera or dataset removed); metric only
    person_mask: PersonMask = "none"
    # what the frozen backbone pools from the colour image: "frame" (the whole image), or "frame+person" (also a crop
    # around the person mask: the person covers 3-7 % of a frame, so the whole frame's pooled features are mostly
    # the room); "frame+person" needs a person mask
    color_view: ColorView = "frame"

    def __post_init__(self) -> None:
        problems = []
        if self.depth_input not in DEPTH_INPUTS:
            problems.append(f"depth_input: expected one of {list(DEPTH_INPUTS)}, got {self.depth_input!r}")
        if not 0 <= self.depth_min_m < self.depth_max_m:
            problems.append(f"expected 0 <= depth_min_m < depth_max_m, got {self.depth_min_m}, {self.depth_max_m}")
        if not self.depth_std_m > 0:
            problems.append(f"depth_std_m: expected > 0, got {self.depth_std_m}")
        if self.person_mask not in PERSON_MASKS:
            problems.append(f"person_mask: expected one of {list(PERSON_MASKS)}, got {self.person_mask!r}")
        elif self.person_mask != "none" and self.depth_input != "metric":
            problems.append(f"person_mask {self.person_mask!r} needs depth_input 'metric', got {self.depth_input!r}")
        if self.color_view not in COLOR_VIEWS:
            problems.append(f"color_view: expected one of {list(COLOR_VIEWS)}, got {self.color_view!r}")
        elif self.color_view != "frame" and self.person_mask == "none":
            problems.append(f"color_view {self.color_view!r} needs a person mask, got person_mask 'none'")
        for name in ("image_size", "depth_size"):
            size = getattr(self, name)
            if len(size) != 2 or min(size) < 1:
                problems.append(f"{name}: expected (H, W) of positive integers, got {size}")
        if problems:
            raise ConfigError("preprocessing: " + "; ".join(problems))

    @property
    def depth_channels(self) -> int:
        """Channels of the depth input: 1 ("minmax"), 2 ("metric": standardised metres, validity) or 3 (metric with
        a person mask)."""
        if self.depth_input != "metric":
            return 1
        return 2 if self.person_mask == "none" else 3

    @property
    def color_views(self) -> int:
        """How many pooled backbone features a frame's colour gives: 1 ("frame") or 2 ("frame+person")."""
        return 1 if self.color_view == "frame" else 2

    def locator(self) -> PersonLocator | None:
        """A fresh per-stream PersonLocator for this preprocessing (None when it has no person mask)."""
        return None if self.person_mask == "none" else PersonLocator(self.person_mask)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(H, W) from a JPEG's header, without decoding; ImageDecodeError when there is no readable header."""
    try:
        h, w, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise ImageDecodeError(f"JPEG of {len(data)} bytes has no readable header ({exc})") from exc
    return int(h), int(w)


def decode_jpeg_reduced(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """JPEG bytes -> RGB uint8 decoded at the smallest DCT scale (M/8) that stays >= size (H, W), strictly: a
    truncated or damaged file raises ImageDecodeError instead of decoding to grey."""
    try:
        rgb: np.ndarray = simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_height=size[0], min_width=size[1], strict=True
        )
    except ValueError as exc:
        raise ImageDecodeError(f"JPEG of {len(data)} bytes could not be decoded ({exc})") from exc
    return rgb


# (x / 255 - mean) / std as one multiply-add in float32
_RGB_SCALE = (1.0 / (255.0 * np.asarray(IMAGENET_STD, dtype=np.float64))).astype(np.float32)
_RGB_OFFSET = (-np.asarray(IMAGENET_MEAN, dtype=np.float64) / np.asarray(IMAGENET_STD, dtype=np.float64)).astype(
    np.float32
)


def prepare_rgb(color: np.ndarray | bytes, size: tuple[int, int]) -> np.ndarray:
    """JPEG bytes or RGB uint8 (H, W, 3) -> float32 (3, h, w) at size (h, w), ImageNet-normalised."""
    if isinstance(color, bytes | bytearray | memoryview):
        rgb = decode_jpeg_reduced(bytes(color), size)
    else:
        rgb = np.asarray(color)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected RGB uint8 (H, W, 3) or JPEG bytes, got {rgb.dtype} {rgb.shape}")
    h, w = size
    if rgb.shape[:2] != (h, w):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    x = rgb.astype(np.float32) * _RGB_SCALE + _RGB_OFFSET  # (h, w, 3)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


# validity coverage of a model pixel in integer form: 65535 when every sensor pixel under it is valid
FULL_COVERAGE = 65535
HALF_COVERAGE = 32768  # round(65535 / 2): a model pixel is valid when at least half of its sensor pixels are


@functools.lru_cache(maxsize=64)
def valid_units(depth_scale: float, depth_min_m: float, depth_max_m: float) -> tuple[int, int]:
    """The readings (sensor units) inside [depth_min_m, depth_max_m] metres: (lowest, highest), both inclusive; 0 is
    a hole whatever the range. A reading within 1e-9 (relative) of a bound counts as inside it, so that e.g. 100 units
    of 1 mm are inside 0.1 m although 0.1 / 0.001 is 100.00000000000001 in floating point."""
    lo = max(1, math.ceil(depth_min_m / depth_scale * (1 - 1e-9)))
    hi = min(65535, math.floor(depth_max_m / depth_scale * (1 + 1e-9)))
    return lo, hi


def resize_valid_depth(
    depth: np.ndarray, size: tuple[int, int], units: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """uint16 (H, W) sensor units -> (mean, coverage), both uint16 (h, w), resized in integer form at camera size.

    OpenCV INTER_AREA (a box filter when shrinking) of the readings inside ``units`` with the others set to 0, and of
    the validity mask at FULL_COVERAGE: the mean of the valid readings under a model pixel is mean * FULL_COVERAGE /
    coverage (OpenCV rounds mean to a whole unit and coverage to 1/65535: within 1 unit plus 2e-5 of the
    reading where coverage >= HALF_COVERAGE). Returned without
    resizing when depth is already (h, w).
    """
    lo, hi = units
    valid = cv2.inRange(depth, lo, hi)  # uint8 255 / 0
    masked = cv2.bitwise_and(depth, depth, mask=valid)
    coverage = valid.astype(np.uint16) * np.uint16(FULL_COVERAGE // 255)
    h, w = size
    if depth.shape == (h, w):
        return masked, coverage
    return (
        cv2.resize(masked, (w, h), interpolation=cv2.INTER_AREA),
        cv2.resize(coverage, (w, h), interpolation=cv2.INTER_AREA),
    )


def prepare_depth(
    depth: np.ndarray, depth_scale: float, pre: Preprocessing, locator: PersonLocator | None = None
) -> np.ndarray:
    """uint16 (H, W) in sensor units -> float32 (pre.depth_channels, h, w) at pre.depth_size (module docstring).

    locator: the stream's PersonLocator, required when pre.person_mask is not "none" (it is updated by this frame).

    The validity-aware resize runs on the uint16 map (resize_valid_depth); the one conversion to float (metres) is at
    model size. A frame with no valid pixel becomes all zeros (the model then sees "no depth", not garbage).
    """
    depth = np.asarray(depth)
    if depth.dtype != np.uint16 or depth.ndim != 2:
        raise ValueError(f"expected depth uint16 (H, W) in sensor units, got {depth.dtype} {depth.shape}")
    if not depth_scale > 0:
        raise ValueError(f"expected a positive depth scale (metres per unit), got {depth_scale!r}")
    h, w = pre.depth_size
    mean, coverage = resize_valid_depth(
        depth, (h, w), valid_units(float(depth_scale), pre.depth_min_m, pre.depth_max_m)
    )
    mask = coverage >= HALF_COVERAGE
    valid = mask.astype(np.float32)
    metres = np.divide(
        mean.astype(np.float32) * np.float32(depth_scale * FULL_COVERAGE),
        coverage.astype(np.float32),
        out=np.zeros((h, w), np.float32),
        where=mask,
    )
    if pre.depth_input == "metric":
        standardised = np.where(mask, (metres - np.float32(pre.depth_mean_m)) / np.float32(pre.depth_std_m), 0.0)
        channels = [standardised.astype(np.float32), valid]
        if pre.person_mask != "none":
            if locator is None or locator.mode != pre.person_mask:
                raise ValueError(
                    f"preprocessing with person_mask {pre.person_mask!r} needs the stream's PersonLocator of that "
                    f"mode (Preprocessing.locator()), got {locator!r}"
                )
            channels.append(locator(metres, mask))
        return np.stack(channels)
    if not mask.any():
        return np.zeros((1, h, w), np.float32)
    lo, hi = metres[mask].min(), metres[mask].max()
    span = max(float(hi - lo), 1e-6)
    return np.where(mask, (metres - lo) / np.float32(span), 0.0).astype(np.float32)[None]


def prepare_inputs(
    color: np.ndarray | bytes | None,
    depth: np.ndarray,
    depth_scale: float,
    pre: Preprocessing,
    locator: PersonLocator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One camera frame -> (image float32 (3, h, w), depth float32 (depth_channels, h', w')): THE input path.

    color: JPEG bytes (decoded straight to model resolution), decoded RGB uint8 (H, W, 3), or None for a depth-only
    camera: the image is then all zeros (the dataset mean after normalisation). Only a depth-only model
    (R3DConfig.uses_color false, whose output does not depend on the colour token) may be given None; callers check
    that first. depth: uint16 (H, W) in sensor units, metres = value * depth_scale. locator: the stream's
    PersonLocator when pre.person_mask is not "none" (prepare_depth).
    """
    h, w = pre.image_size
    image = np.zeros((3, h, w), np.float32) if color is None else prepare_rgb(color, pre.image_size)
    return image, prepare_depth(depth, depth_scale, pre, locator)


def preprocess_rgb(rgb: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (B, H, W, 3) or (H, W, 3) RGB -> float32 (B, 3, h, w) normalised (prepare_rgb per frame)."""
    x = rgb.numpy() if isinstance(rgb, torch.Tensor) else np.asarray(rgb)
    if x.dtype != np.uint8 or x.shape[-1] != 3 or x.ndim not in (3, 4):
        raise ValueError(f"expected RGB uint8 (H, W, 3) or (B, H, W, 3), got {x.dtype} {tuple(x.shape)}")
    return torch.from_numpy(np.stack([prepare_rgb(frame, size) for frame in x.reshape(-1, *x.shape[-3:])]))


def preprocess_depth(depth: np.ndarray | torch.Tensor, depth_scale: float, pre: Preprocessing) -> torch.Tensor:
    """uint16 (B, H, W) or (H, W) in sensor units -> float32 (B, depth_channels, h, w) (prepare_depth per frame;
    the B frames are one stream, in order, when the preprocessing has a person mask)."""
    x = depth.numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth)
    if x.ndim not in (2, 3):
        raise ValueError(f"expected depth (H, W) or (B, H, W), got {tuple(x.shape)}")
    locator = pre.locator()
    frames = x.reshape(-1, *x.shape[-2:])
    return torch.from_numpy(np.stack([prepare_depth(d, depth_scale, pre, locator) for d in frames]))
