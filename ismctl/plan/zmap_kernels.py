"""Numba kernels of the Z-map (height-field) material-removal simulation.

A Z-map is one height per grid cell, sampled at the cell's centre: ``height[j, i]``
is the top of the material at ``x = x0 + (i + 0.5) * cell``, ``y = y0 + (j + 0.5) *
cell``.  A tool moving along a straight segment lowers every cell to the lowest
point its swept volume reaches over that cell's centre, computed exactly:

* flat end mill: the swept bottom disc.  The tool covers the centre for the tool
  positions ``t`` where the XY distance to the axis is at most r: an interval of the
  segment (a quadratic in t), and Z being linear in t, the lowest point is at one of
  the interval's ends — ramps and helix chords included.
* ball end mill: the swept sphere (centre r above the tip) is a capsule; its lowest
  point over the centre is the lower intersection of the vertical line with the
  capsule's cylinder (if that point lies between the end discs) or with one of the
  two end spheres.  For a level move that is simply the ball's height at the XY
  distance to the path (the common case, a third of the work).  The shank above the
  ball never reaches lower than the ball.

Only the cells in a segment's bounding box (grown by r) are visited, and of those
only the ones still higher than the segment's lowest tip (overlapping passes at one
depth find most cells already cut).  The numpy
twin in :mod:`ismctl.plan.zmap_reference` does the same arithmetic in the same
order; tests compare the two.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_FLAT_EPS = 1e-18  # squared XY length below which a move is a plunge
_VERTICAL_EPS = 1e-12  # 1 - uz^2 below which a move is vertical (the end spheres cover it)


@njit(cache=True)
def lowest_flat(cx, cy, ax, ay, az, bx, by, bz, r2):
    """Lowest point of a flat end mill's bottom disc swept from A to B, over (cx, cy); inf if it misses."""
    dx = bx - ax
    dy = by - ay
    px = cx - ax
    py = cy - ay
    a = dx * dx + dy * dy
    b = px * dx + py * dy
    e = px * px + py * py
    if a <= _FLAT_EPS:
        if e <= r2:
            return min(az, bz)
        return math.inf
    disc = b * b - a * (e - r2)
    if disc < 0.0:
        return math.inf
    sq = math.sqrt(disc)
    t0 = max((b - sq) / a, 0.0)
    t1 = min((b + sq) / a, 1.0)
    if t0 > t1:
        return math.inf
    return min(az + t0 * (bz - az), az + t1 * (bz - az))


@njit(cache=True)
def lowest_ball_level(cx, cy, ax, ay, z, dx, dy, a, r, r2):
    """A level move (or a point): the ball reaches lowest over (cx, cy) where the path comes
    nearest in XY, so one distance gives it (``a`` = dx^2 + dy^2)."""
    px = cx - ax
    py = cy - ay
    t = 0.0
    if a > _FLAT_EPS:
        t = min(max((px * dx + py * dy) / a, 0.0), 1.0)
    ex = px - t * dx
    ey = py - t * dy
    d2 = ex * ex + ey * ey
    if d2 > r2:
        return math.inf
    return z + r - math.sqrt(r2 - d2)


@njit(cache=True)
def lowest_ball(cx, cy, ax, ay, az, bx, by, bz, r, r2, ux, uy, uz, horiz, length):
    """A sloped move: the lowest point over (cx, cy) of the capsule the ball's centre (r above
    the tip) sweeps; ``u`` is the unit direction, ``horiz`` = 1 - uz^2, ``length`` the 3D length."""
    best = math.inf
    wx = cx - ax
    wy = cy - ay
    q = wx * wx + wy * wy
    if q <= r2:
        best = min(best, az + r - math.sqrt(r2 - q))
    ex = cx - bx
    ey = cy - by
    qb = ex * ex + ey * ey
    if qb <= r2:
        best = min(best, bz + r - math.sqrt(r2 - qb))
    if horiz > _VERTICAL_EPS:
        p = wx * ux + wy * uy
        disc = p * p * uz * uz - horiz * (q - p * p - r2)
        if disc >= 0.0:
            zeta = (p * uz - math.sqrt(disc)) / horiz
            s = p + zeta * uz
            if 0.0 <= s <= length:
                best = min(best, az + r + zeta)
    return best


