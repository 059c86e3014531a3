"""Ray casting of the synthetic world to colour and to depth, with camera and depth-sensor artefacts.

One ray per pixel from the camera centre, with direction R @ ((u - cx) / fx, (v - cy) / fy, 1), so the ray
parameter of a hit is its depth along the optical axis. The room and the furniture are cast once per sequence
(`StaticView`); per frame only the moving primitives (the body's capsules, the cups, the pushed box) are cast,
each inside its projected bounding rectangle, and composited by z-test. Colour is Lambert shading (ambient,
ceiling lamp, window light, a blob shadow under the person) times a global light level, plus sensor noise;
depth goes through a stereo-sensor model (`depth_sensor`). The crate is shaded flat (`FLAT_LIGHT`, the same on
every face and at any distance), so its colour carries nothing about its shape or height.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.synth.scene import Box, Camera, Scene
from training.synth.textures import BODY, CEILING, CORRIDOR, CRATE, FLOOR, FURNITURE, WALL, room_albedo

NEAR = 0.05  # hits closer than this (metres) are ignored
FLAT_LIGHT = (
    0.55  # light on the flat-shaded crate besides the ambient term: evenly lit, like a matte box in a bright room
)


@dataclass(frozen=True)
class DepthModel:
    """A structured-light / stereo depth sensor: range, axial noise growing with z^2, disparity quantisation."""

    min_range: float = 0.2  # metres; nearer is invalid (0)
    max_range: float = 6.0  # metres; farther is invalid (0)
    noise: float = 1.0  # scales the axial noise sigma = noise * (0.001 + 0.0012 z^2) metres
    focal_baseline: float = 420.0 * 0.05  # pixels x metres of the sensor's own stereo pair (848x480, 50 mm)
    subpixel: float = 1 / 32  # disparity resolution in pixels
    edge_drop: float = 0.75  # probability of losing a pixel at a depth discontinuity
    speckle: float = 0.002  # probability of a random missing pixel


@dataclass
class Buffers:
    """G-buffer being z-tested into: depth, normal, albedo, material id. Normal and albedo are only meaningful
    where a primitive was drawn into this buffer (the static radiance covers the rest)."""

    z: np.ndarray  # (H, W) float32 depth along the optical axis
    normal: np.ndarray  # (H, W, 3) float32
    albedo: np.ndarray  # (H, W, 3) float32
    ids: np.ndarray  # (H, W) uint8 material


@dataclass
class StaticView:
    """Per-sequence state: rays, and the room and furniture cast and shaded once."""

    camera: Camera
    rd: np.ndarray  # (H, W, 3) float32 ray directions, camera z component 1
    rdrd: np.ndarray  # (H, W) float32 squared length of rd
    inv: np.ndarray  # (H, W, 3) float32 1 / rd (guarded)
    static: Buffers  # the room and furniture
    radiance: np.ndarray  # (H, W, 3) float32 shaded static scene at light level 1
    cos_incidence: np.ndarray  # (H, W) float32 |cos| of the angle between ray and surface normal
    vignette: np.ndarray  # (H, W, 1) float32


@dataclass
class Frame3D:
    """What one frame's composition gives: depth, material ids, radiance, incidence."""

    z: np.ndarray
    ids: np.ndarray
    radiance: np.ndarray
    cos_incidence: np.ndarray


def camera_rays(camera: Camera) -> np.ndarray:
    k = camera.intrinsics
    u, v = np.meshgrid(np.arange(k.width, dtype=np.float64), np.arange(k.height, dtype=np.float64))
    dc = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], axis=-1)
    return (dc @ camera.rotation.T).astype(np.float32)


