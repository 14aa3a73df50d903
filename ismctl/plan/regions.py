"""Each layer's regions: wall loops, top/bottom skin and sparse-infill areas; skirt and brim.

Offsets and booleans work on integer coordinates: millimetres times
``SCALE`` = 1e5, i.e. 10 nm units -- far below any printable detail and far
inside Clipper's 62-bit range for any bed.  Clipper (pyclipper) costs about a
microsecond per point per operation, a dozen operations per layer, so the
common cases run in Numba instead: an offset whose loops come out simple and
apart (Clipper's joins, exact corners), and an intersection or difference of
areas whose loops do not meet, loops both share aside (each loop stays, goes
or turns round, by winding).  Loops that cross or touch go to Clipper; an
offset then as its raw loops from Numba plus one Clipper union (what Clipper's
own offset does inside).

Round joins give a convex turn small enough that its miter point lies within
``ARC_TOLERANCE`` of the arc that one point (Clipper2's rule), not Clipper 6's
two: on a jagged outline (a height map's section turns a few degrees at every
vertex) those pairs doubled the points with every offset, and every boolean
after it paid for them.

Clipper's cost grows faster than linearly with vertex count, and a finely
tessellated mesh gives thousands of points per loop, so input loops are first
simplified (Douglas-Peucker, at most ``RESOLUTION`` deviation, far below a
line width).

Walls are openings: the outline is shrunk exactly (round joins at reflex
corners, so a wall never comes closer than one width to the previous one, which
chained miter offsets do at sharp reflex corners) and grown back with miter
joins (limit 2), which restore sharp convex corners -- straight walls stay
parallel and nest at exactly one width -- and never come closer than half a
width to the shrunk area's edge.  Skirt and brim grow with round joins: the
exact outward offset, no spikes at sharp corners.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from itertools import chain

import numpy as np
import pyclipper
from numba import njit

from .fdm_settings import SliceSettings
from .model import LayerRegions, LayerStack, PlanError
from .rows import copy_rows

SCALE = 100_000.0  # Clipper units per millimetre (10 nm)
RESOLUTION = 0.01  # mm: largest deviation allowed when simplifying input loops
MITER_LIMIT = 2.0
ARC_TOLERANCE = 0.001  # mm: round joins deviate from a true arc at most this much
SLIVER = 0.01  # of a line width squared: less area than this left out of the skin by its opening is not a region


# ---------------------------------------------------------------- simplification

@njit(cache=True, nogil=True)
def _distance_to_segment(p, a, b):
    dx, dy = b[0] - a[0], b[1] - a[1]
    length2 = dx * dx + dy * dy
    t = 0.0
    if length2 > 0.0:
        t = min(1.0, max(0.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / length2))
    ex, ey = a[0] + t * dx - p[0], a[1] + t * dy - p[1]
    return np.sqrt(ex * ex + ey * ey)


@njit(cache=True, nogil=True)
def simplify_keep(points, loop_start, tolerance):
    """Douglas-Peucker on every closed loop: which points to keep.

    Each loop is split at its first point and the point farthest from it; each
    half keeps recursively the point farthest from its chord while that is
    more than ``tolerance`` away (the first such point on ties).
    """
    keep = np.zeros(points.shape[0], np.bool_)
    stack = np.empty((points.shape[0] + 2, 2), np.int64)
    for loop in range(loop_start.shape[0] - 1):
        s, e = loop_start[loop], loop_start[loop + 1]
        n = e - s
        if n <= 3:
            keep[s:e] = True
            continue
        far, far_d = s, -1.0
        for i in range(s + 1, e):
            d = np.hypot(points[i, 0] - points[s, 0], points[i, 1] - points[s, 1])
            if d > far_d:
                far, far_d = i, d
        keep[s] = True
        keep[far] = True
        # unwrapped indices: j in [s, s + n] is point s + (j - s) % n
        stack[0, 0], stack[0, 1] = s, far
        stack[1, 0], stack[1, 1] = far, s + n
        top = 2
        while top > 0:
            top -= 1
            a, b = stack[top, 0], stack[top, 1]
            pa, pb = points[s + (a - s) % n], points[s + (b - s) % n]
            best, best_d = -1, tolerance
            for j in range(a + 1, b):
                d = _distance_to_segment(points[s + (j - s) % n], pa, pb)
                if d > best_d:
                    best, best_d = j, d
            if best >= 0:
                keep[s + (best - s) % n] = True
                stack[top, 0], stack[top, 1] = a, best
                stack[top + 1, 0], stack[top + 1, 1] = best, b
                top += 2
    return keep


def _stack_areas(stack: LayerStack, first_layer_only: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every layer's (or the first layer's) loops, simplified, as areas in Clipper units; loops left with < 3 points dropped."""
    points, loop_start, layer_start = stack.points, stack.loop_start, stack.layer_start
    if points.ndim != 2 or points.shape[1] != 2 or loop_start[-1] != len(points) or layer_start[-1] != len(loop_start) - 1:
        raise PlanError(f"layer stack: inconsistent arrays (points {points.shape}, {len(loop_start) - 1} loops, "
                        f"{len(layer_start) - 1} layers)")
    bad = np.flatnonzero(~np.isfinite(points).all(axis=1))
    if len(bad):
        loop = np.searchsorted(loop_start, bad[0], side="right") - 1
        layer = np.searchsorted(layer_start, loop, side="right") - 1
        raise PlanError(f"layer stack: layer {layer} (z {stack.z_cut[layer]:.3f} mm) has a non-finite point {points[bad[0]]}")
    points = np.ascontiguousarray(points, dtype=np.float64)
    keep = simplify_keep(points, np.ascontiguousarray(loop_start, dtype=np.int64), RESOLUTION)
    kept_before = np.concatenate(([0], np.cumsum(keep)))
    new_start = kept_before[loop_start]
    scaled = np.round(points[keep] * SCALE).astype(np.int64)
    layers = []
    for layer in range(1 if first_layer_only else len(stack)):
        first, last = layer_start[layer], layer_start[layer + 1]
        starts = new_start[first:last + 1]
        big = np.diff(starts) >= 3
        if big.all():
            area = (scaled[starts[0]:starts[-1]], starts - starts[0])
        else:
            area = _select((scaled, new_start[first:last + 1]), big)
        if _area_mm2(area) < 0:
            raise PlanError(f"layer stack: layer {layer} (z {stack.z_cut[layer]:.3f} mm) encloses a negative area "
                            f"({_area_mm2(area):.3f} mm^2): outlines must run counter-clockwise, holes clockwise")
        layers.append(area)
    return layers


# ---------------------------------------------------------------- Numba fast paths (Clipper when they do not apply)

