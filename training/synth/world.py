"""One synthetic sequence end to end: configuration, seeded sampling, lighting schedule, per-frame rendering.

Determinism: sequence `i` of a configuration draws everything from `SeedSequence([seed, i])` (the person, the
room and camera, the lighting, the plan: independent child streams) and each frame's sensor noise from
`SeedSequence([seed, i, frame, stream])`, so a sequence is bit-identical however many workers generate the
dataset and in whatever order (on one platform and numpy version).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np

from rgbd.frame import Frame, Intrinsics
from training.synth import body as B
from training.synth import render as R
from training.synth.actions import Timeline
from training.synth.grammar import CRATE_TALL_OF, plan_activities
from training.synth.scene import CUP_COLOURS, CUP_HALF, CUP_RADIUS, Scene, sample_scene
from training.synth.textures import BODY, CRATE, OBJECT

DEPTH_SCALE = 0.001  # metres per depth unit (millimetres)
# Version of the world's content (scene, grammar, light). 2: colour-identical crates of two heights, occluders,
# wider camera, room and body ranges, more and longer dark stretches. Version 1 (the world before) is not kept:
# every sequence of version 2 differs from version 1's, and only version 2 can be generated.
WORLD_VERSION = 2


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Every field is a `r3d-data synth` flag."""

    n_sequences: int = 500  # number of sequences (0: no dataset, only recordings)
    frames: int = 300  # frames per sequence (20 s at 15 fps: 6 streaming test windows of the service recipe)
    width: int = 160  # image width in pixels (the service model's input size; see docs/synthetic_world.md)
    height: int = 120  # image height in pixels
    fps: float = 15.0  # frames per second
    seed: int = 0  # master seed; sequence i uses (seed, i)
    dark_rate: float = 5.0  # dark stretches (light near zero for dark_min_s..dark_max_s) per minute, on average
    dark_min_s: float = 2.0  # shortest dark stretch, seconds
    dark_max_s: float = 5.0  # longest dark stretch, seconds
    light_change_rate: float = 2.0  # moderate lighting changes (a lamp dimmed or brightened) per minute
    min_range: float = 0.2  # depth sensor range, metres
    max_range: float = 6.0
    depth_noise: float = 1.0  # scale of the depth noise (0: only quantisation and dropouts)

    def __post_init__(self) -> None:
        problems = []
        if self.n_sequences < 0:
            problems.append(f"--sequences must be >= 0, got {self.n_sequences}")
        if self.frames < 1:
            problems.append(f"--frames must be >= 1, got {self.frames}")
        if not (16 <= self.width <= 4096 and 12 <= self.height <= 4096):
            problems.append(f"--width/--height must be within 16x12..4096x4096, got {self.width}x{self.height}")
        if not self.fps > 0:
            problems.append(f"--fps must be > 0, got {self.fps}")
        if self.dark_rate < 0 or self.light_change_rate < 0:
            problems.append(f"--dark-rate must be >= 0, got {self.dark_rate}")
        if not 0 < self.dark_min_s <= self.dark_max_s:
            problems.append(f"expected 0 < dark_min_s <= dark_max_s, got {self.dark_min_s}, {self.dark_max_s}")
        if not 0 < self.min_range < self.max_range <= 65.0:
            problems.append(f"expected 0 < min_range < max_range <= 65 m, got {self.min_range}, {self.max_range}")
        if self.depth_noise < 0:
            problems.append(f"depth_noise must be >= 0, got {self.depth_noise}")
        if problems:
            raise ValueError("invalid synthetic world configuration: " + "; ".join(problems))

    def to_dict(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def sequence_settings(self) -> dict[str, float | int]:
        """What a single sequence depends on: everything but the number of sequences (so the first N sequences
        of a world of M > N are the world of N, file for file)."""
        return {k: v for k, v in self.to_dict().items() if k != "n_sequences"}


def sequence_id(index: int) -> str:
    return f"synth_{index:05d}"


def light_schedule(
    rng: np.random.Generator,
    n: int,
    fps: float,
    dark_rate: float,
    change_rate: float,
    dark_s: tuple[float, float] = (2.0, 5.0),
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Light level per frame (1 = normal) and the dark stretches as [start, end) frame ranges."""
    t = np.arange(n) / fps
    minutes = n / fps / 60.0
    level = np.full(n, float(rng.uniform(0.8, 1.1)))
    level *= 1 + 0.05 * np.sin(2 * np.pi * t / float(rng.uniform(8, 20)) + float(rng.uniform(0, 6.3)))
    for _ in range(int(rng.poisson(change_rate * minutes))):
        t0, factor = float(rng.uniform(0, t[-1] + 1 / fps)), float(rng.uniform(0.6, 1.3))
        level *= 1 + (factor - 1) * np.clip((t - t0) / 0.5, 0, 1)
    dark: list[tuple[int, int]] = []
    for _ in range(int(rng.poisson(dark_rate * minutes))):
        t0 = float(rng.uniform(0, t[-1] + 1 / fps))
        dur, floor = float(rng.uniform(*dark_s)), float(rng.uniform(0.02, 0.06))
        ramp = np.clip(np.minimum((t - t0) / 0.3, (t0 + dur - t) / 0.3), 0, 1)
        level *= 1 - (1 - floor) * ramp
        on = np.nonzero(ramp > 0.5)[0]
        if len(on):
            dark.append((int(on[0]), int(on[-1]) + 1))
    return level.astype(np.float32), sorted(dark)


@dataclass
class RenderResult:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) uint16 millimetres, 0 = invalid
    z: np.ndarray  # (H, W) float32 true depth in metres
    ids: np.ndarray  # (H, W) uint8 material: textures.BODY for the person, textures.OBJECT for cups, CRATE


def sequence_light(cfg: SynthConfig, index: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Light level per frame and dark stretches of sequence `index` (what `SynthSequence` draws, without the rest)."""
    ss_light = np.random.SeedSequence([cfg.seed, index]).spawn(4)[2]
    return light_schedule(
        np.random.default_rng(ss_light),
        cfg.frames,
        cfg.fps,
        cfg.dark_rate,
        cfg.light_change_rate,
        (cfg.dark_min_s, cfg.dark_max_s),
    )


class SynthSequence:
    """Sequence `index` of a configuration: planned on construction, rendered frame by frame on demand."""

    def __init__(self, cfg: SynthConfig, index: int, activity: str | None = None) -> None:
        self.cfg, self.index = cfg, index
        self.id = sequence_id(index)
        ss_shape, ss_scene, _, ss_plan = np.random.SeedSequence([cfg.seed, index]).spawn(4)
        self.shape = B.sample_shape(np.random.default_rng(ss_shape))
        self.scene: Scene = sample_scene(
            np.random.default_rng(ss_scene), self.shape, cfg.width, cfg.height, CRATE_TALL_OF.get(activity or "")
        )
        self.light, self.dark = sequence_light(cfg, index)
        self.timeline: Timeline = plan_activities(
            np.random.default_rng(ss_plan), self.shape, self.scene, cfg.frames, cfg.fps, activity
        )
        self.depth_model = R.DepthModel(min_range=cfg.min_range, max_range=cfg.max_range, noise=cfg.depth_noise)
        self._static: R.StaticView | None = None
        self._radii = B.part_radii(self.shape)
        self._colours = B.part_colours(self.shape)
        self._cup_radii = np.full(2, CUP_RADIUS)
        self._cup_colours = np.array([CUP_COLOURS[c] for c in self.timeline.cup_colours], np.float32)
        self._scratch: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def activity(self) -> str:
        return self.timeline.activities[0]

    @property
    def labels(self) -> list[str]:
        return self.timeline.labels

    @property
    def intrinsics(self) -> Intrinsics:
        return self.scene.camera.intrinsics

    @property
    def static(self) -> R.StaticView:
        if self._static is None:
            self._static = R.build_static(self.scene)
        return self._static

    def provenance(self) -> dict[str, object]:
        box = self.scene.push_box
        return {
            "generator": "training.synth",
            "world_version": WORLD_VERSION,
            "config": self.cfg.sequence_settings(),
            "index": self.index,
            "activities": list(self.timeline.activities),
            "cup_colours": list(self.timeline.cup_colours),
            "crate": "tall" if self.scene.crate_tall else "low",
            "crate_height_m": round(float(box.hi[1] - box.lo[1]), 3),
            "decisions": [d.to_dict() for d in self.timeline.decisions],
            "dark_frames": [list(d) for d in self.dark],
            "occluders": self.scene.occluders,
            "body_height_m": round(self.shape.height, 3),
            "camera_height_m": round(float(self.scene.camera.position[1]), 3),
        }

    def _rng(self, frame: int, stream: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.cfg.seed, self.index, frame, stream]))

    def render(self, i: int, light: float | None = None) -> RenderResult:
        """Render frame i (light overrides the scheduled light level; depth does not depend on it)."""
        if not 0 <= i < self.cfg.frames:
            raise IndexError(f"frame {i} out of range 0..{self.cfg.frames - 1}")
        view = self.static
        tl = self.timeline
        if self._scratch is None:
            self._scratch = (np.zeros_like(view.static.normal), np.zeros_like(view.static.albedo))
        buf = R.Buffers(view.static.z.copy(), self._scratch[0], self._scratch[1], view.static.ids.copy())
        pose = tl.poses[i]
        a, b, _ = B.body_capsules(self.shape, pose)
        R.draw_capsules(view, buf, a, b, self._radii, self._colours, BODY)
        half = np.array([0.0, CUP_HALF, 0.0])
        R.draw_capsules(view, buf, tl.cups[i] - half, tl.cups[i] + half, self._cup_radii, self._cup_colours, OBJECT)
        R.draw_box(view, buf, self.scene.push_box.shifted(tl.box[i]), CRATE)
        f3 = R.compose(view, self.scene, buf, np.array([pose[B.X], 0.0, pose[B.Z]]))
        level = float(self.light[i]) if light is None else float(light)
        rgb = R.colour_sensor(f3.radiance, level, view.vignette, self._rng(i, 1))
        depth = R.depth_sensor(f3.z, self.depth_model, self._rng(i, 2), f3.cos_incidence, f3.ids)
        return RenderResult(rgb=rgb, depth=depth, z=f3.z, ids=f3.ids)

    def frame(self, i: int) -> Frame:
        r = self.render(i)
        return Frame(
            rgb=r.rgb,
            depth=r.depth,
            depth_scale=DEPTH_SCALE,
            timestamp=i / self.cfg.fps,
            index=i,
            intrinsics=self.intrinsics,
            depth_aligned=True,
            label=self.labels[i],
        )

    def frames(self) -> Iterator[Frame]:
        for i in range(self.cfg.frames):
            yield self.frame(i)
