"""Numba kernels of the CAM planner: zig-zag scanlines through an area, and block timing.

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


@njit(cache=True)
def block_durations(start, end, length, feed, max_rate, accel):
    """Seconds per motion block, each a trapezoid from rest to rest (grbl's worst case, and the simulator's model).

    ``start``/``end`` (n, 3) mm; ``length`` (n,) mm along the path (an arc's
    length, the chord's otherwise); ``feed`` (n,) mm/min, <= 0 for a rapid
    (which runs at the fastest axis rate).  The speed and acceleration are
    limited along the chord's direction by every axis' ``max_rate`` (mm/min)
    and ``accel`` (mm/s^2), as grbl's planner limits them; a block without
    a chord (a full circle) gets the smallest acceleration.
    """
    n = len(length)
    out = np.zeros(n)
    fastest = max(max_rate[0], max(max_rate[1], max_rate[2]))
    slowest_accel = min(accel[0], min(accel[1], accel[2]))
    for b in range(n):
        dist = length[b]
        if dist <= 0.0:
            continue
        v = (feed[b] if feed[b] > 0.0 else fastest) / 60.0
        a = math.inf
        chord = 0.0
        for axis in range(3):
            d = end[b, axis] - start[b, axis]
            chord += d * d
        chord = math.sqrt(chord)
        for axis in range(3):
            d = abs(end[b, axis] - start[b, axis])
            if d > 1e-9 and chord > 0.0:
                v = min(v, max_rate[axis] / 60.0 * chord / d)
                a = min(a, accel[axis] * chord / d)
        if a == math.inf:
            a = slowest_accel
        if v * v / a >= dist:  # never reaches v: a triangle
            out[b] = 2.0 * math.sqrt(dist / a)
        else:
            out[b] = dist / v + v / a
    return out
