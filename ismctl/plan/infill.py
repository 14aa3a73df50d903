"""Fill lines: solid lines for skin areas, a sparse pattern for sparse areas.

All lines lie on a fixed world-aligned lattice (lines n.p = k * spacing), so the
same lines come back layer after layer and stack.  Straight lines are clipped
by a Numba scanline kernel: every lattice line is crossed with every polygon
edge, the crossings along a line are sorted and paired even-odd.  Gyroid
curves are sampled as polylines in numpy and clipped with pyclipper's
open-path clipping.

Material: a line of length l prints l * w of area, so solid fill uses spacing
w; rectilinear sparse fill spacing w / d; grid both directions at 2 w / d;
gyroid a period chosen so its mean line length per area is d / w.
"""

from __future__ import annotations

import math

import numpy as np
import pyclipper
from numba import njit

from .fdm_settings import SliceSettings
from .model import LayerRegions
from .regions import SCALE

# Mean length of the gyroid's horizontal section per unit area, for period 2 pi,
# averaged over z (it varies from 0.367 to 0.481 with z).
GYROID_LENGTH_PER_AREA = 0.391326
GYROID_SAMPLES_PER_PERIOD = 40


@njit(cache=True, nogil=True)
def scanline_segments(points, loop_start, angle, spacing, min_length):
    """Pieces of the lattice lines at ``angle`` (radians) inside the loops, as (m, 4) x0 y0 x1 y1.

    Line k is {p : n.p = k * spacing} with n = (-sin, cos); an edge crosses it
    when the line lies in [min, max) of the edge's two n.p values, so a vertex
    on a line counts once per pass through it and even-odd pairing holds.
    Pieces shorter than ``min_length`` are dropped.
    """
    ux, uy = math.cos(angle), math.sin(angle)
    nx, ny = -uy, ux
    n_points = points.shape[0]
    if n_points == 0:
        return np.empty((0, 4), np.float64)
    across = np.empty(n_points)
    along = np.empty(n_points)
    for i in range(n_points):
        across[i] = nx * points[i, 0] + ny * points[i, 1]
        along[i] = ux * points[i, 0] + uy * points[i, 1]
    k_first = math.ceil(across.min() / spacing)
    n_lines = math.floor(across.max() / spacing) - k_first + 1
    if n_lines <= 0:
        return np.empty((0, 4), np.float64)
    starts = np.zeros(n_lines + 1, np.int64)
    for sweep in range(2):  # count crossings per line, then place them
        if sweep == 1:
            for k in range(n_lines):
                starts[k + 1] += starts[k]
            fill = starts[:-1].copy()
            crossings = np.empty(starts[n_lines])
        for loop in range(loop_start.shape[0] - 1):
            s, e = loop_start[loop], loop_start[loop + 1]
            for i in range(s, e):
                j = i + 1 if i + 1 < e else s
                lo, hi = min(across[i], across[j]), max(across[i], across[j])
                for k in range(math.ceil(lo / spacing), math.ceil(hi / spacing)):
                    line = k - k_first
                    if sweep == 0:
                        starts[line + 1] += 1
                    else:
                        t = min(1.0, max(0.0, (k * spacing - across[i]) / (across[j] - across[i])))
                        crossings[fill[line]] = along[i] + t * (along[j] - along[i])
                        fill[line] += 1
    out = np.empty((starts[n_lines] // 2, 4), np.float64)
    m = 0
    for line in range(n_lines):
        row = np.sort(crossings[starts[line]:starts[line + 1]])
        offset = (line + k_first) * spacing
        for c in range(0, row.shape[0] - 1, 2):
            if row[c + 1] - row[c] >= min_length:
                out[m, 0] = row[c] * ux + offset * nx
                out[m, 1] = row[c] * uy + offset * ny
                out[m, 2] = row[c + 1] * ux + offset * nx
                out[m, 3] = row[c + 1] * uy + offset * ny
                m += 1
    return out[:m].copy()


def _packed(loops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    points = np.ascontiguousarray(np.concatenate(loops), dtype=np.float64)
    start = np.concatenate(([0], np.cumsum([len(loop) for loop in loops]))).astype(np.int64)
    return points, start


def straight_lines(loops: list[np.ndarray], angle_deg: float, spacing: float, min_length: float) -> list[np.ndarray]:
    """Lattice lines at ``angle_deg`` and ``spacing`` clipped to the area of ``loops``, as (2, 2) arrays."""
    if not loops:
        return []
    points, start = _packed(loops)
    segments = scanline_segments(points, start, math.radians(angle_deg), spacing, min_length)
    return list(segments.reshape(-1, 2, 2))


def gyroid_curves(bounds: np.ndarray, z: float, period: float) -> list[np.ndarray]:
    """The curves sin x cos y + sin y cos z + sin z cos x = 0 (scaled to ``period``) over ``bounds``.

    At every z one of x, y is a single-valued function of the other along two
    branches per period (the free coordinate is y where |sin z| >= |cos z|,
    else x), so each curve is sampled on a world-aligned grid of the free
    coordinate, with no marching or joining.
    """
    k = 2 * math.pi / period
    zr = z * k
    sz, cz = math.sin(zr), math.cos(zr)
    free_axis = 1 if abs(sz) >= abs(cz) else 0
    step = period / GYROID_SAMPLES_PER_PERIOD
    lo, hi = bounds[0, free_axis], bounds[1, free_axis]
    q = np.arange(math.floor(lo / step), math.ceil(hi / step) + 1) * step * k
    if free_axis == 1:  # sin x cos q + sin z cos x = -sin q cos z; B = sin z fixed, nonzero
        a, b, rhs = np.cos(q), sz, -np.sin(q) * cz
        r = np.hypot(a, b)
        base = np.arcsin(np.clip(rhs / r, -1, 1))
        branches = (base - np.arctan2(b, a), math.pi - base - np.arctan2(b, a))
    else:  # cos z sin y + sin q cos y = -sin z cos q; A = cos z fixed, nonzero: a cos(y - phi) form
        a, b, rhs = cz, np.sin(q), -sz * np.cos(q)
        r = np.hypot(a, b)
        base = np.arccos(np.clip(rhs / r, -1, 1))
        phi = np.arctan2(a, b)
        branches = (phi + base, phi - base)
    fixed_lo, fixed_hi = bounds[0, 1 - free_axis] * k, bounds[1, 1 - free_axis] * k
    curves = []
    for branch in branches:
        # copies of the branch every 2 pi along the fixed axis that reach into the bounds
        first = math.floor((fixed_lo - branch.max()) / (2 * math.pi))
        last = math.ceil((fixed_hi - branch.min()) / (2 * math.pi))
        for n in range(first, last + 1):
            fixed = branch + 2 * math.pi * n
            pair = (fixed, q) if free_axis == 1 else (q, fixed)
            curves.append(np.column_stack(pair) / k)
    return curves


def _clip_open(curves: list[np.ndarray], loops: list[np.ndarray], min_length: float) -> list[np.ndarray]:
    """The parts of ``curves`` inside the area of ``loops`` (pyclipper open-path clipping)."""
    if not curves or not loops:
        return []
    clipper = pyclipper.Pyclipper()
    clipper.AddPaths([np.round(c * SCALE).astype(np.int64).tolist() for c in curves], pyclipper.PT_SUBJECT, False)
    clipper.AddPaths([np.round(p * SCALE).astype(np.int64).tolist() for p in loops], pyclipper.PT_CLIP, True)
    tree = clipper.Execute2(pyclipper.CT_INTERSECTION, pyclipper.PFT_NONZERO, pyclipper.PFT_NONZERO)
    pieces = [np.array(p, dtype=np.float64) / SCALE for p in pyclipper.OpenPathsFromPolyTree(tree)]
    return [p for p in pieces if len(p) >= 2 and np.hypot(*np.diff(p, axis=0).T).sum() >= min_length]


def gyroid_period(width: float, density: float) -> float:
    """The gyroid period whose mean line length per area times ``width`` is ``density``."""
    return 2 * math.pi * GYROID_LENGTH_PER_AREA * width / density


def _sparse_lines(region: LayerRegions, width: float, settings: SliceSettings) -> list[np.ndarray]:
    density = settings.infill_density
    if not region.sparse or density <= 0:
        return []
    angle = settings.infill_angle + 90.0 * (region.index % 2)
    if settings.infill_pattern == "rectilinear":
        return straight_lines(region.sparse, angle, width / density, width)
    if settings.infill_pattern == "grid":
        return (straight_lines(region.sparse, settings.infill_angle, 2 * width / density, width)
                + straight_lines(region.sparse, settings.infill_angle + 90.0, 2 * width / density, width))
    points = np.concatenate(region.sparse)
    bounds = np.array([points.min(axis=0), points.max(axis=0)])
    z = region.z_top - region.height / 2
    return _clip_open(gyroid_curves(bounds, z, gyroid_period(width, density)), region.sparse, width)


def fill_regions(regions: list[LayerRegions], settings: SliceSettings) -> None:
    """Set every layer's ``fill_lines`` (skin, solid) and ``sparse_lines`` (the infill pattern).

    Solid lines alternate between ``infill_angle`` and +90 degrees by layer;
    lines shorter than a line width are dropped.
    """
    for region in regions:
        width = settings.first_layer_line_width if region.index == 0 else settings.line_width
        angle = settings.infill_angle + 90.0 * (region.index % 2)
        region.fill_lines = straight_lines(region.skin, angle, width, width)
        region.sparse_lines = _sparse_lines(region, width, settings)