@njit(cache=True, nogil=True)
def _clipper_round(v):
    return np.int64(v - 0.5) if v < 0 else np.int64(v + 0.5)


@njit(cache=True, nogil=True)
def _line_meet(normals, offsets, a, b, delta):
    """Where the offset lines of edges a and b (n . x = c + delta) cross."""
    det = normals[a, 0] * normals[b, 1] - normals[a, 1] * normals[b, 0]
    ca, cb = offsets[a] + delta, offsets[b] + delta
    return (ca * normals[b, 1] - cb * normals[a, 1]) / det, (normals[a, 0] * cb - normals[b, 0] * ca) / det


@njit(cache=True, nogil=True)
def _collapse_edges(points, s, e, normals, offsets, delta, nxt, prv):
    """Drop the edges whose offset shrinks to nothing between two corners where offset edges overlap.

    Such an edge's offset line is then outside the meeting point of its
    neighbours' (which meet there instead): what an exact offset does.  Returns
    the number of edges left, or -1 when a collapse would need a join (Clipper's job).
    """
    n_left = e - s
    stack = np.empty(2 * (e - s) + 8, np.int64)
    top = 0
    for i in range(s, e):
        stack[top] = i
        top += 1
    while top > 0 and n_left >= 3:
        top -= 1
        edge = stack[top]
        if nxt[edge] < 0:
            continue  # dropped already
        a, b = prv[edge], nxt[edge]
        if not (_overlapping(normals, a, edge, delta) and _overlapping(normals, edge, b, delta)):
            continue
        px, py = _line_meet(normals, offsets, a, edge, delta)
        qx, qy = _line_meet(normals, offsets, edge, b, delta)
        dx, dy = float(points[_next_point(edge, s, e), 0] - points[edge, 0]), float(points[_next_point(edge, s, e), 1] - points[edge, 1])
        if (qx - px) * dx + (qy - py) * dy >= 0.0:
            continue
        nxt[a], prv[b] = b, a
        nxt[edge] = prv[edge] = -1
        n_left -= 1
        if n_left >= 3 and not _overlapping(normals, a, b, delta):
            return -1
        if top + 2 > stack.shape[0]:
            return -1
        stack[top], stack[top + 1] = a, b
        top += 2
    return n_left


@njit(cache=True, nogil=True)
def _next_point(i, s, e):
    return i + 1 if i + 1 < e else s


@njit(cache=True, nogil=True)
def _overlapping(normals, a, b, delta):
    """Whether offset edges a -> b overlap at their corner (turning into the offset), not just collinear."""
    sin_a = normals[a, 0] * normals[b, 1] - normals[b, 0] * normals[a, 1]
    cos_a = normals[a, 0] * normals[b, 0] + normals[a, 1] * normals[b, 1]
    return sin_a * delta < 0.0 and not (abs(sin_a * delta) < 1.0 and cos_a > 0.0) and 1.0 + cos_a >= 1e-3


@njit(cache=True, nogil=True)
def _arc_steps(delta, arc_tolerance):
    """Clipper's round-join stepping for this offset, and the almost-straight limit.

    Returns (steps per radian, step sine, step cosine, limit): a convex turn
    with 1 + cos(turn) >= limit gets its miter point, which then lies within
    the arc tolerance of the exact arc (Clipper2's rule for almost straight
    corners; Clipper 6 puts two points there, doubling a jagged outline's
    points with every offset).
    """
    y = abs(delta) * 0.25 if arc_tolerance > abs(delta) * 0.25 else arc_tolerance
    steps_per_circle = math.pi / math.acos(1.0 - y / abs(delta))
    steps_per_circle = min(steps_per_circle, abs(delta) * math.pi)
    step_sin, step_cos = math.sin(2 * math.pi / steps_per_circle), math.cos(2 * math.pi / steps_per_circle)
    if delta < 0.0:
        step_sin = -step_sin
    return steps_per_circle / (2 * math.pi), step_sin, step_cos, 2.0 / (1.0 + y / abs(delta)) ** 2


@njit(cache=True, nogil=True)
def _offset_setup(points, loop_start, delta, miter_limit, arc_tolerance, out_per_point):
    """An offset kernel's stepping, miter limit and buffers: (arc, miter_r, out, out_start, normals, offsets)."""
    n_points = points.shape[0]
    return (_arc_steps(delta, arc_tolerance), 2.0 / (miter_limit * miter_limit),
            np.empty((out_per_point * n_points + 16, 2), np.int64), np.zeros(loop_start.shape[0], np.int64),
            np.empty((n_points, 2), np.float64), np.empty(n_points, np.float64))


@njit(cache=True, nogil=True)
def _room(out, n_out, extra):
    """``out`` with room for ``extra`` more rows after the first ``n_out``."""
    if n_out + extra < out.shape[0]:
        return out
    grown = np.empty((2 * out.shape[0] + extra + 8, 2), np.int64)
    copy_rows(grown, 0, out, 0, n_out)
    return grown


@njit(cache=True, nogil=True)
def _convex_join(out, n_out, px, py, nkx, nky, njx, njy, sin_a, cos_a, delta, round_join, miter_r, arc):
    """Write the join at a vertex the offset turns away from (Clipper's round, miter or square); return n_out."""
    steps_per_rad, step_sin, step_cos, almost_straight = arc
    r = 1.0 + cos_a
    if r >= (almost_straight if round_join else miter_r):  # the miter point
        q = delta / r
        out[n_out, 0], out[n_out, 1] = _clipper_round(px + (nkx + njx) * q), _clipper_round(py + (nky + njy) * q)
        return n_out + 1
    if round_join:
        a = math.atan2(max(-1.0, min(1.0, sin_a)), cos_a)
        steps = max(int(_clipper_round(steps_per_rad * abs(a))), 1)
        x, yy = nkx, nky
        for _ in range(steps):
            out[n_out, 0], out[n_out, 1] = _clipper_round(px + x * delta), _clipper_round(py + yy * delta)
            n_out += 1
            x, yy = x * step_cos - step_sin * yy, x * step_sin + yy * step_cos
        out[n_out, 0], out[n_out, 1] = _clipper_round(px + njx * delta), _clipper_round(py + njy * delta)
        return n_out + 1
    # square: Clipper's DoSquare
    dx = math.tan(math.atan2(max(-1.0, min(1.0, sin_a)), cos_a) / 4)
    out[n_out, 0] = _clipper_round(px + delta * (nkx - nky * dx))
    out[n_out, 1] = _clipper_round(py + delta * (nky + nkx * dx))
    out[n_out + 1, 0] = _clipper_round(px + delta * (njx + njy * dx))
    out[n_out + 1, 1] = _clipper_round(py + delta * (njy - njx * dx))
    return n_out + 2


