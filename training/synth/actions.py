"""The action classes of the synthetic world and the motion of the body that performs each of them.

`Choreographer` appends actions to a timeline one at a time: each action is a function of normalised time
u in (0, 1] to a pose, started from where the previous action left the body (the first 0.3 s blend from the
previous pose, so motion is continuous), and it moves the objects it handles (cups, the pushed box).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from training.synth import body as B
from training.synth.motion import PoseFn, bending, gait, lean_for, seating, smooth, trapezoid
from training.synth.motion import unwrap as _unwrap
from training.synth.scene import Scene

# The class list (fixed; documented in docs/synthetic_world.md). Order is the label index order.
ACTIONS: tuple[str, ...] = (
    "idle",  # stand still, small sway
    "walk_toward",  # walk toward the camera (mostly a change of depth)
    "walk_away",  # walk away from the camera
    "walk_across",  # walk across the view
    "sit_down",
    "sit",  # sit still
    "stand_up",
    "reach",  # reach for a cup on the table
    "pick_up",  # grasp and lift it
    "put_down",  # put the held cup down on the table or the shelf
    "drink",  # drink from the held cup
    "wave",
    "push",  # push the box along the floor
    "bend",  # bend down toward the floor
)


@dataclass
class Timeline:
    """Everything needed to render a sequence, per frame."""

    poses: np.ndarray  # (F, POSE_SIZE)
    labels: list[str]  # (F,)
    cups: np.ndarray  # (F, 2, 3) cup centres
    box: np.ndarray  # (F, 3) translation of the push box from its start position
    cup_colours: tuple[str, str]  # colour name of cup 0 and cup 1
    activities: list[str]  # activity names in the order performed; the first names the sequence
    decisions: list[Decision]  # the branches whose next action only one cue decides, in frame order


@dataclass(frozen=True)
class Decision:
    """A branch of the grammar: during frames [start, end) the next action (`next`, starting at `end`) is decided
    by one cue (`kind`: "crate_height", only geometry; "cup_colour", only colour) with the value `cue`."""

    kind: str
    cue: str
    start: int
    end: int
    next: str

    def to_dict(self) -> dict[str, str | int]:
        return {"kind": self.kind, "cue": self.cue, "start": self.start, "end": self.end, "next": self.next}


class Choreographer:
    """Builds a `Timeline` action by action until `n_frames` frames are filled."""

    def __init__(self, shape: B.BodyShape, scene: Scene, fps: float, n_frames: int) -> None:
        self.shape, self.scene, self.fps, self.n_frames = shape, scene, fps, n_frames
        self.pose = B.standing_pose(shape, 0.0, 0.0, 0.0)
        self.sitting = False
        self.holding: int | None = None
        self.cup_pos = scene.cup_spots.copy()
        self.box_t = np.zeros(3)
        self._stand_spot = self.pose
        self._seat = scene.seat
        self.decisions: list[Decision] = []
        self._poses: list[np.ndarray] = []
        self._labels: list[str] = []
        self._cups: list[np.ndarray] = []
        self._box: list[np.ndarray] = []

    # state --------------------------------------------------------------------------------------------------------
    @property
    def full(self) -> bool:
        return len(self._poses) >= self.n_frames

    @property
    def frame(self) -> int:
        """Index of the next frame to be emitted."""
        return len(self._poses)

    def decide(self, kind: str, cue: str, start: int, end: int) -> None:
        """Record that the action emitted from frame `end` on was decided by `cue` during [start, end) (call it
        after that action; nothing is recorded when the sequence ended before the action started)."""
        if start < end < len(self._labels):
            self.decisions.append(Decision(kind, cue, start, end, self._labels[end]))

    @property
    def xz(self) -> np.ndarray:
        return self.pose[[B.X, B.Z]].copy()

    def place(self, xz: np.ndarray, heading: float) -> None:
        self.pose = B.standing_pose(self.shape, float(xz[0]), float(xz[1]), heading)

    def stand(self, xz: np.ndarray | None = None, heading: float | None = None) -> np.ndarray:
        """Standing rest pose here (or at xz), carrying the cup if one is held."""
        xz = self.xz if xz is None else xz
        h = float(self.pose[B.HEADING]) if heading is None else heading
        p = B.standing_pose(self.shape, float(xz[0]), float(xz[1]), h)
        return B.carry_right(p) if self.holding is not None else p

    def timeline(self, cup_colours: tuple[str, str], activities: list[str]) -> Timeline:
        while not self.full:
            self.idle(1.0)
        n = self.n_frames
        return Timeline(
            poses=np.array(self._poses[:n]),
            labels=self._labels[:n],
            cups=np.array(self._cups[:n]),
            box=np.array(self._box[:n]),
            cup_colours=cup_colours,
            activities=activities,
            decisions=[d for d in self.decisions if d.end < n],
        )

    def _emit(self, label: str, seconds: float, fn: PoseFn, on_frame: Callable[[float], None] | None = None) -> None:
        assert label in ACTIONS, label
        n = max(int(round(seconds * self.fps)), 1)
        start = self.pose
        n_blend = min(int(round(0.3 * self.fps)), n // 2)
        for k in range(n):
            if self.full:
                break
            u = (k + 1) / n
            p = fn(u)
            if k < n_blend:
                p = B.blend(start, p, smooth((k + 1) / (n_blend + 1)))
            if on_frame is not None:
                on_frame(u)
            if self.holding is not None:
                self.cup_pos[self.holding] = B.hand_positions(self.shape, p)[1] - np.array([0.0, 0.01, 0.0])
            self._poses.append(p)
            self._labels.append(label)
            self._cups.append(self.cup_pos.copy())
            self._box.append(self.box_t.copy())
        self.pose = fn(1.0)

    def _turned(self, h1: float, u: float, frac: float = 0.3) -> float:
        h0 = float(self.pose[B.HEADING])
        return h0 + (_unwrap(h0, h1) - h0) * smooth(u / frac)

    # actions ------------------------------------------------------------------------------------------------------
    def idle(self, seconds: float) -> None:
        base = self.stand()
        t0 = len(self._poses) / self.fps

        def fn(u: float) -> np.ndarray:
            t = t0 + u * seconds
            p = base.copy()
            f, r = B.heading_vectors(float(p[B.HEADING]))
            p[[B.X, B.Y, B.Z]] += r * 0.012 * np.sin(2 * np.pi * 0.25 * t) * self.shape.height
            p[B.HEAD] = 0.08 * np.sin(2 * np.pi * 0.13 * t)
            p[B.L_SH_FLEX] += 0.05 * np.sin(2 * np.pi * 0.2 * t)
            return p

        self._emit("idle", seconds, fn)

    def walk(self, xz: np.ndarray) -> str:
        """Walk to xz; the label (toward / away / across) follows from the direction relative to the camera."""
        p0 = self.xz
        d = np.asarray(xz, dtype=np.float64) - p0
        dist = float(np.linalg.norm(d))
        if dist < 0.05:
            return "idle"
        rot = self.scene.camera.rotation
        fwd, right = rot[[0, 2], 2], rot[[0, 2], 0]
        along, lateral = float(d @ fwd), float(d @ right)
        label = ("walk_away" if along > 0 else "walk_toward") if abs(along) >= abs(lateral) else "walk_across"
        h1 = _unwrap(float(self.pose[B.HEADING]), float(np.arctan2(d[0], d[1])))
        speed = self.shape.speed
        seconds = dist / speed + 0.5
        stride = 0.8 * self.shape.height
        ramp = min(0.6 / seconds, 0.3)
        holding = self.holding is not None

        def fn(u: float) -> np.ndarray:
            s, vel = trapezoid(u, ramp)
            pos = p0 + d * s
            p = B.standing_pose(self.shape, float(pos[0]), float(pos[1]), self._turned(h1, u, 0.2))
            p = gait(self.shape, p, 2 * np.pi * dist * s / stride, vel)
            return B.carry_right(p) if holding else p

        self._emit(label, seconds, fn)
        return label

    def reach(self, cup: int, seconds: float) -> None:
        tgt = self.cup_pos[cup] + np.array([0.0, 0.03, 0.0])
        pos3 = np.array([self.pose[B.X], 0.0, self.pose[B.Z]])
        h1 = _unwrap(float(self.pose[B.HEADING]), B.heading_to(pos3, tgt) - 0.35)  # cup to the front right
        f, _ = B.heading_vectors(h1)
        tgt = tgt - f * 0.03
        base = self.stand(heading=h1)
        lean = lean_for(self.shape, base, tgt)

        def fn(u: float) -> np.ndarray:
            p = base.copy()
            p[B.HEADING] = self._turned(h1, u, 0.35)
            p[B.SPINE] = lean * smooth((u - 0.1) / 0.6)
            p[B.HEAD] = 0.3 * smooth(u / 0.5)
            p[B.R_IK_W] = smooth((u - 0.15) / 0.75)
            p[B.R_TARGET] = tgt
            return p

        self._emit("reach", seconds, fn)

    def pick_up(self, cup: int, seconds: float) -> None:
        base = self.pose.copy()
        carry = B.carry_right(B.standing_pose(self.shape, float(base[B.X]), float(base[B.Z]), float(base[B.HEADING])))
        lift = base[B.R_TARGET] + np.array([0.0, 0.12, 0.0])

        def fn(u: float) -> np.ndarray:
            s = smooth((u - 0.3) / 0.7)
            p = B.blend(base, carry, s)
            p[B.R_TARGET] = base[B.R_TARGET] + (lift - base[B.R_TARGET]) * smooth((u - 0.3) / 0.3)
            return p

        def on_frame(u: float) -> None:
            if u >= 0.3 and self.holding is None:
                self.holding = cup

        self._emit("pick_up", seconds, fn, on_frame)

    def put_down(self, place: np.ndarray, seconds: float) -> None:
        """Put the held cup so that its centre ends at `place`."""
        held = self.holding
        if self.full:  # the timeline ended before the cup was picked up
            return
        assert held is not None, "put_down needs a held cup"
        pos3 = np.array([self.pose[B.X], 0.0, self.pose[B.Z]])
        h1 = _unwrap(float(self.pose[B.HEADING]), B.heading_to(pos3, place) - 0.3)  # place to the front right
        carry = B.carry_right(B.standing_pose(self.shape, float(pos3[0]), float(pos3[2]), h1))
        rest = B.standing_pose(self.shape, float(pos3[0]), float(pos3[2]), h1)
        tgt = place + np.array([0.0, 0.01, 0.0])
        lean = lean_for(self.shape, carry, tgt)

        def fn(u: float) -> np.ndarray:
            if u < 0.6:
                p = carry.copy()
                p[B.HEADING] = self._turned(h1, u, 0.3)
                a = smooth(u / 0.55)
                p[B.SPINE], p[B.HEAD], p[B.R_IK_W] = lean * a, 0.3 * a, a
                p[B.R_TARGET] = tgt
                return p
            p = rest.copy()
            p[B.R_TARGET] = tgt
            a = 1.0 - smooth((u - 0.6) / 0.4)
            p[B.SPINE], p[B.HEAD], p[B.R_IK_W] = lean * a, 0.3 * a, a
            return p

        def on_frame(u: float) -> None:
            if u >= 0.6 and self.holding is not None:
                self.holding = None
                self.cup_pos[held] = place

        self._emit("put_down", seconds, fn, on_frame)

    def drink(self, seconds: float) -> None:
        base = self.pose.copy()
        mouth = B.mouth_position(self.shape, base)

        def fn(u: float) -> np.ndarray:
            a = smooth(u / 0.3) * (1 - smooth((u - 0.75) / 0.25))
            p = base.copy()
            p[B.R_IK_W] = a
            p[B.R_TARGET] = mouth
            p[B.HEAD] = -0.3 * a
            return p

        self._emit("drink", seconds, fn)

    def wave(self, seconds: float) -> None:
        base = self.pose.copy()
        pos3 = np.array([base[B.X], 0.0, base[B.Z]])
        h1 = B.heading_to(pos3, self.scene.camera.position) if not self.sitting else float(base[B.HEADING])

        def fn(u: float) -> np.ndarray:
            t = u * seconds
            a = smooth(u / 0.2) * (1 - smooth((u - 0.85) / 0.15))
            p = base.copy()
            p[B.HEADING] = self._turned(h1, u, 0.2)
            p[B.R_IK_W] = 0.0
            p[B.R_SH_ABD] = 0.1 + a * (2.2 + 0.35 * np.sin(2 * np.pi * 2.2 * t))
            p[B.R_SH_FLEX] = base[B.R_SH_FLEX] * (1 - a) + 0.2 * a
            p[B.R_ELBOW] = base[B.R_ELBOW] * (1 - a) + 0.5 * a
            return p

        self._emit("wave", seconds, fn)

    def sit_down(self, seconds: float, seat: np.ndarray | None = None, heading: float | None = None) -> None:
        """Sit on the chair (default) or on `seat` (pelvis position) facing `heading`, from where the body stands."""
        heading = self.scene.table_heading if heading is None else heading
        self._seat = self.scene.seat if seat is None else seat
        p_stand = self.stand(heading=_unwrap(float(self.pose[B.HEADING]), heading))
        sit = seating(self.shape, self._seat, float(p_stand[B.HEADING]), p_stand)
        self._stand_spot = p_stand

        def fn(u: float) -> np.ndarray:
            p = sit(smooth((u - 0.15) / 0.85))
            p[B.HEADING] = self._turned(float(p_stand[B.HEADING]), u, 0.2)
            return p

        self._emit("sit_down", seconds, fn)
        self.sitting = True

    def stand_up(self, seconds: float) -> None:
        p_stand = self._stand_spot
        sit = seating(self.shape, self._seat, float(p_stand[B.HEADING]), p_stand)
        self._emit("stand_up", seconds, lambda u: sit(1.0 - smooth(u)))
        self.sitting = False

    def sit(self, seconds: float) -> None:
        base = self.pose.copy()
        t0 = len(self._poses) / self.fps

        def fn(u: float) -> np.ndarray:
            t = t0 + u * seconds
            p = base.copy()
            p[B.SPINE] += 0.03 * np.sin(2 * np.pi * 0.2 * t)
            p[B.HEAD] = 0.15 * np.sin(2 * np.pi * 0.11 * t)
            return p

        self._emit("sit", seconds, fn)

    def bend(self, seconds: float) -> None:
        bent = bending(self.shape, self.stand())
        self._emit("bend", seconds, lambda u: bent(smooth(u / 0.4) * (1 - smooth((u - 0.65) / 0.35))))

    def push(self, distance: float, seconds: float) -> None:
        """Push the box straight ahead (the person stands in front of it, facing it) by `distance` metres."""
        base = self.stand()
        f, r = B.heading_vectors(float(base[B.HEADING]))
        box = self.scene.push_box
        top = float(box.hi[1])
        near = float(box.lo[2]) + float(self.box_t[2])
        cx = (float(box.lo[0]) + float(box.hi[0])) / 2 + float(self.box_t[0])
        grips = [np.array([cx, top - 0.03, near + 0.02]) + side * r * 0.15 for side in (-1, 1)]
        stride = 0.5 * self.shape.height
        box_t0 = self.box_t.copy()

        def fn(u: float) -> np.ndarray:
            a = smooth(u / 0.2) * (1 - smooth((u - 0.88) / 0.12))
            d = distance * smooth((u - 0.2) / 0.68)
            moving = 1.0 if 0.25 < u < 0.85 else 0.0
            p = base.copy()
            p[[B.X, B.Z]] += f[[0, 2]] * d
            phase = 2 * np.pi * d / stride
            p[B.L_HIP], p[B.R_HIP] = 0.25 * moving * np.sin(phase) + 0.1 * a, -0.25 * moving * np.sin(phase) + 0.1 * a
            p[B.L_KNEE] = p[B.R_KNEE] = 0.1 + 0.25 * a
            p[B.Y] -= 0.03 * self.shape.height * a
            p[B.SPINE] = 0.6 * a
            p[B.L_IK_W] = p[B.R_IK_W] = a
            p[B.L_TARGET], p[B.R_TARGET] = grips[0] + f * d, grips[1] + f * d
            return p

        def on_frame(u: float) -> None:
            self.box_t = box_t0 + f * distance * smooth((u - 0.2) / 0.68)

        self._emit("push", seconds, fn, on_frame)

    def box_front(self) -> np.ndarray:
        """Where to stand in front of the crate (facing it to push it, or turning to sit on it): the same spot
        for either height, so the walk there does not tell the height."""
        box = self.scene.push_box
        cx = (box.lo[0] + box.hi[0]) / 2 + self.box_t[0]
        return np.array([cx, box.lo[2] + self.box_t[2] - 0.28])

    def crate_seat(self) -> np.ndarray:
        """Pelvis position seated on the (low) crate, facing the camera, from `box_front`: a thigh behind it."""
        box = self.scene.push_box
        front = self.box_front()
        top = float(box.hi[1]) + float(self.box_t[1])
        return np.array([front[0], top + 0.05 * self.shape.height, front[1] + 0.92 * B.THIGH * self.shape.height])

    def table_place(self, cup: int) -> np.ndarray:
        """The cup's original spot on the table."""
        return np.asarray(self.scene.cup_spots[cup], dtype=np.float64)

    def shelf_place(self) -> np.ndarray:
        return np.asarray(self.scene.shelf_place, dtype=np.float64)
