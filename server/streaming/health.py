"""Is each camera stream alive? Per frame, from the preprocessed pixels the frame encoder sees: a colour image
without variation is ``blank`` (lens cap, black frames), one without spatial structure is ``noise`` (neighbouring
pixels as different as any two: a broken sensor or a wrong pixel format); a depth map with (almost) no valid reading
or no variation is ``blank``. Over the window, from the tokens: a modality whose tokens have collapsed (effective rank
near 1) is ``static`` (a frozen or dead stream the pixels did not give away). Depth noise is not judged from pixels:
at the depth input's size (e.g. 24x32) fine real structure and noise look alike.
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


def pixel_status(image: np.ndarray, depth: np.ndarray) -> tuple[StreamStatus, StreamStatus]:
    """Verdicts on one preprocessed frame: image (3, H, W) normalised, depth (1, h, w) in [0, 1] (0 = no reading)."""
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
    """One modality over a window: the pixel verdict most of its frames share, else ``static`` when its tokens
    collapsed, else ``ok``."""
    for verdict in (StreamStatus.BLANK, StreamStatus.NOISE):
        if pixels and pixels.count(verdict) / len(pixels) >= MAJORITY:
            return verdict
    if erank is None or erank < STATIC_ERANK:
        return StreamStatus.STATIC
    return StreamStatus.OK