@njit(cache=True, nogil=True)
def _edge_normals(points, s, e, normals, offsets):
    """Unit outward normals and line offsets (n . x = c) of a loop's edges; False on a zero-length edge."""
    for i in range(s, e):
        j = i + 1 if i + 1 < e else s
        dx, dy = float(points[j, 0] - points[i, 0]), float(points[j, 1] - points[i, 1])
        length = math.hypot(dx, dy)
        if length == 0.0:
            return False
        normals[i, 0], normals[i, 1] = dy / length, -dx / length
        offsets[i] = normals[i, 0] * points[i, 0] + normals[i, 1] * points[i, 1]
    return True


@njit(cache=True, nogil=True)
def _drop_repeats(out, loop_first, n_out):
    """Rounding can repeat a point: drop repeats within the loop from ``loop_first``; return its new end."""
    m = loop_first
    for i in range(loop_first, n_out):
        if m == loop_first or out[i, 0] != out[m - 1, 0] or out[i, 1] != out[m - 1, 1]:
            copy_rows(out, m, out, i, 1)
            m += 1
    while m - loop_first > 1 and out[m - 1, 0] == out[loop_first, 0] and out[m - 1, 1] == out[loop_first, 1]:
        m -= 1
    return m


@njit(cache=True, nogil=True)
def raw_offset(points, loop_start, delta, round_joins, miter_limit, arc_tolerance, guard, guard_start, guard_distance):
    """Every loop moved by ``delta`` (Clipper units, > 0 outwards) with Clipper's joins, rounded to integers.

    On the side where neighbouring edges overlap, the two offset edges meet at
    their intersection (Clipper routes through the source vertex and lets the
    union remove the loop); edges that vanish between two such corners are
    dropped.  ``ok`` is False when that is not the exact offset locally: an
    offset edge next to a join reversed, a near-reversal, or a zero-length
    source edge.  Crossings between loops are checked apart.
    A miter or square corner that would come closer than ``guard_distance``
    (when > 0) to the ``guard`` loops' edges is made round instead.
    """
    n_points = points.shape[0]
    arc, miter_r, out, out_start, normals, offsets = _offset_setup(points, loop_start, delta, miter_limit,
                                                                   arc_tolerance, 2)
    nxt = np.empty(n_points, np.int64)
    prv = np.empty(n_points, np.int64)
    guard_boxes = _loop_boxes(guard, guard_start)
    n_out = n_loops = 0
    for loop in range(loop_start.shape[0] - 1):
        s, e = loop_start[loop], loop_start[loop + 1]
        if not _edge_normals(points, s, e, normals, offsets):
            return out[:0], out_start, False
        for i in range(s, e):
            j = i + 1 if i + 1 < e else s
            nxt[i], prv[j] = j, i
        n_left = _collapse_edges(points, s, e, normals, offsets, delta, nxt, prv)
        if n_left < 0:
            return out[:0], out_start, False
        loop_first = n_out
        if n_left < 3:  # the loop offsets to nothing
            continue
        first_edge = s
        while nxt[first_edge] < 0:
            first_edge += 1
        last_of_previous = -1
        j = first_edge
        for _ in range(n_left):
            k = prv[j]  # the previous edge; it ends at vertex j unless edges between them were dropped
            nkx, nky, njx, njy = normals[k, 0], normals[k, 1], normals[j, 0], normals[j, 1]
            px, py = float(points[j, 0]), float(points[j, 1])
            sin_a = nkx * njy - njx * nky
            cos_a = nkx * njx + nky * njy
            out = _room(out, n_out, 4 + int(2 * math.pi * arc[0]))
            first_of_vertex = n_out
            if _next_point(k, s, e) != j:  # dropped edges between: the lines meet (an overlapping corner)
                x, yy = _line_meet(normals, offsets, k, j, delta)
                out[n_out, 0], out[n_out, 1] = _clipper_round(x), _clipper_round(yy)
                n_out += 1
            elif abs(sin_a * delta) < 1.0 and cos_a > 0.0:  # collinear: one point
                out[n_out, 0], out[n_out, 1] = _clipper_round(px + nkx * delta), _clipper_round(py + nky * delta)
                n_out += 1
            elif sin_a * delta < 0.0:  # the offset edges overlap: their intersection
                r = 1.0 + cos_a
                if r < 1e-3:
                    return out[:0], out_start, False
                q = delta / r
                out[n_out, 0], out[n_out, 1] = _clipper_round(px + (nkx + njx) * q), _clipper_round(py + (nky + njy) * q)
                n_out += 1
            else:
                round_join = round_joins or (guard_distance > 0.0 and _corner_too_close(
                    px, py, nkx, nky, njx, njy, delta, miter_r, arc_tolerance, guard, guard_start, guard_boxes,
                    guard_distance))
                n_out = _convex_join(out, n_out, px, py, nkx, nky, njx, njy, sin_a, cos_a, delta, round_join,
                                     miter_r, arc)
            if last_of_previous >= 0 and not _same_direction(out, last_of_previous, first_of_vertex, points, k,
                                                             _next_point(k, s, e)):
                return out[:0], out_start, False
            last_of_previous = n_out - 1
            j = nxt[j]
        # the closing edge: from the last corner to the first
        k = prv[first_edge]
        if not _same_direction(out, last_of_previous, loop_first, points, k, _next_point(k, s, e)):
            return out[:0], out_start, False
        n_out = _drop_repeats(out, loop_first, n_out)
        if n_out - loop_first < 3:
            return out[:0], out_start, False
        n_loops += 1
        out_start[n_loops] = n_out
    return out[:n_out], out_start[:n_loops + 1], True


