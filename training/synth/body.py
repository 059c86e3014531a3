"""The articulated person of the synthetic world: shape, pose vector, forward and inverse kinematics.

World frame: x to the right of the default camera, y up, z away from the camera; metres. A body is 18 capsules
(a sphere is a capsule with equal ends): torso (two side by side, so it is wider than deep), pelvis, neck, head,
hair cap, upper and lower arms, hands, thighs, shanks and feet. Front and back look alike on purpose (no face):
whether a person walks toward or away from the camera is then mostly a depth cue.

A pose is a flat float vector (`POSE_SIZE`) so poses blend linearly; hand targets (world points with a weight)
drive the arms by two-bone inverse kinematics on top of the joint angles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# pose vector layout ------------------------------------------------------------------------------------------------
X, Y, Z, HEADING, SPINE, HEAD = 0, 1, 2, 3, 4, 5  # pelvis (hip joint centre) position, heading, forward bends
L_HIP, R_HIP, L_KNEE, R_KNEE = 6, 7, 8, 9  # thigh angle forward from vertical, knee bend (rad)
L_SH_FLEX, R_SH_FLEX, L_SH_ABD, R_SH_ABD, L_ELBOW, R_ELBOW = 10, 11, 12, 13, 14, 15  # arm angles (rad)
L_IK_W, R_IK_W = 16, 17  # weight of the hand target over the joint angles, 0..1
L_TARGET, R_TARGET = slice(18, 21), slice(21, 24)  # hand target, world point
POSE_SIZE = 24

# proportions as fractions of body height
THIGH, SHANK, ANKLE_H = 0.245, 0.245, 0.04
SPINE_LEN, NECK_LEN, HEAD_UP = 0.29, 0.06, 0.11
HIP_W, SHOULDER_W, UPPER_ARM, FOREARM, HAND = 0.05, 0.11, 0.17, 0.145, 0.04
LEG_LEN = THIGH + SHANK + ANKLE_H  # hip joint height when standing straight

# primitive order of `body_capsules`; colour slot of each
PARTS = (
    ("torso_l", "shirt"),
    ("torso_r", "shirt"),
    ("pelvis", "trousers"),
    ("neck", "skin"),
    ("head", "skin"),
    ("hair", "hair"),
    ("upper_arm_l", "shirt"),
    ("upper_arm_r", "shirt"),
    ("forearm_l", "sleeve"),
    ("forearm_r", "sleeve"),
    ("hand_l", "skin"),
    ("hand_r", "skin"),
    ("thigh_l", "trousers"),
    ("thigh_r", "trousers"),
    ("shank_l", "trousers"),
    ("shank_r", "trousers"),
    ("foot_l", "shoes"),
    ("foot_r", "shoes"),
)
N_PARTS = len(PARTS)
UP = np.array([0.0, 1.0, 0.0])

SKIN_TONES = ((0.93, 0.76, 0.64), (0.80, 0.60, 0.46), (0.62, 0.44, 0.32), (0.42, 0.29, 0.21), (0.96, 0.82, 0.72))
HAIR = ((0.10, 0.08, 0.06), (0.35, 0.22, 0.12), (0.62, 0.48, 0.28), (0.55, 0.55, 0.55), (0.20, 0.14, 0.10))


@dataclass(frozen=True)
class BodyShape:
    """Size and appearance of one person."""

    height: float  # metres
    girth: float  # scales limb radii (1 = average)
    colours: dict[str, tuple[float, float, float]]  # slot -> albedo RGB in [0, 1]
    speed: float  # walking speed, m/s

    def radius(self, part: str) -> float:
        base = {
            "torso_l": 0.062, "torso_r": 0.062, "pelvis": 0.066, "neck": 0.03, "head": 0.062, "hair": 0.062,
            "upper_arm_l": 0.031, "upper_arm_r": 0.031, "forearm_l": 0.025, "forearm_r": 0.025,
            "hand_l": 0.027, "hand_r": 0.027, "thigh_l": 0.05, "thigh_r": 0.05, "shank_l": 0.037, "shank_r": 0.037,
            "foot_l": 0.024, "foot_r": 0.024,
        }[part]  # fmt: skip
        scale = 1.0 if part in ("head", "hair", "hand_l", "hand_r") else self.girth
        return base * scale * self.height


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def sample_shape(rng: np.random.Generator) -> BodyShape:
    """A random person: height 1.45-2.00 m, girth, clothing (never the pure red or blue of the cups), speed."""
    height = float(rng.uniform(1.45, 2.00))
    # shirt hues avoid the cup colours (red ~0, blue ~0.62) so a held cup stands out
    hue = float(rng.choice([0.08, 0.13, 0.30, 0.40, 0.48, 0.78, 0.88]) + rng.uniform(-0.03, 0.03))
    shirt = _hsv(hue % 1.0, float(rng.uniform(0.25, 0.7)), float(rng.uniform(0.45, 0.9)))
    if rng.random() < 0.25:  # grey or white shirt
        g = float(rng.uniform(0.3, 0.9))
        shirt = (g, g, g)
    trousers = _hsv(float(rng.uniform(0.55, 0.7)), float(rng.uniform(0.1, 0.5)), float(rng.uniform(0.15, 0.45)))
    if rng.random() < 0.4:
        trousers = _hsv(float(rng.uniform(0.05, 0.12)), float(rng.uniform(0.2, 0.5)), float(rng.uniform(0.25, 0.6)))
    skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    colours = {
        "shirt": shirt,
        "sleeve": shirt if rng.random() < 0.6 else skin,
        "trousers": trousers,
        "skin": skin,
        "hair": HAIR[int(rng.integers(len(HAIR)))],
        "shoes": _hsv(float(rng.uniform(0, 1)), float(rng.uniform(0, 0.3)), float(rng.uniform(0.08, 0.5))),
    }
    girth, speed = float(rng.uniform(0.8, 1.3)), float(rng.uniform(0.8, 1.4))
    return BodyShape(height=height, girth=girth, colours=colours, speed=speed)


def part_colours(shape: BodyShape) -> np.ndarray:
    """(N_PARTS, 3) albedo of each primitive."""
    return np.array([shape.colours[slot] for _, slot in PARTS], dtype=np.float32)


def part_radii(shape: BodyShape) -> np.ndarray:
    return np.array([shape.radius(name) for name, _ in PARTS], dtype=np.float64)


def standing_pose(shape: BodyShape, x: float, z: float, heading: float) -> np.ndarray:
    """Upright pose, arms relaxed at the sides."""
    p = np.zeros(POSE_SIZE)
    p[X], p[Y], p[Z], p[HEADING] = x, LEG_LEN * shape.height, z, heading
    p[L_KNEE] = p[R_KNEE] = 0.03
    p[L_SH_ABD] = p[R_SH_ABD] = 0.1
    p[L_ELBOW] = p[R_ELBOW] = 0.2
    return p


def carry_right(p: np.ndarray) -> np.ndarray:
    """The same pose with the right hand holding something in front of the waist."""
    q = p.copy()
    q[R_SH_FLEX], q[R_SH_ABD], q[R_ELBOW] = 0.3, 0.12, 1.45
    q[R_IK_W] = 0.0
    return q


def heading_vectors(heading: float) -> tuple[np.ndarray, np.ndarray]:
    """(forward, right) unit vectors of a heading; heading 0 faces +z (away from the default camera)."""
    f = np.array([np.sin(heading), 0.0, np.cos(heading)])
    r = np.array([np.cos(heading), 0.0, -np.sin(heading)])
    return f, r


def heading_to(src: np.ndarray, dst: np.ndarray) -> float:
    """Heading that faces from world point src toward dst (horizontal)."""
    return float(np.arctan2(dst[0] - src[0], dst[2] - src[2]))


def leg_ik(shape: BodyShape, hip: np.ndarray, ankle: np.ndarray, heading: float) -> tuple[float, float]:
    """Thigh angle and knee bend that put the ankle at (or toward) `ankle`, knee in front, in the sagittal plane."""
    f, _ = heading_vectors(heading)
    d = ankle - hip
    fwd, down = float(d @ f), float(-d[1])
    l1, l2 = THIGH * shape.height, SHANK * shape.height
    dist = float(np.clip(np.hypot(fwd, down), abs(l1 - l2) + 1e-4, l1 + l2 - 1e-6))
    gamma = np.arctan2(fwd, down)
    delta = np.arccos(np.clip((l1 * l1 + dist * dist - l2 * l2) / (2 * l1 * dist), -1, 1))
    knee = np.pi - np.arccos(np.clip((l1 * l1 + l2 * l2 - dist * dist) / (2 * l1 * l2), -1, 1))
    return float(gamma + delta), float(knee)


def _norm(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _arm(
    shape: BodyShape, p: np.ndarray, shoulder: np.ndarray, side: float, spine: np.ndarray, fwd_t: np.ndarray,
    right: np.ndarray, angles: tuple[int, int, int], ik_w: int, target: slice,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Elbow and hand centre of one arm (side -1 left, +1 right)."""
    h = shape.height
    l1, l2 = UPPER_ARM * h, (FOREARM + HAND) * h
    flex, abd, bend = (p[i] for i in angles)
    outward = side * right
    d = -spine * np.cos(flex) + fwd_t * np.sin(flex)
    d = _norm(d * np.cos(abd) + outward * np.sin(abd))
    w = fwd_t - (fwd_t @ d) * d
    if np.linalg.norm(w) < 1e-3:
        w = spine - (spine @ d) * d
    w = _norm(w)
    elbow = shoulder + d * l1
    hand = elbow + (d * np.cos(bend) + w * np.sin(bend)) * l2
    weight = float(np.clip(p[ik_w], 0.0, 1.0))
    if weight <= 0.0:
        return elbow, hand
    goal = hand + (p[target] - hand) * weight
    axis = goal - shoulder
    dist = float(np.clip(np.linalg.norm(axis), abs(l1 - l2) + 1e-3, l1 + l2 - 1e-4))
    axis = _norm(axis)
    a = (l1 * l1 - l2 * l2 + dist * dist) / (2 * dist)
    pole = -spine + 0.6 * outward - 0.3 * fwd_t
    pole = pole - (pole @ axis) * axis
    if np.linalg.norm(pole) < 1e-6:
        pole = outward - (outward @ axis) * axis
    elbow_ik = shoulder + axis * a + _norm(pole) * np.sqrt(max(l1 * l1 - a * a, 0.0))
    elbow = shoulder + _norm(elbow + (elbow_ik - elbow) * weight - shoulder) * l1
    return elbow, shoulder + axis * dist


