"""Room, furniture, objects, camera and lights of one synthetic sequence, sampled from a seed.

World frame: x right, y up, z away from the camera (metres). The person moves along two lanes parallel to z: the
table lane (table beside it near the camera, a shelf at its far end against the back wall) and the chair lane
(a chair beside it near the camera, a crate at its far end). Which side the table is on, the room size, the
colours, the camera pose and the occluders between the camera and the lanes vary with the seed.

The crate is the world's colour-identical decision (world v2): it is either low (stool height, sat on) or tall
(hip height, pushed), and its colour is drawn independently of its height from one palette. It is shaded flat
(the same radiance on every face, `render.compose`), so over the pixels of a low crate a tall crate at the same
spot gives the same colour; only its geometry (height, and so depth) differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rgbd.frame import Intrinsics
from training.synth.body import THIGH, BodyShape

RGB = tuple[float, float, float]
CUP_COLOURS = {"red": (0.82, 0.08, 0.07), "blue": (0.08, 0.22, 0.85)}
CUP_RADIUS, CUP_HALF = 0.04, 0.035  # capsule radius and half the length of its axis
CUP_LIFT = CUP_RADIUS + CUP_HALF  # centre height above the surface it stands on
CRATE_LOW, CRATE_TALL = (0.40, 0.46), (0.78, 0.92)  # crate heights (m): a stool to sit on, a crate to push
CRATE_COLOURS = ((0.62, 0.45, 0.28), (0.30, 0.50, 0.30), (0.55, 0.55, 0.50), (0.35, 0.40, 0.62), (0.70, 0.62, 0.35))


@dataclass(frozen=True)
class Box:
    """Axis-aligned box (furniture part), world coordinates."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    colour: tuple[float, float, float]
    grain: float = 0.0  # amplitude of a wood-like texture

    def shifted(self, d: np.ndarray) -> Box:
        lo = tuple(float(v) for v in np.asarray(self.lo) + d)
        hi = tuple(float(v) for v in np.asarray(self.hi) + d)
        return Box(lo, hi, self.colour, self.grain)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: centre, rotation (columns: camera x right, y down, z forward in world) and intrinsics."""

    position: np.ndarray
    rotation: np.ndarray
    intrinsics: Intrinsics

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) world points -> (N, 2) pixel coordinates and (N,) depth along the optical axis."""
        pc = (pts - self.position) @ self.rotation
        z = pc[:, 2]
        k = self.intrinsics
        zs = np.where(z > 1e-6, z, 1e-6)
        return np.stack([k.fx * pc[:, 0] / zs + k.cx, k.fy * pc[:, 1] / zs + k.cy], axis=1), z


@dataclass(frozen=True)
class Room:
    half_width: float
    back_z: float
    front_z: float
    height: float
    wall: tuple[float, float, float]
    floor: tuple[float, float, float]
    floor_kind: str  # "planks" or "tiles"
    door: tuple[float, float, float]  # x0, x1, height of the opening in the back wall
    corridor_z: float  # what the door opens onto (beyond the depth range)
    pictures: tuple[tuple[float, ...], ...]  # (wall 0 left / 1 right / 2 back, u0, u1, y0, y1, r, g, b)
    rug: tuple[float, ...]  # x0, x1, z0, z1, r, g, b
    texture_seed: float


@dataclass(frozen=True)
class Lights:
    lamp: np.ndarray  # ceiling lamp position
    lamp_power: float
    sun: np.ndarray  # unit direction toward the window light
    sun_power: float
    ambient: float
    tint: np.ndarray  # colour temperature, (3,)


@dataclass(frozen=True)
class Scene:
    room: Room
    camera: Camera
    lights: Lights
    side: float  # +1: table lane on the right of the room, -1: on the left
    spots: dict[str, np.ndarray]  # named standing places (x, z)
    static_boxes: tuple[Box, ...]
    push_box: Box  # the box at the far end of the chair lane, at its start position
    cup_spots: np.ndarray  # (2, 3) cup centres on the table: the one nearer the camera first
    shelf_place: np.ndarray  # (3,) where a cup goes on the shelf
    seat: np.ndarray  # (3,) pelvis position when seated
    table_heading: float  # heading that faces the table / the chair's front
    crate_tall: bool  # the crate (push_box) is tall (pushed) or low (a stool, sat on)
    occluders: int  # how many occluders stand between the camera and the lanes (part of static_boxes)


def _colour(rng: np.random.Generator, lo: float, hi: float, sat: float) -> tuple[float, float, float]:
    base = rng.uniform(lo, hi)
    c = base * (1 + rng.uniform(-sat, sat, 3))
    return tuple(float(v) for v in np.clip(c, 0, 1))  # type: ignore[return-value]


def _legs(x0: float, x1: float, z0: float, z1: float, top: float, t: float, colour: RGB) -> list[Box]:
    return [
        Box((x, 0.0, z), (x + t, top, z + t), colour)
        for x in (x0, x1 - t)
        for z in (z0, z1 - t)
    ]  # fmt: skip