@njit(cache=True, nogil=True)
def clipper_raw_offset(points, loop_start, delta, round_joins, miter_limit, arc_tolerance):
    """Clipper's raw offset loops, for a union with positive winding to turn into the offset area.

    Where neighbouring offset edges overlap the loop runs through the source
    vertex (the little reversed loop winds 0 or less and the union drops it),
    so this is valid whatever the loops do; joins elsewhere as in
    ``raw_offset``, almost straight corners included.  ``ok`` is False only
    for a zero-length source edge.
    """
    arc, miter_r, out, out_start, normals, offsets = _offset_setup(points, loop_start, delta, miter_limit,
                                                                   arc_tolerance, 3)
    n_out = n_loops = 0
    for loop in range(loop_start.shape[0] - 1):
        s, e = loop_start[loop], loop_start[loop + 1]
        if not _edge_normals(points, s, e, normals, offsets):
            return out[:0], out_start, False
        loop_first = n_out
        for j in range(s, e):
            k = j - 1 if j > s else e - 1
            nkx, nky, njx, njy = normals[k, 0], normals[k, 1], normals[j, 0], normals[j, 1]
            px, py = float(points[j, 0]), float(points[j, 1])
            sin_a = nkx * njy - njx * nky
            cos_a = nkx * njx + nky * njy
            out = _room(out, n_out, 4 + int(2 * math.pi * arc[0]))
            if abs(sin_a * delta) < 1.0 and cos_a > 0.0:  # collinear: one point
                out[n_out, 0], out[n_out, 1] = _clipper_round(px + nkx * delta), _clipper_round(py + nky * delta)
                n_out += 1
            elif sin_a * delta < 0.0:  # overlapping: through the source vertex
                out[n_out, 0], out[n_out, 1] = _clipper_round(px + nkx * delta), _clipper_round(py + nky * delta)
                out[n_out + 1, 0], out[n_out + 1, 1] = points[j, 0], points[j, 1]
                out[n_out + 2, 0], out[n_out + 2, 1] = _clipper_round(px + njx * delta), _clipper_round(py + njy * delta)
                n_out += 3
            else:
                n_out = _convex_join(out, n_out, px, py, nkx, nky, njx, njy, sin_a, cos_a, delta, round_joins,
                                     miter_r, arc)
        n_out = _drop_repeats(out, loop_first, n_out)
        if n_out - loop_first < 3:
            n_out = loop_first
            continue
        n_loops += 1
        out_start[n_loops] = n_out
    return out[:n_out], out_start[:n_loops + 1], True


@njit(cache=True, nogil=True)
def _point_segment_distance(px, py, ax, ay, bx, by):
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0.0 else min(1.0, max(0.0, ((px - ax) * dx + (py - ay) * dy) / length2))
    return math.hypot(ax + t * dx - px, ay + t * dy - py)


@njit(cache=True, nogil=True)
def _segment_distance(ax, ay, bx, by, cx, cy, dx, dy):
    """Distance between segments ab and cd (0 when they cross)."""
    d1 = (dx - cx) * (ay - cy) - (dy - cy) * (ax - cx)
    d2 = (dx - cx) * (by - cy) - (dy - cy) * (bx - cx)
    d3 = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    d4 = (bx - ax) * (dy - ay) - (by - ay) * (dx - ax)
    if d1 * d2 < 0.0 and d3 * d4 < 0.0:
        return 0.0
    return min(min(_point_segment_distance(ax, ay, cx, cy, dx, dy), _point_segment_distance(bx, by, cx, cy, dx, dy)),
               min(_point_segment_distance(cx, cy, ax, ay, bx, by), _point_segment_distance(dx, dy, ax, ay, bx, by)))


@njit(cache=True, nogil=True)
def _corner_too_close(px, py, nkx, nky, njx, njy, delta, miter_r, arc_tolerance, guard, guard_start, guard_boxes,
                      guard_distance):
    """Whether the sharp corner grown at (px, py) reaches within ``guard_distance`` of a guard edge.

    The round join is safe (its points are ``delta`` from the source); the
    sharp corner adds the cap between the round join and the miter (or square)
    corner, whose outer sides are checked.  Caps within the arc tolerance of
    the round join are not worth the check.  Guard loops and edges whose boxes
    lie farther than that from the cap's box are skipped (``guard_boxes``: the
    guard's ``_loop_boxes``): every corner against every guard edge made
    guarded offsets most of the regions step on small parts.
    """
    r = 1.0 + nkx * njx + nky * njy
    if r >= miter_r:
        q = delta / r
        tips = np.array([[px + (nkx + njx) * q, py + (nky + njy) * q]])
    else:  # the square corner's two points
        sin_a = nkx * njy - njx * nky
        t = math.tan(math.atan2(max(-1.0, min(1.0, sin_a)), nkx * njx + nky * njy) / 4)
        tips = np.array([[px + delta * (nkx - nky * t), py + delta * (nky + nkx * t)],
                         [px + delta * (njx + njy * t), py + delta * (njy - njx * t)]])
    if math.hypot(tips[0, 0] - px, tips[0, 1] - py) - abs(delta) <= arc_tolerance:
        return False
    n = tips.shape[0]
    outline = np.empty((n + 2, 2))
    outline[0, 0], outline[0, 1] = px + nkx * delta, py + nky * delta
    copy_rows(outline, 1, tips, 0, n)
    outline[n + 1, 0], outline[n + 1, 1] = px + njx * delta, py + njy * delta
    limit = guard_distance - arc_tolerance
    reach = limit + 1.0  # a unit more: the distance's own rounding cannot matter beyond it
    lo_x, hi_x = outline[:, 0].min() - reach, outline[:, 0].max() + reach
    lo_y, hi_y = outline[:, 1].min() - reach, outline[:, 1].max() + reach
    for loop in range(guard_start.shape[0] - 1):
        if (guard_boxes[loop, 3] > hi_x or guard_boxes[loop, 2] < lo_x
                or guard_boxes[loop, 0] > hi_y or guard_boxes[loop, 1] < lo_y):
            continue
        s, e = guard_start[loop], guard_start[loop + 1]
        for i in range(s, e):
            j = i + 1 if i + 1 < e else s
            if (min(guard[i, 0], guard[j, 0]) > hi_x or max(guard[i, 0], guard[j, 0]) < lo_x
                    or min(guard[i, 1], guard[j, 1]) > hi_y or max(guard[i, 1], guard[j, 1]) < lo_y):
                continue
            for c in range(n + 1):
                if _segment_distance(outline[c, 0], outline[c, 1], outline[c + 1, 0], outline[c + 1, 1],
                                     float(guard[i, 0]), float(guard[i, 1]), float(guard[j, 0]), float(guard[j, 1])) < limit:
                    return True
    return False


@njit(cache=True, nogil=True)
def _same_direction(out, a, b, points, i, j):
    """Whether the offset edge out[a] -> out[b] runs the way source edge i -> j does."""
    return ((out[b, 0] - out[a, 0]) * (points[j, 0] - points[i, 0])
            + (out[b, 1] - out[a, 1]) * (points[j, 1] - points[i, 1])) > 0


@njit(cache=True, nogil=True)
def _orient(ax, ay, bx, by, cx, cy):
    v = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    return 1 if v > 0 else (-1 if v < 0 else 0)


@njit(cache=True, nogil=True)
def _between(a, b, c):
    return min(a, b) <= c <= max(a, b)


