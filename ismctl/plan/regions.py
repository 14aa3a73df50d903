"""Each layer's regions: wall loops, top/bottom skin and sparse-infill areas; skirt and brim.

Offsets and booleans run in pyclipper (Clipper 1) on integer coordinates:
millimetres times ``SCALE`` = 1e5, i.e. 10 nm units -- far below any printable
detail and far inside Clipper's 62-bit range for any bed.

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

import numpy as np
import pyclipper
from numba import njit

from .fdm_settings import SliceSettings
from .model import LayerRegions, LayerStack, PlanError

SCALE = 100_000.0  # Clipper units per millimetre (10 nm)
RESOLUTION = 0.01  # mm: largest deviation allowed when simplifying input loops
MITER_LIMIT = 2.0
ARC_TOLERANCE = 0.001  # mm: round joins deviate from a true arc at most this much


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


def _stack_paths(stack: LayerStack, first_layer_only: bool = False) -> list[list[list[list[int]]]]:
    """Every layer's (or the first layer's) loops, simplified, in Clipper units; loops left with < 3 points dropped."""
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
        loops = [scaled[new_start[i]:new_start[i + 1]].tolist()
                 for i in range(layer_start[layer], layer_start[layer + 1]) if new_start[i + 1] - new_start[i] >= 3]
        area = sum(pyclipper.Area(loop) for loop in loops) / SCALE**2
        if area < 0:
            raise PlanError(f"layer stack: layer {layer} (z {stack.z_cut[layer]:.3f} mm) encloses a negative area "
                            f"({area:.3f} mm^2): outlines must run counter-clockwise, holes clockwise")
        layers.append(loops)
    return layers


# ---------------------------------------------------------------- Clipper helpers

def _offset(paths, delta_mm: float, join=None):
    """The area of ``paths`` grown (delta > 0) or shrunk (delta < 0), as oriented loops.

    Shrinking is exact (round joins at reflex corners); growing keeps convex
    corners sharp (miter) unless ``join`` says otherwise.
    """
    if not paths:
        return []
    if join is None:
        join = pyclipper.JT_ROUND if delta_mm < 0 else pyclipper.JT_MITER
    offset = pyclipper.PyclipperOffset(MITER_LIMIT, ARC_TOLERANCE * SCALE)
    offset.AddPaths(paths, join, pyclipper.ET_CLOSEDPOLYGON)
    return offset.Execute(delta_mm * SCALE)


def _boolean(operation, subject, clip):
    if not subject:
        return []
    if not clip:
        return subject if operation in (pyclipper.CT_DIFFERENCE, pyclipper.CT_UNION) else []
    clipper = pyclipper.Pyclipper()
    clipper.AddPaths(subject, pyclipper.PT_SUBJECT, True)
    clipper.AddPaths(clip, pyclipper.PT_CLIP, True)
    return clipper.Execute(operation, pyclipper.PFT_NONZERO, pyclipper.PFT_NONZERO)


def _intersection(a, b):
    return _boolean(pyclipper.CT_INTERSECTION, a, b)


def _difference(a, b):
    return _boolean(pyclipper.CT_DIFFERENCE, a, b)


def _union(paths):
    if not paths:
        return []
    clipper = pyclipper.Pyclipper()
    clipper.AddPaths(paths, pyclipper.PT_SUBJECT, True)
    return clipper.Execute(pyclipper.CT_UNION, pyclipper.PFT_NONZERO, pyclipper.PFT_NONZERO)


def _area_mm2(paths) -> float:
    return sum(pyclipper.Area(p) for p in paths) / SCALE**2


def _drop_small(paths, min_area_mm2: float):
    """Loops (outlines or holes) enclosing less than ``min_area_mm2``: numerical slivers."""
    limit = min_area_mm2 * SCALE**2
    return [p for p in paths if abs(pyclipper.Area(p)) >= limit]


def _opened(paths, width: float):
    """``paths`` without the parts thinner than ``width`` (shrink, then grow back)."""
    return _offset(_offset(paths, -width / 2), width / 2) if width > 0 else paths


def _to_mm(paths) -> list[np.ndarray]:
    return [np.array(p, dtype=np.float64) / SCALE for p in paths]


# ---------------------------------------------------------------- regions

def _walls_and_fill(outline, width: float, settings: SliceSettings):
    """Wall centrelines (outermost first) and the fill area inside the innermost wall.

    Wall k is where a whole bead fits: the outline shrunk by (k + 1) widths
    (the bead's inner edge), grown back by half a width.  In parts too thin
    for a bead the wall vanishes instead of doubling back on itself.
    """
    walls = []
    inner = outline
    for _ in range(settings.perimeters):
        inner = _drop_small(_offset(inner, -width), (0.1 * width) ** 2)
        centre = _drop_small(_offset(inner, width / 2), (width / 2) ** 2)
        if not centre:
            return walls, []
        walls.append(centre)
    if not settings.perimeters:
        return walls, _union(outline)
    overlap = settings.infill_overlap * width
    return walls, (_offset(inner, overlap) if overlap > 0 else inner)


class _Intersections:
    """Intersections of the fill areas of runs of consecutive layers, by doubling.

    ``level[m][i]`` is the intersection of layers i .. i + 2**m - 1, so any run is
    the intersection of two overlapping power-of-two runs: about log2(n) + 1
    booleans per layer instead of n.  Layers outside the stack are empty.
    """

    def __init__(self, fills, longest_run: int):
        self.levels = [fills]
        span = 1
        while 2 * span <= longest_run:
            below = self.levels[-1]
            self.levels.append([_intersection(below[i], below[i + span]) if i + span < len(fills) else []
                                for i in range(len(fills))])
            span *= 2

    def run(self, first: int, n: int):
        if first < 0 or first + n > len(self.levels[0]):
            return []
        m = n.bit_length() - 1
        level = self.levels[m]
        second = first + n - (1 << m)
        return level[first] if second == first else _intersection(level[first], level[second])


def _skin_and_sparse(index: int, fill, runs: _Intersections, width: float, settings: SliceSettings):
    """Split a fill area into solid skin and sparse infill (see ``build_regions``)."""
    if not fill or settings.infill_density >= 1:
        return fill, []
    interior = fill
    if settings.top_layers:
        interior = _intersection(interior, runs.run(index + 1, settings.top_layers))
    if settings.bottom_layers:
        interior = _intersection(interior, runs.run(index - settings.bottom_layers, settings.bottom_layers))
    if _area_mm2(fill) - _area_mm2(interior) < settings.min_feature**2:
        skin = []
    else:
        skin = _drop_small(_opened(_difference(fill, interior), settings.min_feature), width**2)
    # pieces smaller than a line width squared hold no line: crumbs of the opening's corners
    sparse = _drop_small(_difference(fill, skin), width**2) if settings.infill_density > 0 else []
    return skin, sparse


def build_regions(stack: LayerStack, settings: SliceSettings) -> list[LayerRegions]:
    """Walls, skin and sparse areas of every layer.

    A layer's fill area that is not inside the fill areas of all of the next
    ``top_layers`` layers is top skin, likewise ``bottom_layers`` below for
    bottom skin; layers outside the part count as empty, so the first and last
    few layers are solid.  Skin thinner than ``min_feature`` is dropped (it
    stays sparse).  Density 1 makes the whole fill area skin; density 0 leaves
    the sparse area empty.
    """
    layers = _stack_paths(stack)
    walls, fills = [], []
    for index, outline in enumerate(layers):
        width = settings.first_layer_line_width if index == 0 else settings.line_width
        layer_walls, fill = _walls_and_fill(outline, width, settings)
        walls.append(layer_walls)
        fills.append(fill)
    longest = max(settings.top_layers, settings.bottom_layers, 1)
    runs = _Intersections(fills, longest if settings.infill_density < 1 else 1)
    regions = []
    for index, fill in enumerate(fills):
        width = settings.first_layer_line_width if index == 0 else settings.line_width
        skin, sparse = _skin_and_sparse(index, fill, runs, width, settings)
        regions.append(LayerRegions(index=index, z_top=float(stack.z_top[index]), height=float(stack.height[index]),
                                    walls=[_to_mm(w) for w in walls[index]], skin=_to_mm(skin), sparse=_to_mm(sparse)))
    return regions


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
        hull[k] = points[i]
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
    outlines = [p for p in _union(_stack_paths(stack, first_layer_only=True)[0]) if pyclipper.Orientation(p)]
    brim_loops = int(round(settings.brim_width / width))
    brim = [loop for i in range(brim_loops) for loop in _offset(outlines, (i + 0.5) * width, pyclipper.JT_ROUND)]
    if not outlines or not settings.skirt_loops:
        return [], _to_mm(brim)
    hull = convex_hull(np.concatenate(_to_mm(outlines)))
    hull_path = np.round(hull * SCALE).astype(np.int64).tolist()
    skirt = []
    for i in range(settings.skirt_loops):
        distance = brim_loops * width + settings.skirt_distance + (i + 0.5) * width
        skirt += _offset([hull_path], distance, pyclipper.JT_ROUND)
    return _to_mm(skirt), _to_mm(brim)

