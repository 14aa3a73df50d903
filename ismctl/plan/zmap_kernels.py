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
  distance to the path (the common case).  The shank above the
  ball never reaches lower than the ball.

Only the cells under the tool's XY footprint (the stadium of radius r around the
segment's XY path, row by row) are visited.  A level move that starts where the
previous move ended skips the cells behind its start: there its lowest point is the
tool standing at the start, which the previous move already swept.  A level ball move
picks the cells it lowers by comparing squares (no square root) in a loop that
vectorises, and takes the square root only for those: most cells under a ball pass
lie on the scallop the previous segment left, which this segment does not lower.
Other moves skip the cells already as low as their lowest tip (overlapping passes at
one depth find most cells already cut).  The numpy twin in
:mod:`ismctl.plan.zmap_reference` computes the same lowest point with the same
arithmetic in the same order over the segment's bounding box (the part ahead of the
start for a continuing level move); tests compare the two.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_FLAT_EPS = 1e-18  # squared XY length below which a move is a plunge
_VERTICAL_EPS = 1e-12  # 1 - uz^2 below which a move is vertical (the end spheres cover it)
_RIM_SLACK = 1e-6  # mm the footprint's radius is grown by: no rounding drops a cell on the tool's rim


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
def row_span(cy, ax, ay, bx, by, vx, vy, r, r2):
    """The x-interval where the row y = ``cy`` crosses the tool's XY footprint, the stadium of
    radius r around A-B (``v`` its XY unit direction, zero for a plunge); lo > hi if it misses.
    The stadium is convex, so its row interval is the hull of the end discs' intervals and of
    the points where its two straight sides cross the row."""
    lo = math.inf
    hi = -math.inf
    for qx, qy in ((ax, ay), (bx, by)):
        e = cy - qy
        if e * e <= r2:
            half = math.sqrt(r2 - e * e)
            lo = min(lo, qx - half)
            hi = max(hi, qx + half)
    if vy != 0.0:
        length = (bx - ax) * vx + (by - ay) * vy
        for side in (-1.0, 1.0):  # the side A + s v + side r (-vy, vx), 0 <= s <= length
            s = (cy - ay - side * r * vx) / vy
            if 0.0 <= s <= length:
                x = ax + s * vx - side * r * vy
                lo = min(lo, x)
                hi = max(hi, x)
    return lo, hi


@njit(cache=True)
def _ball_level_candidates(dist2, hrow, cxrow, py, ax, zr, dx, dy, a, r2, floor):
    """Squared XY distance to the path of every cell of a row that a level ball move lowers,
    -1 for the others, without a square root: the ball (centre height ``zr``) is below h over
    a cell at distance d iff d <= r and (h > zr or (zr - h)^2 < r^2 - d^2).  The slack
    admits the cells rounding leaves in doubt; the exact test follows.  Branch-free, so it
    vectorises; ``cxrow`` the cells' centres, ``py`` the row's y - ay, ``a`` = dx^2 + dy^2
    (dx = dy = 0, a = 1 for a point)."""
    slack = r2 * 1e-9
    for n in range(hrow.shape[0]):
        px = cxrow[n] - ax
        t = min(max((px * dx + py * dy) / a, 0.0), 1.0)
        ex = px - t * dx
        ey = py - t * dy
        d2 = ex * ex + ey * ey
        h = hrow[n]
        w = zr - h
        hit = (d2 <= r2) & (h > floor) & ((w < 0.0) | (w * w + d2 < r2 + slack))
        dist2[n] = d2 if hit else -1.0


@njit(cache=True, inline="always")  # a call per row costs more than the row's work
def _lower_ball_level_row(hrow, crow, cxrow, dist2, py, ax, zr, dx, dy, a, r2, floor, op, deepest):
    """Lower one row's cells (``hrow``, ``crow``: the row's slice under the footprint) by a level
    ball move: the candidates first, then the square root for those only -> the deepest cut so far."""
    _ball_level_candidates(dist2, hrow, cxrow, py, ax, zr, dx, dy, a, r2, floor)
    for n in range(hrow.shape[0]):
        if dist2[n] >= 0.0:
            z = max(zr - math.sqrt(r2 - dist2[n]), floor)
            if z < hrow[n]:
                deepest = max(deepest, hrow[n] - z)
                hrow[n] = z
                crow[n] = op
    return deepest