@njit(cache=True, nogil=True)
def _segments_meet(ax, ay, bx, by, cx, cy, dx, dy):
    """Whether closed segments ab and cd share a point (crossing or touching), exactly on integers."""
    d1, d2 = _orient(cx, cy, dx, dy, ax, ay), _orient(cx, cy, dx, dy, bx, by)
    d3, d4 = _orient(ax, ay, bx, by, cx, cy), _orient(ax, ay, bx, by, dx, dy)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True
    return ((d1 == 0 and _between(cx, dx, ax) and _between(cy, dy, ay))
            or (d2 == 0 and _between(cx, dx, bx) and _between(cy, dy, by))
            or (d3 == 0 and _between(ax, bx, cx) and _between(ay, by, cy))
            or (d4 == 0 and _between(ax, bx, dx) and _between(ay, by, dy)))


@njit(cache=True, nogil=True)
def loops_meet(points, loop_start, group, within_groups):
    """Whether any two edges meet: of different groups, or (``within_groups``) any two that are not neighbours.

    A sweep along x over the edges sorted by their left end; neighbours in a
    loop count only when they fold back onto each other.
    """
    n = points.shape[0]
    edge_loop = np.empty(n, np.int64)
    nxt = np.empty(n, np.int64)
    for loop in range(loop_start.shape[0] - 1):
        s, e = loop_start[loop], loop_start[loop + 1]
        for i in range(s, e):
            edge_loop[i] = loop
            nxt[i] = i + 1 if i + 1 < e else s
    xmin = np.empty(n, np.int64)
    for i in range(n):
        xmin[i] = min(points[i, 0], points[nxt[i], 0])
    order = np.argsort(xmin, kind="mergesort")
    active = np.empty(n, np.int64)
    n_active = 0
    for rank in range(n):
        a = order[rank]
        ax, ay, bx, by = points[a, 0], points[a, 1], points[nxt[a], 0], points[nxt[a], 1]
        kept = 0
        for slot in range(n_active):
            c = active[slot]
            cx, cy, dx, dy = points[c, 0], points[c, 1], points[nxt[c], 0], points[nxt[c], 1]
            if max(cx, dx) < xmin[a]:
                continue  # left behind for good
            active[kept] = c
            kept += 1
            same = group[edge_loop[a]] == group[edge_loop[c]]
            if same and not within_groups:
                continue
            if max(ay, by) < min(cy, dy) or max(cy, dy) < min(ay, by):
                continue
            if edge_loop[a] == edge_loop[c] and (nxt[a] == c or nxt[c] == a):
                if nxt[c] == a:  # c ends where a starts
                    p, q, r = c, a, nxt[a]
                else:
                    p, q, r = a, c, nxt[c]
                px, py, qx, qy, rx, ry = points[p, 0], points[p, 1], points[q, 0], points[q, 1], points[r, 0], points[r, 1]
                if (_orient(px, py, qx, qy, rx, ry) == 0
                        and (qx - px) * (rx - qx) + (qy - py) * (ry - qy) < 0):
                    return True
                if nxt[a] == c and nxt[c] == a:
                    return True  # a two-point loop
                continue
            if _segments_meet(ax, ay, bx, by, cx, cy, dx, dy):
                return True
        n_active = kept
        active[n_active] = a
        n_active += 1
    return False


@njit(cache=True, nogil=True)
def _loop_boxes(points, loop_start):
    """Per loop: lowest y, highest y, largest x (what a ray to +x needs to skip a loop), smallest x."""
    boxes = np.empty((loop_start.shape[0] - 1, 4), np.int64)
    for loop in range(loop_start.shape[0] - 1):
        s, e = loop_start[loop], loop_start[loop + 1]
        boxes[loop, 0] = points[s:e, 1].min()
        boxes[loop, 1] = points[s:e, 1].max()
        boxes[loop, 2] = points[s:e, 0].max()
        boxes[loop, 3] = points[s:e, 0].min()
    return boxes


@njit(cache=True, nogil=True)
def _winding_at(points, loop_start, boxes, x, y, skip):
    """Winding number of the loops (but loop ``skip``) around (x, y), exactly on integers."""
    w = 0
    for loop in range(loop_start.shape[0] - 1):
        if loop == skip or y < boxes[loop, 0] or y > boxes[loop, 1] or x > boxes[loop, 2]:
            continue
        s, e = loop_start[loop], loop_start[loop + 1]
        for i in range(s, e):
            j = i + 1 if i + 1 < e else s
            ay, by = points[i, 1], points[j, 1]
            if ay <= y < by:
                if _orient(points[i, 0], ay, points[j, 0], by, x, y) > 0:
                    w += 1
            elif by <= y < ay:
                if _orient(points[i, 0], ay, points[j, 0], by, x, y) < 0:
                    w -= 1
    return w


@njit(cache=True, nogil=True)
def _signed_area2(points, s, e):
    total = 0.0
    for i in range(s, e):
        j = i + 1 if i + 1 < e else s
        total += float(points[i, 0]) * float(points[j, 1]) - float(points[j, 0]) * float(points[i, 1])
    return total


@njit(cache=True, nogil=True)
def loop_areas(points, loop_start):
    """Signed area of every loop (shoelace), in the points' units squared."""
    areas = np.empty(loop_start.shape[0] - 1, np.float64)
    for loop in range(loop_start.shape[0] - 1):
        areas[loop] = _signed_area2(points, loop_start[loop], loop_start[loop + 1]) / 2
    return areas


@njit(cache=True, nogil=True)
def _select_loops(points, loop_start, keep, reverse):
    """The loops where ``keep`` (turned around where ``reverse``), packed anew."""
    n_points, n_loops = 0, 0
    for loop in range(keep.shape[0]):
        if keep[loop]:
            n_points += loop_start[loop + 1] - loop_start[loop]
            n_loops += 1
    out = np.empty((n_points, 2), np.int64)
    out_start = np.zeros(n_loops + 1, np.int64)
    m, k = 0, 0
    for loop in range(keep.shape[0]):
        if not keep[loop]:
            continue
        s, e = loop_start[loop], loop_start[loop + 1]
        for i in range(e - s):
            copy_rows(out, m + i, points, e - 1 - i if reverse[loop] else s + i, 1)
        m += e - s
        k += 1
        out_start[k] = m
    return out, out_start


@njit(cache=True, nogil=True)
def offset_loops(points, loop_start, delta, round_joins, miter_limit, arc_tolerance, guard, guard_start, guard_distance):
    """The offset area when the raw offset loops meet nowhere (``ok``), else ``ok`` False for Clipper to do it.

    Loops that meet nowhere bound the region of positive winding (Clipper's
    rule for offsets): an outline stays when the others wind 0 around it, a
    hole when they wind 1.
    """
    raw, raw_start, ok = raw_offset(points, loop_start, delta, round_joins, miter_limit, arc_tolerance,
                                    guard, guard_start, guard_distance)
    n = raw_start.shape[0] - 1
    if not ok or loops_meet(raw, raw_start, np.zeros(n, np.int64), True):
        return raw[:0], raw_start[:1], False
    boxes = _loop_boxes(raw, raw_start)
    keep = np.empty(n, np.bool_)
    for loop in range(n):
        s = raw_start[loop]
        w = _winding_at(raw, raw_start, boxes, raw[s, 0], raw[s, 1], loop)
        keep[loop] = w == 0 if _signed_area2(raw, s, raw_start[loop + 1]) > 0 else w == 1
    out, out_start = _select_loops(raw, raw_start, keep, np.zeros(n, np.bool_))
    return out, out_start, True


