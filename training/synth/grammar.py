"""Activities: random chains of actions under a small grammar, so that the past tells about the future.

An activity template starts at a named spot and performs a chain of 4-8 actions with random durations and
random branches. Two branches are decided by cues that only one modality carries:

- colour only: after `reach` and `pick_up` of a cup (same motion for either cup), the red cup is drunk from
  (`drink`, then `put_down` on the table: activity `coffee_break`) and the blue cup is carried away to the shelf
  (`walk_away`, then `put_down`: activity `tidy_cup`). The cups' positions are independent of their colours.
- geometry only (world v2): the crate at the far end of the chair lane is low (a stool) or tall, with the same
  colour law and flat shading. After the walk to it (`walk_away`, to the same spot for either height), a low
  crate is sat on (`sit_down`, activity `crate_sit`) and a tall one is bent over and pushed (`bend`, `push`:
  `crate_push`). `errand_*` starts between the chair and the crate: `walk_toward` leads to `sit_down` on the
  chair (`errand_sit`), `walk_away` to the crate and its height rule (`errand_crate`).

Every such branch is recorded as a `Decision` (the frames during which the next action is decided by the cue),
so the number of test windows that end inside one can be counted (`training.synth.stats`).

A sequence performs one activity (its name is the sequence's activity) and, when frames remain, more activities
chained by walks to their start spots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from training.synth import body as B
from training.synth.actions import Choreographer, Timeline
from training.synth.scene import Scene

ACTIVITIES: tuple[str, ...] = (
    "coffee_break",
    "tidy_cup",
    "rest",
    "crate_sit",
    "crate_push",
    "greet",
    "errand_sit",
    "errand_crate",
)
CRATE_TALL_OF = {"crate_sit": False, "crate_push": True}  # activities that need one crate height


@dataclass
class _Ctx:
    ch: Choreographer
    rng: np.random.Generator
    colours: list[str]
    tempo: float
    forced_colour: str | None = None

    def dur(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi)) * self.tempo


def _cup(c: _Ctx, branch: str | None) -> str:
    ch, spots = c.ch, c.ch.scene.spots
    c.ch.idle(c.dur(0.6, 1.6))
    ch.walk(spots["table"])
    on_table = [i for i in (0, 1) if np.allclose(ch.cup_pos[i], ch.scene.cup_spots[i])]
    k = on_table[int(c.rng.integers(len(on_table)))]
    if c.forced_colour is not None:  # decide the colours so that the picked cup has the forced colour
        other = "blue" if c.forced_colour == "red" else "red"
        c.colours[k], c.colours[1 - k] = c.forced_colour, other
        c.forced_colour = None
    start = ch.frame
    ch.reach(k, c.dur(0.9, 1.4))
    ch.pick_up(k, c.dur(1.0, 1.5))
    end = ch.frame
    name = _after_pick_up(c, k)
    ch.decide("cup_colour", c.colours[k], start, end)
    return name


def _after_pick_up(c: _Ctx, k: int) -> str:
    ch, spots = c.ch, c.ch.scene.spots
    if c.colours[k] == "red":
        ch.drink(c.dur(2.0, 3.5))
        ch.put_down(ch.table_place(k), c.dur(1.1, 1.6))
        r = c.rng.random()
        if r < 0.4:
            ch.walk(spots["far_table"])
        elif r < 0.7:
            ch.wave(c.dur(1.5, 2.5))
        else:
            ch.idle(c.dur(1.0, 2.0))
        return "coffee_break"
    ch.walk(spots["shelf"])
    ch.put_down(ch.shelf_place(), c.dur(1.1, 1.6))
    if c.rng.random() < 0.5:
        ch.idle(c.dur(1.0, 2.0))
    else:
        ch.bend(c.dur(1.5, 2.2))
    return "tidy_cup"


def _rest(c: _Ctx, branch: str | None) -> str:
    ch, spots = c.ch, c.ch.scene.spots
    ch.idle(c.dur(0.5, 1.5))
    ch.walk(spots["chair"])
    ch.sit_down(c.dur(1.3, 2.0))
    ch.sit(c.dur(2.0, 4.0))
    if c.rng.random() < 0.5:
        ch.wave(c.dur(1.5, 2.5))
        ch.sit(c.dur(1.0, 2.0))
    ch.stand_up(c.dur(1.3, 2.0))
    if c.rng.random() < 0.5:
        ch.walk(spots["far_chair"])
    else:
        ch.idle(c.dur(1.0, 2.0))
    return "rest"


def _push_box(c: _Ctx) -> None:
    ch = c.ch
    ch.bend(c.dur(1.5, 2.2))
    room = ch.scene.room.back_z - 0.25 - (ch.scene.push_box.hi[2] + ch.box_t[2])
    dist = min(float(c.rng.uniform(0.5, 0.9)), room)
    if dist > 0.2:
        ch.push(dist, (dist / 0.35 + 1.2) * c.tempo)


def _at_crate(c: _Ctx, start: int) -> str:
    """Just arrived at the crate (walking since frame `start`): its height decides what follows."""
    ch = c.ch
    end = ch.frame
    if ch.scene.crate_tall:
        _push_box(c)
        name = "crate_push"
    else:
        ch.sit_down(c.dur(1.3, 2.0), ch.crate_seat(), np.pi)  # turn around to face the camera, sit on it
        ch.sit(c.dur(1.5, 3.0))
        ch.stand_up(c.dur(1.3, 2.0))
        name = "crate_sit"
    ch.decide("crate_height", "tall" if ch.scene.crate_tall else "low", start, end)
    return name


def _crate(c: _Ctx, branch: str | None) -> str:
    ch, spots = c.ch, c.ch.scene.spots
    ch.idle(c.dur(0.6, 1.5))
    start = ch.frame
    ch.walk(ch.box_front())
    name = _at_crate(c, start)
    ch.idle(c.dur(0.8, 1.5))
    ch.walk(spots["chair"])
    if c.rng.random() < 0.5:
        ch.wave(c.dur(1.5, 2.5))
    else:
        ch.sit_down(c.dur(1.3, 2.0))
        ch.sit(c.dur(1.5, 3.0))
        ch.stand_up(c.dur(1.3, 2.0))
    return name


def _greet(c: _Ctx, branch: str | None) -> str:
    ch, spots = c.ch, c.ch.scene.spots
    lane = "table" if abs(ch.xz[0] - spots["table"][0]) < abs(ch.xz[0] - spots["chair"][0]) else "chair"
    ch.idle(c.dur(0.5, 1.2))
    ch.walk(spots[lane])
    ch.wave(c.dur(1.5, 3.0))
    if c.rng.random() < 0.5:
        ch.walk(spots["far_" + lane])
    else:
        ch.walk(spots["chair" if lane == "table" else "table"])
        ch.idle(c.dur(1.0, 2.0))
    return "greet"


def _errand(c: _Ctx, branch: str | None) -> str:
    ch, spots = c.ch, c.ch.scene.spots
    ch.idle(c.dur(1.0, 2.0))
    if branch is None:
        branch = "errand_sit" if c.rng.random() < 0.5 else "errand_crate"
    if branch == "errand_sit":
        ch.walk(spots["chair"])
        ch.sit_down(c.dur(1.3, 2.0))
        ch.sit(c.dur(2.0, 3.5))
        ch.stand_up(c.dur(1.3, 2.0))
    else:
        start = ch.frame
        ch.walk(ch.box_front())
        _at_crate(c, start)
    return branch


@dataclass(frozen=True)
class _Template:
    run: Callable[[_Ctx, str | None], str]
    start: Callable[[_Ctx], np.ndarray]
    face_camera: bool
    weight: float


TEMPLATES: dict[str, _Template] = {
    "cup": _Template(_cup, lambda c: c.ch.scene.spots["far_table"], True, 0.25),
    "rest": _Template(_rest, lambda c: c.ch.scene.spots["far_chair"], True, 0.10),
    "crate": _Template(_crate, lambda c: c.ch.scene.spots["chair"], False, 0.30),
    "greet": _Template(
        _greet, lambda c: c.ch.scene.spots["far_table" if c.rng.random() < 0.5 else "far_chair"], True, 0.10
    ),
    "errand": _Template(_errand, lambda c: c.ch.scene.spots["mid_chair"], False, 0.25),
}
_BY_ACTIVITY = {
    "coffee_break": ("cup", "red"),
    "tidy_cup": ("cup", "blue"),
    "rest": ("rest", None),
    "crate_sit": ("crate", None),
    "crate_push": ("crate", None),
    "greet": ("greet", None),
    "errand_sit": ("errand", "errand_sit"),
    "errand_crate": ("errand", "errand_crate"),
}


def _choose(rng: np.random.Generator) -> str:
    names = list(TEMPLATES)
    w = np.array([TEMPLATES[n].weight for n in names])
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def _goto(c: _Ctx, xz: np.ndarray) -> None:
    """Walk to xz along the lanes: across at the row nearer the camera, along the lane otherwise."""
    ch = c.ch
    if ch.sitting:
        ch.stand_up(c.dur(1.3, 2.0))
    cur = ch.xz
    if abs(xz[0] - cur[0]) > 0.25:
        if cur[1] > xz[1]:
            ch.walk(np.array([cur[0], xz[1]]))
            ch.walk(xz)
        else:
            ch.walk(np.array([xz[0], cur[1]]))
            ch.walk(xz)
    else:
        ch.walk(xz)


def plan_activities(
    rng: np.random.Generator, shape: B.BodyShape, scene: Scene, n_frames: int, fps: float, activity: str | None = None
) -> Timeline:
    """Plan a whole sequence: the main activity (random, or the one named), then more until the frames are full."""
    if activity is not None and activity not in _BY_ACTIVITY:
        raise ValueError(f"expected an activity in {ACTIVITIES!r}, got {activity!r}")
    ch = Choreographer(shape, scene, fps, n_frames)
    colours = ["red", "blue"] if rng.random() < 0.5 else ["blue", "red"]
    ctx = _Ctx(ch=ch, rng=rng, colours=colours, tempo=float(np.clip(1.1 / shape.speed, 0.8, 1.3)))
    name = _choose(rng)
    branch: str | None = None
    if activity is not None:
        name, branch = _BY_ACTIVITY[activity]
        if name == "cup":
            ctx.forced_colour, branch = branch, None
    template = TEMPLATES[name]
    start = template.start(ctx)
    heading = B.heading_to(np.array([start[0], 0, start[1]]), scene.camera.position)
    if not template.face_camera:
        heading = float(rng.uniform(-np.pi, np.pi))
    ch.place(start, heading)
    names = [template.run(ctx, branch)]
    while not ch.full:
        template = TEMPLATES[_choose(rng)]
        _goto(ctx, template.start(ctx))
        if ch.full:
            break
        names.append(template.run(ctx, None))
    if activity in CRATE_TALL_OF and scene.crate_tall != CRATE_TALL_OF[activity]:
        raise ValueError(f"activity {activity!r} needs a {'tall' if CRATE_TALL_OF[activity] else 'low'} crate")
    return ch.timeline((colours[0], colours[1]), names)