@njit(cache=True)
def sweep(height, cutter, x0, y0, cell, starts, ends, ops, radius, ball, floor, max_cut):
    """Lower ``height`` (ny, nx) by every segment in order, never below ``floor``; ``cutter``
    gets the op that last lowered a cell, ``max_cut[k]`` the most segment k removed anywhere.

    Each row of a segment's bounding box is visited only over the tool's footprint
    (:func:`row_span`), and only ahead of the start for a level move continuing the
    previous one.  A level ball move (most of a ball program's work) first marks the
    cells it lowers with no square root, in a loop that vectorises, then computes the
    lowest point of those only; other moves skip cells already as low as their lowest tip."""
    ny, nx = height.shape
    r2 = radius * radius
    reach_r = radius + _RIM_SLACK
    dist2 = np.empty(nx)
    centres_x = x0 + (np.arange(nx) + 0.5) * cell  # a load, not an int-to-float conversion per cell
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
        ux = uy = uz = horiz = vx = vy = 0.0
        if length > 0.0:
            ux = dx / length
            uy = dy / length
            uz = dz / length
            horiz = 1.0 - uz * uz
        if a > _FLAT_EPS:
            vx = dx / math.sqrt(a)
            vy = dy / math.sqrt(a)
        ball_level = ball and dz == 0.0
        # a level move from where the previous one ended: the tool standing at A, the end of the
        # previous move, already cut every cell behind A (t = 0 on this move) as low as this one can
        behind_cut = dz == 0.0 and k > 0 and ends[k - 1, 0] == ax and ends[k - 1, 1] == ay and ends[k - 1, 2] == az
        if behind_cut and a <= _FLAT_EPS:
            max_cut[k] = 0.0  # a point where the tool already stands
            continue
        # a point: distance to A (t = 0), so the candidates' projection is 0 / 1
        pdx, pdy, pa = (dx, dy, a) if a > _FLAT_EPS else (0.0, 0.0, 1.0)
        zr = az + radius
        op = ops[k]
        deepest = 0.0
        reach = max(min(az, bz), floor)  # no part of the tool gets lower than its lowest tip
        for j in range(j0, j1 + 1):
            cy = y0 + (j + 0.5) * cell
            lo, hi = row_span(cy, ax, ay, bx, by, vx, vy, reach_r, reach_r * reach_r)
            if behind_cut:  # keep (x - ax) vx + (cy - ay) vy >= -slack
                edge = -(cy - ay) * vy - _RIM_SLACK
                if vx > 0.0:
                    lo = max(lo, ax + edge / vx)
                elif vx < 0.0:
                    hi = min(hi, ax + edge / vx)
                elif edge > 0.0:
                    continue
            if lo > hi:
                continue
            lo_i = max(i0, int(math.ceil((lo - x0) / cell - 0.5)))
            hi_i = min(i1, int(math.floor((hi - x0) / cell - 0.5)))
            if lo_i > hi_i:
                continue
            if ball_level:
                deepest = _lower_ball_level_row(height[j, lo_i:hi_i + 1], cutter[j, lo_i:hi_i + 1],
                                                centres_x[lo_i:hi_i + 1], dist2, cy - ay, ax, zr, pdx, pdy, pa,
                                                r2, floor, op, deepest)
                continue
            for i in range(lo_i, hi_i + 1):
                if height[j, i] <= reach:  # already cut as deep as this segment can: most cells of a pass
                    continue
                cx = centres_x[i]
                if not ball:
                    z = lowest_flat(cx, cy, ax, ay, az, bx, by, bz, r2)
                else:
                    z = lowest_ball(cx, cy, ax, ay, az, bx, by, bz, radius, r2, ux, uy, uz, horiz, length)
                z = max(z, floor)
                if z < height[j, i]:
                    deepest = max(deepest, height[j, i] - z)
                    height[j, i] = z
                    cutter[j, i] = op
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