@njit(cache=True, nogil=True)
def _lowest_point(points, s, e):
    """The loop's smallest point in (x, y) order: where two equal loops start alike."""
    low = s
    for i in range(s + 1, e):
        if points[i, 0] < points[low, 0] or (points[i, 0] == points[low, 0] and points[i, 1] < points[low, 1]):
            low = i
    return low


@njit(cache=True, nogil=True)
def _twin_loops(a, a_start, b, b_start):
    """For each loop of B, the loop of A with the same points in the same order (from any start), or -1."""
    n_a, n_b = a_start.shape[0] - 1, b_start.shape[0] - 1
    a_low = np.empty(n_a, np.int64)
    for i in range(n_a):
        a_low[i] = _lowest_point(a, a_start[i], a_start[i + 1])
    twin = np.full(n_b, -1, np.int64)
    for j in range(n_b):
        sb, n = b_start[j], b_start[j + 1] - b_start[j]
        lb = _lowest_point(b, sb, sb + n)
        for i in range(n_a):
            sa = a_start[i]
            if a_start[i + 1] - sa != n or a[a_low[i], 0] != b[lb, 0] or a[a_low[i], 1] != b[lb, 1]:
                continue
            same = True
            for k in range(n):
                p, q = sa + (a_low[i] - sa + k) % n, sb + (lb - sb + k) % n
                if a[p, 0] != b[q, 0] or a[p, 1] != b[q, 1]:
                    same = False
                    break
            if same:
                twin[j] = i
                break
    return twin


@njit(cache=True, nogil=True)
def combine_loops(a, a_start, b, b_start, difference):
    """Intersection (or ``difference``) A - B of clean areas whose loops are shared or meet nowhere (``ok``; else False).

    Every other loop then lies wholly inside or outside the other area: A's
    loops inside B and B's inside A bound the intersection; A's outside B and
    B's inside A, turned around, bound the difference.  A loop both areas have
    (a wall straight up through consecutive layers) bounds the intersection
    once and the difference not at all: on both of its sides A and B agree.
    """
    n_a, n_b = a_start.shape[0] - 1, b_start.shape[0] - 1
    if a.shape[0] == b.shape[0] and n_a == n_b and (a_start == b_start).all() and (a == b).all():
        return (a[:0], a_start[:1], True) if difference else (a.copy(), a_start.copy(), True)
    twin = _twin_loops(a, a_start, b, b_start)
    b_only, b_only_start = _select_loops(b, b_start, twin < 0, np.zeros(n_b, np.bool_))
    # B's shared loops are A's own, which A's other loops never meet: only B's others are tested
    points = np.concatenate((a, b_only))
    loop_start = np.concatenate((a_start, b_only_start[1:] + a.shape[0]))
    group = np.zeros(loop_start.shape[0] - 1, np.int64)
    group[n_a:] = 1
    if loops_meet(points, loop_start, group, False):
        return points[:0], loop_start[:1], False
    shared_in_a = np.zeros(n_a, np.bool_)
    for j in range(n_b):
        if twin[j] >= 0:
            shared_in_a[twin[j]] = True
    a_boxes, b_boxes = _loop_boxes(a, a_start), _loop_boxes(b, b_start)
    keep = np.empty(loop_start.shape[0] - 1, np.bool_)
    reverse = np.zeros(loop_start.shape[0] - 1, np.bool_)
    for loop in range(n_a):
        if shared_in_a[loop]:
            keep[loop] = not difference
            continue
        inside = _winding_at(b, b_start, b_boxes, a[a_start[loop], 0], a[a_start[loop], 1], -1) > 0
        keep[loop] = inside != difference
    for loop in range(loop_start.shape[0] - 1 - n_a):
        first = b_only_start[loop]
        inside = _winding_at(a, a_start, a_boxes, b_only[first, 0], b_only[first, 1], -1) > 0
        keep[n_a + loop] = inside
        reverse[n_a + loop] = difference
    out, out_start = _select_loops(points, loop_start, keep, reverse)
    return out, out_start, True


# ---------------------------------------------------------------- areas

# An area is a set of oriented closed loops in Clipper units: int64 points (n, 2)
# and an int64 start array (loop i is points[start[i]:start[i + 1]]), clean
# (no two loops meet, winding 0 or 1 everywhere) -- what Clipper returns.
EMPTY = (np.zeros((0, 2), np.int64), np.zeros(1, np.int64))


def _from_paths(paths):
    if not paths:
        return EMPTY
    points = np.fromiter(chain.from_iterable(chain.from_iterable(paths)), np.int64).reshape(-1, 2)
    return points, np.concatenate(([0], np.cumsum([len(p) for p in paths]))).astype(np.int64)


def _to_paths(area):
    points, start = area
    flat = points.tolist()
    return [flat[a:b] for a, b in zip(start[:-1].tolist(), start[1:].tolist())]


def _loop_areas(area) -> np.ndarray:
    """Signed area of every loop, in Clipper units squared (shoelace)."""
    return loop_areas(area[0], area[1])


def _area_mm2(area) -> float:
    return float(_loop_areas(area).sum()) / SCALE**2


def _select(area, keep):
    """The loops where ``keep`` is True."""
    keep = np.ascontiguousarray(keep, dtype=np.bool_)
    return _select_loops(area[0], area[1], keep, np.zeros(len(keep), np.bool_))


def _empty(area) -> bool:
    return len(area[1]) == 1


def _drop_small(area, min_area_mm2: float):
    """Loops (outlines or holes) enclosing less than ``min_area_mm2``: numerical slivers."""
    if _empty(area):
        return area
    keep = np.abs(_loop_areas(area)) >= min_area_mm2 * SCALE**2
    return area if keep.all() else _select(area, keep)


