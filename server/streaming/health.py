"""Is each camera stream alive? Per frame, from the preprocessed pixels the frame encoder sees: a colour image
without variation is ``blank`` (lens cap, black frames), one without spatial structure is ``noise`` (neighbouring
pixels as different as any two: a broken sensor or a wrong pixel format); a depth map with (almost) no valid reading
or no variation is ``blank``. Over the window, from the tokens: a modality whose tokens have collapsed (effective rank
near 1) is ``static`` (a frozen or dead stream the pixels did not give away). Depth noise is not judged from pixels:
at the depth input's size (e.g. 24x32) fine real structure and noise look alike.

Colour that the frame encoder never sees is not judged from pixels but named (``color_presence``): ``absent`` for a
stream without a colour camera (hello color false), ``missing`` for an RGB-D stream's frame that arrived without
colour, ``unused`` for colour a depth-only model ignores (it is neither decoded nor encoded). Such a colour stream has
no effective rank to report.
"""

from __future__ import annotations

import numpy as np

from server.protocol import StreamStatus

BLANK_RGB_STD = 0.02  # std of the normalised grey image; one grey level of 255 is about 0.017
NOISE_RATIO = 0.5  # neighbour-difference energy / (2 x variance): ~1 for white noise, < 0.2 for camera images
MIN_DEPTH_VALID = 0.01  # share of depth pixels with a reading
BLANK_DEPTH_STD = 1e-4
STATIC_ERANK = 1.05  # tokens of a live stream span more than one direction over a window
MAJORITY = 0.5  # share of the window's frames that must agree for a pixel verdict


def _neighbour_ratio(x: np.ndarray) -> float:
    """Mean squared difference of horizontal and vertical neighbours over twice the variance (x has variance)."""
    dy, dx = np.diff(x, axis=0), np.diff(x, axis=1)
    return float((np.mean(dy * dy) + np.mean(dx * dx)) / (4.0 * x.var()))


UNSEEN_COLOR = (StreamStatus.ABSENT, StreamStatus.MISSING, StreamStatus.UNUSED)  # verdicts not judged from pixels


def color_presence(declared: bool, sent: bool, encoded: bool) -> StreamStatus | None:
    """Why a frame's colour cannot be judged from its pixels: the stream has no colour camera (``declared`` false),
    this frame carries none, or the model does not encode it; None when its pixels are there to judge."""
    if not declared:
        return StreamStatus.ABSENT
    if not sent:
        return StreamStatus.MISSING
    return None if encoded else StreamStatus.UNUSED


def pixel_status(
    image: np.ndarray | None, depth: np.ndarray, color: StreamStatus | None = None
) -> tuple[StreamStatus, StreamStatus]:
    """Verdicts on one preprocessed frame: image (3, H, W) normalised, depth (1, h, w) in [0, 1] (0 = no reading).
    ``color`` (color_presence) is the colour verdict of a frame whose image the encoder does not see (image None)."""
    if image is None:
        assert color in UNSEEN_COLOR, f"a frame without an image needs a colour_presence verdict, got {color}"
        rgb = color
    else:
        grey = image.mean(axis=0)
        if grey.std() < BLANK_RGB_STD:
            rgb = StreamStatus.BLANK
        elif _neighbour_ratio(grey) > NOISE_RATIO:
            rgb = StreamStatus.NOISE
        else:
            rgb = StreamStatus.OK
    d = depth[0]
    blank_depth = float(np.mean(d > 0)) < MIN_DEPTH_VALID or float(d.std()) < BLANK_DEPTH_STD
    return rgb, StreamStatus.BLANK if blank_depth else StreamStatus.OK


def window_status(pixels: list[StreamStatus], erank: float | None) -> StreamStatus:
    """One modality over a window: the pixel (or presence) verdict most of its frames share, else ``static`` when
    its tokens collapsed, else ``ok``."""
    for verdict in (*UNSEEN_COLOR, StreamStatus.BLANK, StreamStatus.NOISE):
        if pixels and pixels.count(verdict) / len(pixels) >= MAJORITY:
            return verdict
    if erank is None or erank < STATIC_ERANK:
        return StreamStatus.STATIC
    return StreamStatus.OK