def sample_camera(rng: np.random.Generator, width: int, height: int, look_z: float) -> Camera:
    """A camera on a shelf, a tripod or high on the wall: 0.9-2.1 m high, off-centre, yawed, pitched, rolled."""
    cam_h = float(rng.uniform(0.9, 2.1))
    pos = np.array([float(rng.uniform(-0.5, 0.5)), cam_h, 0.0])
    yaw = float(rng.uniform(-0.12, 0.12)) - pos[0] * 0.08
    pitch = float(np.arctan2(cam_h - 0.85, look_z)) + float(rng.uniform(-0.05, 0.05))
    roll = float(rng.uniform(-0.05, 0.05))
    fwd = np.array([np.sin(yaw) * np.cos(pitch), -np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    right0 = np.array([np.cos(yaw), 0.0, -np.sin(yaw)])
    down0 = np.cross(right0, fwd)
    right, down = np.cos(roll) * right0 + np.sin(roll) * down0, np.cos(roll) * down0 - np.sin(roll) * right0
    hfov = np.deg2rad(rng.uniform(58.0, 76.0))
    fx = (width / 2) / np.tan(hfov / 2)
    intr = Intrinsics(
        width=width,
        height=height,
        fx=float(fx),
        fy=float(fx),
        cx=float((width - 1) / 2 + rng.uniform(-0.01, 0.01) * width),
        cy=float((height - 1) / 2 + rng.uniform(-0.01, 0.01) * height),
    )
    return Camera(position=pos, rotation=np.stack([right, down, fwd], axis=1), intrinsics=intr)


def _occluders(rng: np.random.Generator, near_z: float, lanes: tuple[float, float]) -> list[Box]:
    """0-2 things between the camera and the lanes (a plant stand, a cabinet, a coat rack, a sofa back), kept
    in front of the table and the chair (which start 0.45 m before the near row), so they hide parts of the person
    and the furniture but never meet them."""
    out: list[Box] = []
    for _ in range(int(rng.choice(3, p=(0.3, 0.45, 0.25)))):
        w, d = float(rng.uniform(0.2, 0.5)), float(rng.uniform(0.2, 0.45))
        h = float(rng.uniform(0.5, 0.9)) if rng.random() < 0.5 else float(rng.uniform(1.2, 1.9))
        z0 = float(rng.uniform(1.1, near_z - 0.5 - d))
        x = float(rng.choice(lanes)) + float(rng.uniform(-0.6, 0.6))
        out.append(Box((x - w / 2, 0.0, z0), (x + w / 2, h, z0 + d), _colour(rng, 0.2, 0.8, 0.5), grain=0.04))
    return out


def sample_scene(
    rng: np.random.Generator, shape: BodyShape, width: int, height: int, crate_tall: bool | None = None
) -> Scene:
    """A room with its furniture, the camera and the lights; the chair fits the person's thigh length.

    `crate_tall` forces the crate's height class (everything else is drawn as usual, so the two variants of a
    sequence differ only in the crate's height)."""
    s = 1.0 if rng.random() < 0.5 else -1.0
    near_z = float(rng.uniform(2.1, 2.6))
    far_z = near_z + float(rng.uniform(1.6, 2.0))
    back_z = far_z + float(rng.uniform(1.7, 2.2))
    half_w = float(rng.uniform(2.0, 3.2))
    room_h = float(rng.uniform(2.5, 3.2))
    lane_t, lane_c = s * float(rng.uniform(0.5, 0.6)), -s * float(rng.uniform(0.5, 0.6))
    wood = _colour(rng, 0.35, 0.6, 0.25)
    wood = (wood[0], wood[1] * 0.8, wood[2] * 0.6)
    boxes: list[Box] = []
    # table beside the table lane, near the camera
    top = float(rng.uniform(0.72, 0.78))
    tx0, tx1 = sorted((lane_t + s * 0.2, lane_t + s * 0.85))
    tz0, tz1 = near_z - 0.45, near_z + 0.45
    boxes.append(Box((tx0, top - 0.04, tz0), (tx1, top, tz1), wood, grain=0.08))
    boxes += _legs(tx0 + 0.03, tx1 - 0.03, tz0 + 0.03, tz1 - 0.03, top - 0.04, 0.05, wood)
    cup_x = lane_t + s * 0.34
    cup_spots = np.array([[cup_x, top + CUP_LIFT, near_z - 0.18], [cup_x, top + CUP_LIFT, near_z + 0.18]])
    # chair beside the chair lane, facing the lane (the same heading as facing the table)
    chair_c = _colour(rng, 0.2, 0.7, 0.5)
    seat_y = float(rng.uniform(0.43, 0.48))
    seat_x = lane_c - s * 0.92 * THIGH * shape.height
    cx0, cx1 = seat_x - 0.22, seat_x + 0.22
    cz0, cz1 = near_z - 0.22, near_z + 0.22
    boxes.append(Box((cx0, seat_y - 0.04, cz0), (cx1, seat_y, cz1), chair_c))
    boxes += _legs(cx0 + 0.02, cx1 - 0.02, cz0 + 0.02, cz1 - 0.02, seat_y - 0.04, 0.04, chair_c)
    bx0, bx1 = sorted((seat_x - s * 0.24, seat_x - s * 0.19))
    boxes.append(Box((bx0, seat_y, cz0), (bx1, seat_y + 0.45, cz1), chair_c))
    seat = np.array([lane_c - s * 0.92 * THIGH * shape.height + s * 0.02, seat_y + 0.05 * shape.height, near_z])
    # shelf against the back wall at the end of the table lane
    shelf_c = _colour(rng, 0.3, 0.85, 0.3)
    shelf_h = float(rng.uniform(0.9, 1.1))
    boxes.append(Box((lane_t - 0.45, 0.0, back_z - 0.38), (lane_t + 0.45, shelf_h, back_z), shelf_c, grain=0.05))
    shelf_place = np.array([lane_t + float(rng.uniform(-0.15, 0.15)), shelf_h + CUP_LIFT, back_z - 0.2])
    # the crate at the far end of the chair lane: colour drawn independently of its height class
    box_c = CRATE_COLOURS[int(rng.integers(len(CRATE_COLOURS)))]
    tall = bool(rng.random() < 0.5)
    tall = tall if crate_tall is None else crate_tall
    u = float(rng.uniform(0, 1))  # the same quantile of either height range
    lo_h, hi_h = CRATE_TALL if tall else CRATE_LOW
    bw, bh, bd = float(rng.uniform(0.45, 0.55)), lo_h + u * (hi_h - lo_h), 0.42
    push_box = Box((lane_c - bw / 2, 0.0, far_z + 0.3), (lane_c + bw / 2, bh, far_z + 0.3 + bd), box_c)
    spots = {
        "table": np.array([lane_t, near_z]),
        "chair": np.array([lane_c, near_z]),
        "far_table": np.array([lane_t, far_z]),
        "far_chair": np.array([lane_c, far_z - 0.15]),
        "mid_chair": np.array([lane_c, (near_z + far_z) / 2]),
        "shelf": np.array([lane_t, back_z - 0.8]),
    }
    door_c = lane_c + float(rng.uniform(-0.4, 0.2)) * s
    pictures = []
    for wall in (0, 1, 2):
        if rng.random() < 0.7:
            u0 = float(rng.uniform(1.5, 4.0)) if wall < 2 else lane_t - s * float(rng.uniform(0.6, 1.2))
            w = float(rng.uniform(0.4, 0.9))
            y0 = float(rng.uniform(1.2, 1.5))
            y1 = y0 + float(rng.uniform(0.3, 0.6))
            pictures.append((float(wall), u0, u0 + w, y0, y1, *_colour(rng, 0.2, 0.8, 0.6)))
    rug_c = _colour(rng, 0.3, 0.7, 0.5)
    rug = (min(lane_t, lane_c) + 0.1, max(lane_t, lane_c) - 0.1, near_z - 0.6, far_z + 0.2, *rug_c)
    room = Room(
        half_width=half_w,
        back_z=back_z,
        front_z=-1.0,
        height=room_h,
        wall=_colour(rng, 0.55, 0.9, 0.15),
        floor=wood if rng.random() < 0.5 else _colour(rng, 0.3, 0.7, 0.2),
        floor_kind="planks" if rng.random() < 0.6 else "tiles",
        door=(door_c - 0.45, door_c + 0.45, 2.05),
        corridor_z=back_z + 3.5,
        pictures=tuple(pictures),
        rug=rug if rng.random() < 0.6 else (),
        texture_seed=float(rng.uniform(0, 100)),
    )
    occluders = _occluders(rng, near_z, (lane_t, lane_c))
    boxes += occluders
    camera = sample_camera(rng, width, height, (near_z + far_z) / 2)
    lamp = np.array([float(rng.uniform(-1.0, 1.0)), room_h - 0.1, float(rng.uniform(near_z, far_z))])
    sun = np.array([float(rng.uniform(-1, 1)), float(rng.uniform(0.5, 1.0)), float(rng.uniform(-1, 0.2))])
    warm = float(rng.uniform(-1, 1))
    lights = Lights(
        lamp=lamp,
        lamp_power=float(rng.uniform(1.6, 2.4)),
        sun=sun / np.linalg.norm(sun),
        sun_power=float(rng.uniform(0.15, 0.35)),
        ambient=float(rng.uniform(0.3, 0.42)),
        tint=np.array([1.0 + 0.08 * warm, 1.0, 1.0 - 0.1 * warm]),
    )
    return Scene(
        room=room,
        camera=camera,
        lights=lights,
        side=s,
        spots=spots,
        static_boxes=tuple(boxes),
        push_box=push_box,
        cup_spots=cup_spots,
        shelf_place=shelf_place,
        seat=seat,
        table_heading=s * np.pi / 2,
        crate_tall=tall,
        occluders=len(occluders),
    )