def _offset(area, delta_mm: float, join=None, guard=EMPTY, guard_mm: float = 0.0):
    """The area grown (delta > 0) or shrunk (delta < 0), as oriented loops.

    Shrinking is exact (round joins at reflex corners); growing keeps convex
    corners sharp (miter) unless ``join`` says otherwise -- but no closer than
    ``guard_mm`` to the ``guard`` area's edges.  The Numba raw offset is the
    answer when its loops meet nowhere (loops are then kept or dropped by the
    winding of the others; corners too close to the guard are made round);
    anything else goes to Clipper (and is clipped to the guard shrunk by
    ``guard_mm``).
    """
    if _empty(area):
        return EMPTY
    if join is None:
        join = pyclipper.JT_ROUND if delta_mm < 0 else pyclipper.JT_MITER
    points, start, ok = offset_loops(area[0], area[1], delta_mm * SCALE, join == pyclipper.JT_ROUND,
                                     MITER_LIMIT, ARC_TOLERANCE * SCALE, guard[0], guard[1], guard_mm * SCALE)
    if ok:
        return points, start
    raw = clipper_raw_offset(area[0], area[1], delta_mm * SCALE, join == pyclipper.JT_ROUND, MITER_LIMIT,
                             ARC_TOLERANCE * SCALE)
    if raw[2]:
        result = _union(raw[:2], pyclipper.PFT_POSITIVE)
    else:
        offset = pyclipper.PyclipperOffset(MITER_LIMIT, ARC_TOLERANCE * SCALE)
        offset.AddPaths(_to_paths(area), join, pyclipper.ET_CLOSEDPOLYGON)
        result = _from_paths(offset.Execute(delta_mm * SCALE))
    return _intersection(result, _offset(guard, -guard_mm)) if guard_mm > 0 else result


def _boolean(operation, subject, clip):
    """Clipper's boolean of two clean areas; when their loops meet nowhere each loop just stays, goes or turns."""
    if _empty(subject):
        return EMPTY
    if _empty(clip):
        return subject if operation in (pyclipper.CT_DIFFERENCE, pyclipper.CT_UNION) else EMPTY
    if operation != pyclipper.CT_UNION:
        points, start, ok = combine_loops(subject[0], subject[1], clip[0], clip[1],
                                          operation == pyclipper.CT_DIFFERENCE)
        if ok:
            return points, start
    clipper = pyclipper.Pyclipper()
    clipper.AddPaths(_to_paths(subject), pyclipper.PT_SUBJECT, True)
    clipper.AddPaths(_to_paths(clip), pyclipper.PT_CLIP, True)
    return _from_paths(clipper.Execute(operation, pyclipper.PFT_NONZERO, pyclipper.PFT_NONZERO))


def _intersection(a, b):
    return _boolean(pyclipper.CT_INTERSECTION, a, b)


def _difference(a, b):
    return _boolean(pyclipper.CT_DIFFERENCE, a, b)


def _union(area, fill=pyclipper.PFT_NONZERO):
    if _empty(area):
        return EMPTY
    clipper = pyclipper.Pyclipper()
    clipper.AddPaths(_to_paths(area), pyclipper.PT_SUBJECT, True)
    return _from_paths(clipper.Execute(pyclipper.CT_UNION, fill, fill))


def _opened(area, width: float):
    """``area`` without the parts thinner than ``width`` (shrink, then grow back)."""
    return _offset(_offset(area, -width / 2), width / 2) if width > 0 else area


def _same_area(a, b) -> bool:
    return a[0].shape == b[0].shape and np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0])


def _to_mm(area) -> list[np.ndarray]:
    points, start = area
    if _empty(area):
        return []
    mm, bounds = points / SCALE, start.tolist()
    return [mm[a:b] for a, b in zip(bounds[:-1], bounds[1:])]  # np.split costs several times more per loop


# ---------------------------------------------------------------- regions

def _walls_and_fill(outline, width: float, settings: SliceSettings):
    """Wall centrelines (outermost first) and the fill area inside the innermost wall.

    Wall k is where a whole bead fits: the outline shrunk by (k + 1) widths
    (the bead's inner edge), grown back by half a width, never closer than
    half a width to wall k - 1 (or the outline).  In parts too thin for a
    bead the wall vanishes instead of doubling back on itself.
    """
    walls = []
    inner = outer = outline
    for k in range(settings.perimeters):
        inner = _drop_small(_offset(inner, -width), (0.1 * width) ** 2)
        # sharp corners regrown where the shrink cut off a narrow spike would come closer than half a
        # width to the previous wall (or the outline): there they are round
        centre = _drop_small(_offset(inner, width / 2, guard=outer, guard_mm=width / 2), (width / 2) ** 2)
        if k == 0:
            centre = _with_thin_walls(outline, centre, width, settings.min_feature)
        if _empty(centre):
            return walls, EMPTY
        walls.append(centre)
        outer = centre
    if not settings.perimeters:
        return walls, _union(outline)
    overlap = settings.infill_overlap * width
    return walls, (_offset(inner, overlap) if overlap > 0 else inner)


THIN_INSETS = (0.375, 0.25)  # of a line width: where a thin island's single wall is tried, widest first


def _outer_loops(area):
    return _select(area, _loop_areas(area) > 0)


def _with_thin_walls(outline, centre, width: float, min_feature: float):
    """The outer wall plus one loop for each island too thin for a full-width bead.

    Such an island (a shell cut by a bore, a fin) would get no extrusion at
    all.  It gets its outline's inset at the widest of ``THIN_INSETS`` (never
    under ``min_feature / 2``) where it still exists, outer loop only, printed
    at the normal width: the bead overhangs the island's edges and puts up to
    about twice the material a centreline bead would -- better than a hole in
    the part.  Only checked when the outline has more islands than the outer
    wall (an island that merely split is not noticed).
    """
    islands = _drop_small(_outer_loops(outline), (width / 2) ** 2)
    covered = _outer_loops(centre)
    if len(covered[1]) >= len(islands[1]):
        return centre
    wall_points = covered[0][covered[1][:-1]]  # one point of every outer-wall loop
    for fraction in THIN_INSETS:
        inset = _outer_loops(_drop_small(_offset(outline, -max(fraction * width, min_feature / 2)), (0.1 * width) ** 2))
        if _empty(inset):
            continue
        boxes = _loop_boxes(*inset)
        has_wall = np.zeros(len(inset[1]) - 1, np.bool_)
        for x, y in wall_points.tolist():
            for loop in range(len(has_wall)):
                if not has_wall[loop] and _winding_at(inset[0], inset[1][loop:loop + 2], boxes[loop:loop + 1], x, y, -1):
                    has_wall[loop] = True
        thin = _select(inset, ~has_wall)
        if not _empty(thin):
            return _from_paths(_to_paths(centre) + _to_paths(thin))
    return centre


