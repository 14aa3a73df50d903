"""Numba kernels of the CAM planner: zig-zag scanlines through an area, and arc fitting.

Both run over every line or block of a program, so they are compiled; each has
a pure-Python reference in tests/test_cam_paths.py that they are checked
against.  Areas are loops packed as in ``model`` (points (P, 2) float64 plus an
int64 start array), any orientation: inside is decided by the even-odd rule.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def _line_crossings(points, loop_start, y, xs):
    """x of every edge crossing the line ``y`` into ``xs``; returns how many (half-open at the upper end)."""
    n = 0
    for loop in range(len(loop_start) - 1):
        s, e = loop_start[loop], loop_start[loop + 1]
        for i in range(s, e):
            j = i + 1 if i + 1 < e else s
            y0, y1 = points[i, 1], points[j, 1]
            if (y0 <= y) != (y1 <= y):
                xs[n] = points[i, 0] + (y - y0) / (y1 - y0) * (points[j, 0] - points[i, 0])
                n += 1
    return n


@njit(cache=True)
def scanline_segments(points, loop_start, ys):
    """The pieces of each horizontal line ``y = ys[k]`` inside the area, left to right.

    Returns ``(segments (m, 3): x_left, x_right, y; line (m,): k)``.  An edge
    counts for a line when its ends lie on opposite sides of it (half-open at
    the upper end), so a vertex on the line is never counted twice.  Two
    passes (count, then fill) so the output is allocated once.
    """
    xs = np.empty(len(points))
    pairs = np.zeros(len(ys), np.int64)
    for k in range(len(ys)):
        pairs[k] = _line_crossings(points, loop_start, ys[k], xs) // 2
    segments = np.empty((pairs.sum(), 3))
    line = np.empty(pairs.sum(), np.int64)
    at = 0
    for k in range(len(ys)):
        if pairs[k] == 0:
            continue
        row = np.sort(xs[:_line_crossings(points, loop_start, ys[k], xs)])
        for p in range(pairs[k]):
            segments[at, 0], segments[at, 1], segments[at, 2] = row[2 * p], row[2 * p + 1], ys[k]
            line[at] = k
            at += 1
    return segments, line


LINE, CW, CCW = 1, 2, 3  # fit_arcs move kinds, as in G1, G2, G3


@njit(cache=True)
def _circle_through(ax, ay, bx, by, cx, cy):
    """Centre and radius of the circle through three points; radius -1 when they are (nearly) in a line."""
    d = 2.0 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
    if abs(d) < 1e-12:
        return 0.0, 0.0, -1.0
    a2, b2, c2 = ax * ax + ay * ay, bx * bx + by * by, cx * cx + cy * cy
    ux = (a2 * (by - cy) + b2 * (cy - ay) + c2 * (ay - by)) / d
    uy = (a2 * (cx - bx) + b2 * (ax - cx) + c2 * (bx - ax)) / d
    return ux, uy, math.hypot(ax - ux, ay - uy)


@njit(cache=True)
def _arc_holds(pts, i, j, ux, uy, r, turn, tol):
    """True when points i..j lie within ``tol`` of the circle, no chord between them strays more than ``tol``
    from the arc, and they run around it one way, less than half a turn."""
    sweep = 0.0
    for k in range(i, j + 1):
        if abs(math.hypot(pts[k, 0] - ux, pts[k, 1] - uy) - r) > tol:
            return False
        if k > i:
            half = 0.5 * math.hypot(pts[k, 0] - pts[k - 1, 0], pts[k, 1] - pts[k - 1, 1])
            if r - math.sqrt(max(r * r - half * half, 0.0)) > tol:
                return False  # the arc would leave the chord by more than tol: it may cut where the chord did not
            a0 = math.atan2(pts[k - 1, 1] - uy, pts[k - 1, 0] - ux)
            a1 = math.atan2(pts[k, 1] - uy, pts[k, 0] - ux)
            step = (a1 - a0 + math.pi) % (2.0 * math.pi) - math.pi
            if step * turn <= 0.0:
                return False
            sweep += abs(step)
    return sweep <= math.pi


@njit(cache=True)
def fit_arcs(pts, tol, min_points, max_radius):
    """Replace runs of a polyline's points that lie on a circle by arcs (fewer, smoother moves for grbl).

    Greedy from the first point: the longest run of at least ``min_points`` points within ``tol`` of the
    circle through its first, middle and last point, with every chord within ``tol`` of the arc (so the arc
    is never more than ``tol`` from the polyline it replaces), turning one way, under half a turn, radius at
    most ``max_radius``, becomes one arc; otherwise one straight move.  Returns per move (end index, kind LINE /
    CW / CCW, centre x, centre y)."""
    n = len(pts)
    end = np.empty(n, np.int64)
    kind = np.empty(n, np.int64)
    centre = np.zeros((n, 2))
    m, i = 0, 0
    while i < n - 1:
        best, bx, by, bturn = -1, 0.0, 0.0, 0.0
        j = i + min_points - 1
        while j < n:
            h = (i + j) // 2
            ux, uy, r = _circle_through(pts[i, 0], pts[i, 1], pts[h, 0], pts[h, 1], pts[j, 0], pts[j, 1])
            if r < 0.0 or r > max_radius:
                break
            cross = (pts[h, 0] - pts[i, 0]) * (pts[j, 1] - pts[h, 1]) - (pts[h, 1] - pts[i, 1]) * (pts[j, 0] - pts[h, 0])
            turn = 1.0 if cross > 0.0 else -1.0
            if not _arc_holds(pts, i, j, ux, uy, r, turn, tol):
                break
            best, bx, by, bturn = j, ux, uy, turn
            j += 1
        if best >= 0:
            end[m], kind[m], centre[m, 0], centre[m, 1] = best, CCW if bturn > 0 else CW, bx, by
            i = best
        else:
            end[m], kind[m] = i + 1, LINE
            i += 1
        m += 1
    return end[:m].copy(), kind[:m].copy(), centre[:m].copy()