def screen_rect(camera: Camera, pts: np.ndarray, pad: float) -> tuple[int, int, int, int] | None:
    """Pixel rectangle (y0, y1, x0, x1) that covers world points `pts` grown by `pad` metres; None if off screen."""
    k = camera.intrinsics
    uv, z = camera.project(pts)
    if float(z.min()) < NEAR + pad:
        return 0, k.height, 0, k.width
    r = k.fx * pad / float(z.min()) + 2.0
    x0, x1 = int(np.floor(uv[:, 0].min() - r)), int(np.ceil(uv[:, 0].max() + r)) + 1
    y0, y1 = int(np.floor(uv[:, 1].min() - r)), int(np.ceil(uv[:, 1].max() + r)) + 1
    x0, x1, y0, y1 = max(x0, 0), min(x1, k.width), max(y0, 0), min(y1, k.height)
    if x0 >= x1 or y0 >= y1:
        return None
    return y0, y1, x0, x1


def hit_capsule(
    rd: np.ndarray, rdrd: np.ndarray, o: np.ndarray, a: np.ndarray, b: np.ndarray, r: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rays o + t rd (a rectangle of them) that hit a capsule (a sphere when a == b).

    Returns the flat indices of the hitting rays in the rectangle and the nearest t of each (> NEAR).
    """
    ba, oa = b - a, o - a
    baba, baoa, oaoa = float(ba @ ba), float(ba @ oa), float(oa @ oa)
    rdoa = (rd @ oa.astype(np.float32)).ravel()
    rr = rdrd.ravel()
    if baba < 1e-12:
        h = rdoa * rdoa - rr * (oaoa - r * r)
        idx = np.flatnonzero(h >= 0)
        t = (-rdoa[idx] - np.sqrt(h[idx])) / rr[idx]
    else:
        bard = (rd @ ba.astype(np.float32)).ravel()
        k2 = baba * rr - bard * bard
        k1 = baba * rdoa - baoa * bard
        h = k1 * k1 - k2 * (baba * oaoa - baoa * baoa - r * r * baba)
        idx = np.flatnonzero(h >= 0)  # rays that meet the infinite cylinder; only they can hit
        k1, k2, h, bard, rdoa, rr = k1[idx], k2[idx], h[idx], bard[idx], rdoa[idx], rr[idx]
        t = (-k1 - np.sqrt(h)) / np.where(np.abs(k2) > 1e-9, k2, np.float32(1e-9))
        y = baoa + t * bard
        cap = (y <= 0) | (y >= baba)  # outside the cylinder's length: the hemispherical ends
        if cap.any():
            use_a = y[cap] <= 0
            rdoc = np.where(use_a, rdoa[cap], rdoa[cap] - bard[cap])
            ococ = np.where(use_a, np.float32(oaoa), np.float32(oaoa - 2 * baoa + baba))
            hc = rdoc * rdoc - rr[cap] * (ococ - r * r)
            tc = (-rdoc - np.sqrt(np.maximum(hc, 0))) / rr[cap]
            t[cap] = np.where(hc >= 0, tc, np.float32(-1.0))
    keep = t > NEAR
    return idx[keep], t[keep]


def hit_box(
    inv: np.ndarray, o: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slab test of rays against an axis-aligned box: (t, hit mask, axis of the entry face)."""
    t1 = (lo - o).astype(np.float32) * inv
    t2 = (hi - o).astype(np.float32) * inv
    tmin = np.minimum(t1, t2)
    tn = tmin.max(axis=-1)
    tf = np.maximum(t1, t2).min(axis=-1)
    return tn, (tn <= tf) & (tn > NEAR), tmin.argmax(axis=-1)


def _cast_room(scene: Scene, rd64: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Depth, normal, material and wall coordinate of the room's planes (with the door open onto a corridor)."""
    o = scene.camera.position
    room = scene.room
    h, w = rd64.shape[:2]
    z = np.full((h, w), np.inf)
    normal = np.zeros((h, w, 3))
    mat = np.zeros((h, w), np.uint8)
    planes = (
        (1, 0.0, (0, 1, 0), FLOOR), (1, room.height, (0, -1, 0), CEILING),
        (0, -room.half_width, (1, 0, 0), WALL), (0, room.half_width, (-1, 0, 0), WALL),
        (2, room.back_z, (0, 0, -1), WALL), (2, room.front_z, (0, 0, 1), WALL),
    )  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, val, n, m in planes:
            t = (val - o[axis]) / rd64[..., axis]
            better = (t > NEAR) & (t < z)
            z = np.where(better, t, z)
            normal[better] = n
            mat[better] = m
        p = o + z[..., None] * rd64
        x0, x1, dh = room.door
        door = (np.abs(p[..., 2] - room.back_z) < 1e-6) & (p[..., 0] > x0) & (p[..., 0] < x1) & (p[..., 1] < dh)
        z = np.where(door, (room.corridor_z - o[2]) / rd64[..., 2], z)
    normal[door] = (0, 0, -1)
    mat[door] = CORRIDOR
    p = o + z[..., None] * rd64
    wall_u = np.where(mat == WALL, np.where(np.abs(normal[..., 0]) > 0.5, p[..., 2], p[..., 0]), 0.0)
    return z, normal, mat, wall_u


def build_static(scene: Scene) -> StaticView:
    """Cast and shade the room and the static furniture once per sequence."""
    cam = scene.camera
    rd = camera_rays(cam)
    rd64 = rd.astype(np.float64)
    z, normal, mat, wall_u = _cast_room(scene, rd64)
    albedo = room_albedo(scene, cam.position + z[..., None] * rd64, mat, wall_u)
    rdrd = np.einsum("ijk,ijk->ij", rd, rd)
    view = StaticView(
        camera=cam,
        rd=rd,
        rdrd=rdrd,
        inv=(1.0 / np.where(np.abs(rd) > 1e-9, rd, 1e-9)).astype(np.float32),
        static=Buffers(z.astype(np.float32), normal.astype(np.float32), albedo.astype(np.float32), mat),
        radiance=np.zeros(rd.shape, np.float32),
        cos_incidence=np.zeros(z.shape, np.float32),
        vignette=np.ones(z.shape + (1,), np.float32),
    )
    for box in scene.static_boxes:
        draw_box(view, view.static, box, FURNITURE)
    s = view.static
    p = cam.position.astype(np.float32) + s.z[..., None] * rd
    view.radiance = shade_points(scene, p, s.normal, s.albedo)
    view.cos_incidence = np.abs(np.einsum("ijk,ijk->ij", s.normal, rd)) / np.sqrt(rdrd)
    k = cam.intrinsics
    u, v = np.meshgrid((np.arange(k.width) - k.cx) / k.fx, (np.arange(k.height) - k.cy) / k.fy)
    view.vignette = (1.0 / (1.0 + 0.35 * (u * u + v * v)) ** 2)[..., None].astype(np.float32)
    return view


def draw_box(view: StaticView, buf: Buffers, box: Box, ident: int) -> None:
    """Z-test an axis-aligned box into the buffers (in place)."""
    lo, hi = np.asarray(box.lo), np.asarray(box.hi)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    rect = screen_rect(view.camera, corners, 0.0)
    if rect is None:
        return
    y0, y1, x0, x1 = rect
    o = view.camera.position
    t, hit, axis = hit_box(view.inv[y0:y1, x0:x1], o, lo, hi)
    m = hit & (t < buf.z[y0:y1, x0:x1])
    if not m.any():
        return
    rd = view.rd[y0:y1, x0:x1][m]
    ax = axis[m]
    rows = np.arange(len(ax))
    n = np.zeros((len(ax), 3), np.float32)
    n[rows, ax] = -np.sign(rd[rows, ax])
    colour = np.broadcast_to(np.asarray(box.colour, np.float32), n.shape)
    if box.grain:
        pt = o + t[m][:, None] * rd
        colour = colour * (1 + box.grain * np.sin(pt[:, 0] * 23 + pt[:, 2] * 7 + np.sin(pt[:, 2] * 13)))[:, None]
    buf.z[y0:y1, x0:x1][m] = t[m]
    buf.normal[y0:y1, x0:x1][m] = n
    buf.albedo[y0:y1, x0:x1][m] = colour
    buf.ids[y0:y1, x0:x1][m] = ident


def draw_capsules(
    view: StaticView, buf: Buffers, a: np.ndarray, b: np.ndarray, radii: np.ndarray, colours: np.ndarray, ident: int
) -> None:
    """Z-test capsules (K, 3) a -> b with radii (K,) and albedo (K, 3) into the buffers (in place)."""
    cam = view.camera
    k = cam.intrinsics
    o = cam.position
    uv, zc = cam.project(np.concatenate([a, b]))
    n_caps = len(a)
    for i in range(n_caps):
        r = float(radii[i])
        zmin = min(zc[i], zc[i + n_caps])
        if zmin < NEAR + r:
            y0, y1, x0, x1 = 0, k.height, 0, k.width
        else:
            pad = k.fx * r / zmin + 2.0
            us, vs = (uv[i, 0], uv[i + n_caps, 0]), (uv[i, 1], uv[i + n_caps, 1])
            x0, x1 = max(int(min(us) - pad), 0), min(int(max(us) + pad) + 2, k.width)
            y0, y1 = max(int(min(vs) - pad), 0), min(int(max(vs) + pad) + 2, k.height)
            if x0 >= x1 or y0 >= y1:
                continue
        idx, t = hit_capsule(view.rd[y0:y1, x0:x1], view.rdrd[y0:y1, x0:x1], o, a[i], b[i], r)
        iy, ix = idx // (x1 - x0) + y0, idx % (x1 - x0) + x0
        closer = t < buf.z[iy, ix]
        if not closer.any():
            continue
        iy, ix, t = iy[closer], ix[closer], t[closer]
        pt = o + t[:, None] * view.rd[iy, ix]
        ba = b[i] - a[i]
        baba = float(ba @ ba)
        s = np.clip(((pt - a[i]) @ ba) / baba, 0, 1)[:, None] if baba > 1e-12 else 0.0
        buf.z[iy, ix] = t
        buf.normal[iy, ix] = (pt - (a[i] + s * ba)) / r
        buf.albedo[iy, ix] = colours[i]
        buf.ids[iy, ix] = ident


def shade_points(scene: Scene, p: np.ndarray, n: np.ndarray, albedo: np.ndarray) -> np.ndarray:
    """Radiance at light level 1 of points (..., 3) with normals and albedo: ambient + ceiling lamp + window."""
    li = scene.lights
    v = li.lamp.astype(np.float32) - p
    d2 = np.einsum("...k,...k->...", v, v)
    lamp = np.maximum(np.einsum("...k,...k->...", n, v), 0) / np.sqrt(d2) * (li.lamp_power / (1.0 + 0.25 * d2))
    sun = np.maximum(n @ li.sun.astype(np.float32), 0) * li.sun_power
    light = li.ambient + np.minimum(lamp, 1.0) + sun
    return np.asarray(albedo * (light[..., None] * li.tint.astype(np.float32)), dtype=np.float32)


def compose(view: StaticView, scene: Scene, buf: Buffers, shadow_at: np.ndarray | None) -> Frame3D:
    """Shade what was drawn into `buf` over the static radiance, with a blob shadow on the floor at `shadow_at`."""
    radiance = view.radiance.copy()
    cos_inc = view.cos_incidence.copy()
    m = buf.ids >= BODY
    if m.any():
        rd = view.rd[m]
        n = buf.normal[m]
        p = view.camera.position.astype(np.float32) + buf.z[m][:, None] * rd
        radiance[m] = shade_points(scene, p, n, buf.albedo[m])
        cos_inc[m] = np.abs(np.einsum("ij,ij->i", n, rd)) / np.sqrt(view.rdrd[m])
        flat = buf.ids == CRATE
        li = scene.lights
        radiance[flat] = buf.albedo[flat] * ((li.ambient + FLAT_LIGHT) * li.tint).astype(np.float32)
    if shadow_at is not None:
        rect = screen_rect(view.camera, shadow_at[None] + np.array([[-0.8, 0, -0.8], [0.8, 0, 0.8]]), 0.0)
        if rect is not None:
            y0, y1, x0, x1 = rect
            zr = buf.z[y0:y1, x0:x1]
            pr = view.camera.position + zr[..., None] * view.rd[y0:y1, x0:x1]
            d = (pr[..., 0] - shadow_at[0]) ** 2 + (pr[..., 2] - shadow_at[2]) ** 2
            on_floor = buf.ids[y0:y1, x0:x1] == FLOOR
            radiance[y0:y1, x0:x1] *= np.where(on_floor, 1 - 0.45 * np.exp(-d / 0.12), 1).astype(np.float32)[..., None]
    return Frame3D(z=buf.z, ids=buf.ids, radiance=radiance, cos_incidence=cos_inc)


def colour_sensor(radiance: np.ndarray, level: float, vignette: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure at light `level` (1 = normal), vignetting, noise that dominates in the dark; uint8 RGB.

    The noise is uniform with the standard deviation of the sensor's (read + gain) noise, cheaper than Gaussian.
    """
    sigma = 1.5 + 6.0 * (1.0 - min(level, 1.0)) ** 2
    img = radiance * vignette * np.float32(level * 235.0)
    img += (rng.random(img.shape, dtype=np.float32) - np.float32(0.5)) * np.float32(sigma * 12**0.5)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def depth_sensor(
    z: np.ndarray,
    model: DepthModel,
    rng: np.random.Generator,
    cos_incidence: np.ndarray | None = None,
    ids: np.ndarray | None = None,
) -> np.ndarray:
    """True depth (metres, float) -> sensor depth in millimetres (uint16), 0 where invalid.

    Artefacts: axial noise with sigma growing as z^2, disparity quantisation (depth steps grow as z^2), missing
    pixels at depth discontinuities (silhouette edges; between different surfaces when `ids` labels them) and at
    grazing angles, random speckle, and 0 outside
    [min_range, max_range].
    """
    z = z.astype(np.float32)
    sigma = np.float32(model.noise) * (np.float32(0.001) + np.float32(0.0012) * z * z)
    noisy = z + rng.standard_normal(z.shape, dtype=np.float32) * sigma
    fb = np.float32(model.focal_baseline)
    step = np.float32(model.subpixel)
    disp = np.round(fb / np.maximum(noisy, np.float32(1e-3)) / step) * step
    zq = fb / np.maximum(disp, step)
    kernel = np.ones((3, 3), np.uint8)
    zmax, zmin = cv2.dilate(z, kernel), cv2.erode(z, kernel)
    thr = np.float32(0.05) + np.float32(0.02) * z
    edge = (zmax - zmin) > thr
    if ids is not None:  # a jump only counts between different surfaces (not along a floor seen at a grazing angle)
        edge &= cv2.dilate(ids, kernel) != cv2.erode(ids, kernel)
    far_side = edge & (z - zmin > thr)
    u = rng.random(z.shape, dtype=np.float32)
    drop = (edge & (u < model.edge_drop * 0.6)) | (far_side & (u < model.edge_drop)) | (u > 1 - model.speckle)
    if cos_incidence is not None:
        drop |= (cos_incidence < 0.12) & (u < 0.5)
    valid = (z >= model.min_range) & (z <= model.max_range) & ~drop
    mm = np.clip(np.round(zq * np.float32(1000.0)), 0, 65535).astype(np.uint16)
    return np.where(valid, mm, np.uint16(0))
