"""Fill lines: solid lines for skin areas, a sparse pattern for sparse areas.

All lines lie on a fixed world-aligned lattice (lines n.p = k * spacing), so the
same lines come back layer after layer and stack.  Straight lines are clipped
by a Numba scanline kernel: every lattice line is crossed with every polygon
edge, the crossings along a line are sorted and paired even-odd.  Gyroid
curves are sampled as polylines in numpy and clipped by a Numba kernel that
cuts them at the area's edges and keeps the pieces whose middle is inside.

Material: a line of length l prints l * w of area, so solid fill uses spacing
w; rectilinear sparse fill spacing w / d; grid both directions at 2 w / d;
gyroid a period chosen so its mean line length per area is d / w.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .fdm_settings import SliceSettings
from .model import LayerRegions

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


def gyroid_curves(bounds: np.ndarray, z: float, period: float) -> tuple[np.ndarray, np.ndarray]:
    """The curves sin x cos y + sin y cos z + sin z cos x = 0 (scaled to ``period``) over ``bounds``.

    At every z one of x, y is a single-valued function of the other along two
    branches per period (the free coordinate is y where |sin z| >= |cos z|,
    else x), so each curve is sampled on a world-aligned grid of the free
    coordinate, with no marching or joining.  Returns the polylines packed:
    points (n, 2) and an int64 start array (every curve has the same samples).
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
    fixed = []
    for branch in branches:
        # copies of the branch every 2 pi along the fixed axis that reach into the bounds
        first = math.floor((fixed_lo - branch.max()) / (2 * math.pi))
        last = math.ceil((fixed_hi - branch.min()) / (2 * math.pi))
        fixed.append(branch[None, :] + 2 * math.pi * np.arange(first, last + 1)[:, None])
    fixed = np.concatenate(fixed)
    points = np.empty((fixed.size, 2))
    points[:, 1 - free_axis] = fixed.ravel() / k
    points[:, free_axis] = np.tile(q / k, len(fixed))
    return points, np.arange(len(fixed) + 1, dtype=np.int64) * len(q)


@njit(cache=True, nogil=True)
def _edge_bands(points, loop_start, n_bands):
    """Polygon edges as (E, 4) ax ay bx by, bucketed by the horizontal bands of height ``(ymax - ymin) / n_bands`` they span."""
    n_edges = points.shape[0]
    edges = np.empty((n_edges, 4), np.float64)
    for loop in range(loop_start.shape[0] - 1):
        s, e = loop_start[loop], loop_start[loop + 1]
        for i in range(s, e):
            j = i + 1 if i + 1 < e else s
            edges[i, 0], edges[i, 1], edges[i, 2], edges[i, 3] = points[i, 0], points[i, 1], points[j, 0], points[j, 1]
    y0 = points[:, 1].min()
    band_height = max((points[:, 1].max() - y0) / n_bands, 1e-12)
    band_start = np.zeros(n_bands + 1, np.int64)
    for sweep in range(2):  # count edges per band, then place them
        if sweep == 1:
            for b in range(n_bands):
                band_start[b + 1] += band_start[b]
            fill = band_start[:-1].copy()
            band_edges = np.empty(band_start[n_bands], np.int64)
        for i in range(n_edges):
            lo = min(n_bands - 1, max(0, int((min(edges[i, 1], edges[i, 3]) - y0) / band_height)))
            hi = min(n_bands - 1, max(0, int((max(edges[i, 1], edges[i, 3]) - y0) / band_height)))
            for b in range(lo, hi + 1):
                if sweep == 0:
                    band_start[b + 1] += 1
                else:
                    band_edges[fill[b]] = i
                    fill[b] += 1
    return edges, y0, band_height, band_start, band_edges


@njit(cache=True, nogil=True)
def _inside(x, y, edges, y0, band_height, band_start, band_edges):
    """Even-odd point-in-polygon by a ray to +x over the edges of ``y``'s band."""
    n_bands = band_start.shape[0] - 1
    if not y0 <= y <= y0 + n_bands * band_height:
        return False
    b = min(int((y - y0) / band_height), n_bands - 1)
    inside = False
    for k in range(band_start[b], band_start[b + 1]):
        ax, ay, bx, by = edges[band_edges[k], 0], edges[band_edges[k], 1], edges[band_edges[k], 2], edges[band_edges[k], 3]
        if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
            inside = not inside
    return inside


@njit(cache=True, nogil=True)
def _at(lines, s, e, param):
    """The point at ``param`` (segment index + t) along polyline ``lines[s:e]``."""
    seg = min(int(param), e - s - 2)
    f = param - seg
    return (lines[s + seg, 0] + f * (lines[s + seg + 1, 0] - lines[s + seg, 0]),
            lines[s + seg, 1] + f * (lines[s + seg + 1, 1] - lines[s + seg, 1]))