class _Intersections:
    """Intersections of the fill areas of runs of consecutive layers, by doubling.

    ``level[m][i]`` is the intersection of layers i .. i + 2**m - 1, so any run is
    the intersection of two overlapping power-of-two runs: about log2(n) + 1
    booleans per layer instead of n.  Layers outside the stack are empty.
    """

    def __init__(self, fills, longest_run: int, pool: ThreadPoolExecutor):
        self.levels = [fills]
        span = 1
        while 2 * span <= longest_run:
            below, step = self.levels[-1], span
            self.levels.append(list(pool.map(
                lambda i: _intersection(below[i], below[i + step]) if i + step < len(fills) else EMPTY,
                range(len(fills)))))
            span *= 2

    def run(self, first: int, n: int):
        if first < 0 or first + n > len(self.levels[0]):
            return EMPTY
        m = n.bit_length() - 1
        level = self.levels[m]
        second = first + n - (1 << m)
        return level[first] if second == first else _intersection(level[first], level[second])


def _skin_and_sparse(index: int, fill, runs: _Intersections, width: float, settings: SliceSettings):
    """Split a fill area into solid skin and sparse infill (see ``build_regions``)."""
    if _empty(fill) or settings.infill_density >= 1:
        return fill, EMPTY
    interior = fill
    if settings.top_layers:
        interior = _intersection(interior, runs.run(index + 1, settings.top_layers))
    if settings.bottom_layers:
        interior = _intersection(interior, runs.run(index - settings.bottom_layers, settings.bottom_layers))
    skin, rest = EMPTY, fill
    if _area_mm2(fill) - _area_mm2(interior) >= settings.min_feature**2:
        rim = _difference(fill, interior)
        # pieces smaller than a line width squared hold no line: crumbs of the opening's corners
        skin = _drop_small(_opened(rim, settings.min_feature), width**2)
        # when the opening and the crumb filter took nothing that could hold a line, fill - skin is the interior
        rest = interior if _area_mm2(rim) - _area_mm2(skin) < SLIVER * width**2 else _difference(fill, skin)
    sparse = _drop_small(rest, width**2) if settings.infill_density > 0 else EMPTY
    return skin, sparse


MAX_THREADS = 4  # the GIL-held parts (areas to and from Clipper's lists) bound the gain; measured on 2 cores only


def _threads() -> int:
    """Cores this process may run on (its affinity, not the machine's count), at most ``MAX_THREADS``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_THREADS))


def _first_of_same(layers) -> list[int]:
    """For each layer, the first of the run of identical outlines it belongs to (layer 0 has its own width)."""
    first = []
    for index, outline in enumerate(layers):
        same = index > 1 and _same_area(outline, layers[index - 1])  # an extruded profile
        first.append(first[-1] if same else index)
    return first


def build_regions(stack: LayerStack, settings: SliceSettings) -> list[LayerRegions]:
    """Walls, skin and sparse areas of every layer.

    A layer's fill area that is not inside the fill areas of all of the next
    ``top_layers`` layers is top skin, likewise ``bottom_layers`` below for
    bottom skin; layers outside the part count as empty, so the first and last
    few layers are solid.  Skin thinner than ``min_feature`` is dropped (it
    stays sparse).  Density 1 makes the whole fill area skin; density 0 leaves
    the sparse area empty.

    Layers are independent within each stage, so they run on a thread per
    core: Clipper and the Numba kernels release the GIL while they work.
    """
    layers = _stack_areas(stack)
    widths = [settings.first_layer_line_width if index == 0 else settings.line_width for index in range(len(layers))]
    first = _first_of_same(layers)
    with ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="regions") as pool:
        distinct = sorted(set(first))
        done = dict(zip(distinct, pool.map(lambda i: _walls_and_fill(layers[i], widths[i], settings), distinct)))
        walls, fills = zip(*(done[f] for f in first)) if layers else ((), ())
        longest = max(settings.top_layers, settings.bottom_layers, 1)
        runs = _Intersections(list(fills), longest if settings.infill_density < 1 else 1, pool)
        skins = list(pool.map(lambda i: _skin_and_sparse(i, fills[i], runs, widths[i], settings), range(len(fills))))
    return [LayerRegions(index=index, z_top=float(stack.z_top[index]), height=float(stack.height[index]),
                         walls=[_to_mm(w) for w in walls[index]], skin=_to_mm(skin), sparse=_to_mm(sparse))
            for index, (skin, sparse) in enumerate(skins)]


# ---------------------------------------------------------------- skirt and brim

@njit(cache=True, nogil=True)
def _monotone_chain(points, order):
    """Andrew's monotone chain over ``points`` sorted by (x, y) via ``order``."""
    n = points.shape[0]
    hull = np.empty((2 * n, 2), np.float64)
    k = 0
    lower_size = 0  # hull points on the lower chain, fixed when it is done
    for rank in range(2 * n - 1):  # lower chain left to right, then upper chain right to left
        i = order[rank] if rank < n else order[2 * n - 2 - rank]
        floor = 2 if rank < n else lower_size + 1
        while k >= floor and ((hull[k - 1, 0] - hull[k - 2, 0]) * (points[i, 1] - hull[k - 2, 1])
                              - (hull[k - 1, 1] - hull[k - 2, 1]) * (points[i, 0] - hull[k - 2, 0])) <= 0.0:
            k -= 1
        copy_rows(hull, k, points, i, 1)
        k += 1
        if rank == n - 1:
            lower_size = k
    return hull[:k - 1].copy()


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Counter-clockwise convex hull, no collinear points, first point not repeated."""
    if len(points) < 3:
        return points.copy()
    return _monotone_chain(points, np.lexsort((points[:, 1], points[:, 0])))


def skirt_and_brim(stack: LayerStack, settings: SliceSettings) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Skirt loops (outermost last) and brim loops (innermost first), CCW, in millimetres.

    The brim is ``brim_width / w`` loops hugging the first layer's outlines from
    outside (holes get none), loop i at (i + 0.5) w.  The skirt goes around the
    convex hull of the first layer and brim -- one loop around all islands,
    no snaking into concave parts -- ``skirt_distance`` away from them, loops
    one width apart.  w is the first-layer line width; joins are round.
    """
    if len(stack) == 0:
        return [], []
    width = settings.first_layer_line_width
    first = _union(_stack_areas(stack, first_layer_only=True)[0])
    outlines = _select(first, _loop_areas(first) > 0)
    brim_loops = int(round(settings.brim_width / width))
    brim = [loop for i in range(brim_loops) for loop in _to_mm(_offset(outlines, (i + 0.5) * width, pyclipper.JT_ROUND))]
    if _empty(outlines) or not settings.skirt_loops:
        return [], brim
    hull = convex_hull(outlines[0] / SCALE)
    hull_area = (np.round(hull * SCALE).astype(np.int64), np.array([0, len(hull)], np.int64))
    skirt = []
    for i in range(settings.skirt_loops):
        distance = brim_loops * width + settings.skirt_distance + (i + 0.5) * width
        skirt += _to_mm(_offset(hull_area, distance, pyclipper.JT_ROUND))
    return skirt, brim

