"""Pure pose shaping used by the actions: easing, gait, seating and bending with planted feet."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from training.synth import body as B

PoseFn = Callable[[float], np.ndarray]


def smooth(x: float) -> float:
    """Smoothstep on [0, 1], clamped."""
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def unwrap(h0: float, h1: float) -> float:
    """h1 shifted by a multiple of 2 pi to be the shortest turn from h0."""
    return h0 + float((h1 - h0 + np.pi) % (2 * np.pi) - np.pi)


def trapezoid(u: float, ramp: float) -> tuple[float, float]:
    """Fraction of a path covered at time u in [0, 1] and the relative speed, easing in and out over `ramp`."""
    v_peak = 1.0 / (1.0 - ramp)
    if u < ramp:
        return 0.5 * v_peak * u * u / ramp, u / ramp
    if u > 1 - ramp:
        return 1.0 - 0.5 * v_peak * (1 - u) ** 2 / ramp, (1 - u) / ramp
    return v_peak * (u - ramp / 2), 1.0


def gait(shape: B.BodyShape, p: np.ndarray, phase: float, amp: float) -> np.ndarray:
    """Walking legs and arm swing at gait phase (rad) with amplitude amp in [0, 1]; the pelvis bobs (in place)."""
    swing = 0.38 * amp * np.sin(phase)
    p[B.L_HIP], p[B.R_HIP] = swing, -swing
    p[B.L_KNEE] = 0.05 + amp * 0.6 * max(0.0, np.sin(phase + 1.2)) ** 2
    p[B.R_KNEE] = 0.05 + amp * 0.6 * max(0.0, np.sin(phase + 1.2 + np.pi)) ** 2
    p[B.Y] -= (B.THIGH + B.SHANK) * shape.height * (1 - np.cos(abs(swing))) * 0.8
    p[B.SPINE] = 0.05 * amp
    p[B.L_SH_FLEX], p[B.R_SH_FLEX] = -0.35 * amp * np.sin(phase), 0.35 * amp * np.sin(phase)
    p[B.L_ELBOW] = p[B.R_ELBOW] = 0.3
    return p


def _planted_ankles(shape: B.BodyShape, p_stand: np.ndarray, heading: float) -> list[np.ndarray]:
    h = shape.height
    _, r = B.heading_vectors(heading)
    pelvis0 = p_stand[[B.X, B.Y, B.Z]]
    return [pelvis0 + side * r * B.HIP_W * h - B.UP * (pelvis0[1] - B.ANKLE_H * h) for side in (-1, 1)]


def _legs_to(shape: B.BodyShape, p: np.ndarray, ankles: list[np.ndarray], heading: float) -> None:
    _, r = B.heading_vectors(heading)
    pel = p[[B.X, B.Y, B.Z]]
    for side, hip_i, knee_i, ankle in ((-1, B.L_HIP, B.L_KNEE, ankles[0]), (1, B.R_HIP, B.R_KNEE, ankles[1])):
        p[hip_i], p[knee_i] = B.leg_ik(shape, pel + side * r * B.HIP_W * shape.height, ankle, heading)


def seating(shape: B.BodyShape, seat: np.ndarray, heading: float, p_stand: np.ndarray) -> PoseFn:
    """Pose as a function of m (0 standing at p_stand, 1 seated with the pelvis at `seat`), feet planted."""
    pelvis0 = p_stand[[B.X, B.Y, B.Z]].copy()
    ankles = _planted_ankles(shape, p_stand, heading)

    def fn(m: float) -> np.ndarray:
        p = p_stand.copy()
        mh, mv = smooth(m / 0.8), smooth((m - 0.2) / 0.8)
        p[[B.X, B.Y, B.Z]] = pelvis0 + (seat - pelvis0) * np.array([mh, mv, mh])
        p[B.SPINE] = 0.55 * np.sin(np.pi * mh) + 0.05 * mh
        _legs_to(shape, p, ankles, heading)
        p[B.L_SH_FLEX] = p[B.R_SH_FLEX] = 0.4 * mh
        p[B.L_ELBOW] = p[B.R_ELBOW] = 0.2 + 0.8 * mh
        return p

    return fn


def bending(shape: B.BodyShape, base: np.ndarray) -> PoseFn:
    """Pose as a function of a in [0, 1]: from standing to bent down toward the floor, knees giving, feet planted."""
    heading = float(base[B.HEADING])
    f, _ = B.heading_vectors(heading)
    pelvis0 = base[[B.X, B.Y, B.Z]].copy()
    ankles = _planted_ankles(shape, base, heading)

    def fn(a: float) -> np.ndarray:
        p = base.copy()
        p[[B.X, B.Y, B.Z]] = pelvis0 - f * 0.08 * shape.height * a - B.UP * 0.07 * shape.height * a
        p[B.SPINE] = 1.15 * a
        p[B.HEAD] = -0.3 * a
        _legs_to(shape, p, ankles, heading)
        p[B.L_SH_FLEX] = p[B.R_SH_FLEX] = 1.05 * a
        return p

    return fn


def lean_for(shape: B.BodyShape, base: np.ndarray, target: np.ndarray) -> float:
    """Smallest forward bend that brings the right hand within reach of `target`."""
    reach = (B.UPPER_ARM + B.FOREARM + B.HAND) * shape.height * 0.95
    for lean in np.linspace(0.0, 0.9, 10):
        p = base.copy()
        p[B.SPINE] = lean
        shoulder = B.body_capsules(shape, p)[0][7]
        if np.linalg.norm(target - shoulder) < reach:
            return float(lean)
    return 0.9