def body_capsules(shape: BodyShape, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward kinematics: (N_PARTS, 3) start points, (N_PARTS, 3) end points, (2, 3) left and right hand centres."""
    h = shape.height
    f, r = heading_vectors(float(p[HEADING]))
    pelvis = p[[X, Y, Z]].astype(np.float64)
    sp = float(p[SPINE])
    spine = np.cos(sp) * UP + np.sin(sp) * f
    fwd_t = np.cos(sp) * f - np.sin(sp) * UP
    neck = pelvis + spine * SPINE_LEN * h
    hp = float(p[HEAD])
    head_dir = np.cos(hp) * spine + np.sin(hp) * fwd_t
    head = neck + head_dir * HEAD_UP * h
    a = np.zeros((N_PARTS, 3))
    b = np.zeros((N_PARTS, 3))
    for i, side in enumerate((-1.0, 1.0)):
        a[i] = pelvis + side * r * 0.045 * h - spine * 0.02 * h
        b[i] = neck + side * r * 0.05 * h - spine * 0.035 * h
    a[2], b[2] = pelvis - r * HIP_W * h, pelvis + r * HIP_W * h
    a[3], b[3] = neck, neck + head_dir * NECK_LEN * h
    a[4] = b[4] = head
    a[5] = b[5] = head + head_dir * 0.014 * h
    hands = np.zeros((2, 3))
    arm_slots = ((L_SH_FLEX, L_SH_ABD, L_ELBOW), (R_SH_FLEX, R_SH_ABD, R_ELBOW))
    for i, side in enumerate((-1.0, 1.0)):
        shoulder = neck + side * r * SHOULDER_W * h - spine * 0.035 * h
        ik_w, target = (L_IK_W, L_TARGET) if side < 0 else (R_IK_W, R_TARGET)
        elbow, hand = _arm(shape, p, shoulder, side, spine, fwd_t, r, arm_slots[i], ik_w, target)
        wrist = hand - _norm(hand - elbow) * HAND * h
        a[6 + i], b[6 + i] = shoulder, elbow
        a[8 + i], b[8 + i] = elbow, wrist
        a[10 + i] = b[10 + i] = hand
        hands[i] = hand
    for i, (hip_i, knee_i) in enumerate(((L_HIP, L_KNEE), (R_HIP, R_KNEE))):
        side = -1.0 if i == 0 else 1.0
        hip = pelvis + side * r * HIP_W * h
        alpha, beta = float(p[hip_i]), float(p[knee_i])
        knee = hip + (-UP * np.cos(alpha) + f * np.sin(alpha)) * THIGH * h
        ankle = knee + (-UP * np.cos(alpha - beta) + f * np.sin(alpha - beta)) * SHANK * h
        a[12 + i], b[12 + i] = hip, knee
        a[14 + i], b[14 + i] = knee, ankle
        heel = ankle - UP * 0.015 * h - f * 0.015 * h
        a[16 + i], b[16 + i] = heel, heel + f * 0.1 * h
    return a, b, hands


def hand_positions(shape: BodyShape, p: np.ndarray) -> np.ndarray:
    """(2, 3) left and right hand centres of a pose."""
    return body_capsules(shape, p)[2]


def mouth_position(shape: BodyShape, p: np.ndarray) -> np.ndarray:
    """Point just in front of the mouth, where a cup goes when drinking."""
    h = shape.height
    f, _ = heading_vectors(float(p[HEADING]))
    sp = float(p[SPINE])
    spine = np.cos(sp) * UP + np.sin(sp) * f
    fwd_t = np.cos(sp) * f - np.sin(sp) * UP
    neck = p[[X, Y, Z]] + spine * SPINE_LEN * h
    return np.asarray(neck + spine * 0.085 * h + fwd_t * 0.1 * h, dtype=np.float64)


def blend(p0: np.ndarray, p1: np.ndarray, s: float) -> np.ndarray:
    """Linear blend of two poses; a hand target with zero weight on one side takes the other side's target."""
    out = p0 + (p1 - p0) * s
    for w, t in ((L_IK_W, L_TARGET), (R_IK_W, R_TARGET)):
        if p0[w] <= 0.0:
            out[t] = p1[t]
        elif p1[w] <= 0.0:
            out[t] = p0[t]
    return out