@njit(cache=True)
def sweep(height, cutter, x0, y0, cell, starts, ends, ops, radius, ball, floor, max_cut):
    """Lower ``height`` (ny, nx) by every segment in order, never below ``floor``; ``cutter``
    gets the op that last lowered a cell, ``max_cut[k]`` the most segment k removed anywhere."""
    ny, nx = height.shape
    r2 = radius * radius
    for k in range(starts.shape[0]):
        ax, ay, az = starts[k, 0], starts[k, 1], starts[k, 2]
        bx, by, bz = ends[k, 0], ends[k, 1], ends[k, 2]
        i0 = max(0, int(math.floor((min(ax, bx) - radius - x0) / cell - 0.5)))
        i1 = min(nx - 1, int(math.ceil((max(ax, bx) + radius - x0) / cell - 0.5)))
        j0 = max(0, int(math.floor((min(ay, by) - radius - y0) / cell - 0.5)))
        j1 = min(ny - 1, int(math.ceil((max(ay, by) + radius - y0) / cell - 0.5)))
        dx = bx - ax
        dy = by - ay
        dz = bz - az
        a = dx * dx + dy * dy
        length = math.sqrt(a + dz * dz)
        ux = uy = uz = horiz = 0.0
        if length > 0.0:
            ux = dx / length
            uy = dy / length
            uz = dz / length
            horiz = 1.0 - uz * uz
        deepest = 0.0
        reach = max(min(az, bz), floor)  # no part of the tool gets lower than its lowest tip
        for j in range(j0, j1 + 1):
            cy = y0 + (j + 0.5) * cell
            for i in range(i0, i1 + 1):
                if height[j, i] <= reach:  # already cut as deep as this segment can: most cells of a pass
                    continue
                cx = x0 + (i + 0.5) * cell
                if not ball:
                    z = lowest_flat(cx, cy, ax, ay, az, bx, by, bz, r2)
                elif dz == 0.0:
                    z = lowest_ball_level(cx, cy, ax, ay, az, dx, dy, a, radius, r2)
                else:
                    z = lowest_ball(cx, cy, ax, ay, az, bx, by, bz, radius, r2, ux, uy, uz, horiz, length)
                z = max(z, floor)
                if z < height[j, i]:
                    deepest = max(deepest, height[j, i] - z)
                    height[j, i] = z
                    cutter[j, i] = ops[k]
        max_cut[k] = deepest


@njit(cache=True)
def top_surface(target, x0, y0, cell, triangles):
    """Raise ``target`` (ny, nx) to the highest triangle over each cell centre (the part's top
    surface seen from above); triangles seen edge-on from above are skipped (their neighbours
    cover their outline)."""
    ny, nx = target.shape
    for k in range(triangles.shape[0]):
        ax, ay, az = triangles[k, 0, 0], triangles[k, 0, 1], triangles[k, 0, 2]
        bx, by, bz = triangles[k, 1, 0], triangles[k, 1, 1], triangles[k, 1, 2]
        qx, qy, qz = triangles[k, 2, 0], triangles[k, 2, 1], triangles[k, 2, 2]
        det = (bx - ax) * (qy - ay) - (qx - ax) * (by - ay)
        if abs(det) < 1e-14:
            continue
        i0 = max(0, int(math.ceil((min(ax, bx, qx) - x0) / cell - 0.5)))
        i1 = min(nx - 1, int(math.floor((max(ax, bx, qx) - x0) / cell - 0.5)))
        j0 = max(0, int(math.ceil((min(ay, by, qy) - y0) / cell - 0.5)))
        j1 = min(ny - 1, int(math.floor((max(ay, by, qy) - y0) / cell - 0.5)))
        for j in range(j0, j1 + 1):
            cy = y0 + (j + 0.5) * cell
            for i in range(i0, i1 + 1):
                cx = x0 + (i + 0.5) * cell
                u = ((cx - ax) * (qy - ay) - (qx - ax) * (cy - ay)) / det
                v = ((bx - ax) * (cy - ay) - (cx - ax) * (by - ay)) / det
                if u >= -1e-9 and v >= -1e-9 and u + v <= 1.0 + 1e-9:
                    z = az + u * (bz - az) + v * (qz - az)
                    if z > target[j, i]:
                        target[j, i] = z


def empty_cutter(shape) -> np.ndarray:
    """The ``cutter`` array :func:`sweep` fills: -1 where nothing has cut."""
    return np.full(shape, -1, dtype=np.int32)