@njit(cache=True, nogil=True)
def clip_polylines(lines, line_start, points, loop_start, min_length):
    """The pieces of the polylines inside the loops' area (even-odd), pieces shorter than ``min_length`` dropped.

    Each polyline is cut where it crosses a polygon edge (edges bucketed by
    horizontal bands, so a segment meets only the edges near it); each piece
    between two cuts is kept when its middle is inside, and kept neighbours are
    merged -- a cut counted twice or once too often at a vertex changes nothing.
    Returns the pieces as points and an int64 start array (last entry = total).
    """
    n_bands = max(1, points.shape[0] // 2)
    edges, y0, band_height, band_start, band_edges = _edge_bands(points, loop_start, n_bands)
    seen = np.full(edges.shape[0], -1, np.int64)
    out = np.empty((max(16, lines.shape[0]), 2), np.float64)
    out_start = [0]
    n_out = 0
    cuts = np.empty(64, np.float64)
    for line in range(line_start.shape[0] - 1):
        s, e = line_start[line], line_start[line + 1]
        if e - s < 2:
            continue
        n_cuts = 0
        for i in range(s, e - 1):  # cuts as global parameters: segment index + t
            px, py, qx, qy = lines[i, 0], lines[i, 1], lines[i + 1, 0], lines[i + 1, 1]
            if max(py, qy) < y0 or min(py, qy) > y0 + n_bands * band_height:
                continue
            lo = min(n_bands - 1, max(0, int((min(py, qy) - y0) / band_height)))
            hi = min(n_bands - 1, max(0, int((max(py, qy) - y0) / band_height)))
            dx, dy = qx - px, qy - py
            for b in range(lo, hi + 1):
                for k in range(band_start[b], band_start[b + 1]):
                    edge = band_edges[k]
                    if seen[edge] == i:
                        continue
                    seen[edge] = i
                    ax, ay = edges[edge, 0], edges[edge, 1]
                    ex, ey = edges[edge, 2] - ax, edges[edge, 3] - ay
                    denom = dx * ey - dy * ex
                    if denom == 0.0:
                        continue
                    t = ((ax - px) * ey - (ay - py) * ex) / denom
                    u = ((ax - px) * dy - (ay - py) * dx) / denom
                    if 0.0 <= t < 1.0 and 0.0 <= u < 1.0:
                        if n_cuts == cuts.shape[0]:
                            cuts = np.concatenate((cuts, np.empty(n_cuts, np.float64)))
                        cuts[n_cuts] = (i - s) + t
                        n_cuts += 1
        if n_cuts == 0 and not _inside(lines[s, 0], lines[s, 1], edges, y0, band_height, band_start, band_edges):
            continue
        bounds = np.empty(n_cuts + 2, np.float64)
        bounds[0] = 0.0
        bounds[1:n_cuts + 1] = np.sort(cuts[:n_cuts])
        bounds[n_cuts + 1] = e - 1 - s
        piece_open = False
        for c in range(n_cuts + 1):
            a, b = bounds[c], bounds[c + 1]
            if b <= a:
                continue
            mx, my = _at(lines, s, e, 0.5 * (a + b))
            inside = _inside(mx, my, edges, y0, band_height, band_start, band_edges)
            if inside:  # append the stretch from a to b (its start only when a new piece opens)
                first_vertex = int(math.floor(a)) + 1
                last_vertex = int(math.ceil(b)) - 1
                needed = n_out + 2 + max(0, last_vertex - first_vertex + 1)
                if needed > out.shape[0]:
                    out = np.concatenate((out, np.empty((max(needed, out.shape[0]), 2), np.float64)))
                if not piece_open:
                    out[n_out, 0], out[n_out, 1] = _at(lines, s, e, a)
                    n_out += 1
                    piece_open = True
                for v in range(first_vertex, last_vertex + 1):
                    out[n_out] = lines[s + v]
                    n_out += 1
                out[n_out, 0], out[n_out, 1] = _at(lines, s, e, b)
                n_out += 1
            if piece_open and (not inside or c == n_cuts):
                piece_open = False
                first = out_start[-1]
                length = 0.0
                for v in range(first, n_out - 1):
                    length += math.hypot(out[v + 1, 0] - out[v, 0], out[v + 1, 1] - out[v, 1])
                if length >= min_length:
                    out_start.append(n_out)
                else:
                    n_out = first
    starts = np.array(out_start, np.int64)
    return out[:n_out].copy(), starts


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
    lines, line_start = gyroid_curves(bounds, z, gyroid_period(width, density))
    loops, loop_start = _packed(region.sparse)
    pieces, piece_start = clip_polylines(lines, line_start, loops, loop_start, width)
    return [pieces[a:b] for a, b in zip(piece_start[:-1].tolist(), piece_start[1:].tolist())]


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
