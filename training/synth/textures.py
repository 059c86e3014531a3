"""Procedural textures of the room: wooden planks or tiles, a striped rug, wallpaper, skirting, framed pictures."""

from __future__ import annotations

import numpy as np

from training.synth.scene import Scene

FLOOR, WALL, CEILING, CORRIDOR, FURNITURE, BODY, OBJECT, CRATE = 1, 2, 3, 4, 5, 6, 7, 8  # material ids


def _hash(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    v = np.sin(a * 12.9898 + b * 78.233) * 43758.5453
    return v - np.floor(v)


def room_albedo(scene: Scene, p: np.ndarray, mat: np.ndarray, wall_u: np.ndarray) -> np.ndarray:
    room = scene.room
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    seed = room.texture_seed
    alb = np.empty(p.shape, dtype=np.float64)
    # floor: planks (along z, staggered joints) or tiles, and a striped rug
    fl = np.asarray(room.floor)
    if room.floor_kind == "planks":
        plank = np.floor(x / 0.14)
        seg = np.floor(z / 1.1 + _hash(plank, seed))
        shade = 0.8 + 0.35 * _hash(plank * 3.1 + seg, seed + 1) + 0.05 * np.sin(z * 37 + 9 * _hash(plank, seed + 2))
        gap = (x / 0.14 - plank < 0.05) | (z / 1.1 + _hash(plank, seed) - seg < 0.01)
    else:
        tx, tz = np.floor(x / 0.4), np.floor(z / 0.4)
        shade = 0.85 + 0.25 * ((tx + tz) % 2) + 0.05 * _hash(tx, tz + seed)
        gap = ((x / 0.4 - tx) < 0.03) | ((z / 0.4 - tz) < 0.03)
    shade = np.where(gap, 0.55, shade)
    floor = fl * shade[..., None]
    if room.rug:
        x0, x1, z0, z1, *rc = room.rug
        on = (x > x0) & (x < x1) & (z > z0) & (z < z1)
        stripe = 0.75 + 0.25 * (np.floor((z - z0) / 0.12) % 2)
        border = (x - x0 < 0.08) | (x1 - x < 0.08) | (z - z0 < 0.08) | (z1 - z < 0.08)
        rug = np.asarray(rc) * np.where(border, 0.5, stripe)[..., None]
        floor = np.where(on[..., None], rug, floor)
    # walls: wallpaper stripes, low-frequency blotches, skirting board, framed pictures
    wl = np.asarray(room.wall)
    stripes = 1.0 + 0.05 * np.sin(wall_u * 2 * np.pi / 0.25) + 0.04 * np.sin(wall_u * 1.3 + y * 2.1 + seed)
    wall = wl * stripes[..., None]
    wall = np.where((y < 0.1)[..., None], np.asarray([0.9, 0.9, 0.88]) * 0.8, wall)
    for w_id, u0, u1, y0, y1, *pc in room.pictures:
        wall_id = np.where(np.abs(x + room.half_width) < 1e-3, 0, np.where(np.abs(x - room.half_width) < 1e-3, 1, 2))
        on = (wall_id == int(w_id)) & (wall_u > u0) & (wall_u < u1) & (y > y0) & (y < y1)
        frame = (wall_u - u0 < 0.04) | (u1 - wall_u < 0.04) | (y - y0 < 0.04) | (y1 - y < 0.04)
        inner = np.asarray(pc) * (0.7 + 0.5 * (np.sin((wall_u - u0) * 9 + (y - y0) * 5) > 0))[..., None]
        pic = np.where(frame[..., None], np.asarray([0.15, 0.12, 0.1]), inner)
        wall = np.where(on[..., None], pic, wall)
    alb[:] = wall
    alb[mat == FLOOR] = floor[mat == FLOOR]
    alb[mat == CEILING] = (0.92, 0.92, 0.9)
    alb[mat == CORRIDOR] = (0.25, 0.25, 0.28)
    return alb
