"""Print order: a layer's regions and fill lines to an ordered list of paths.

Per layer: skirt, then brim (first layer only), then one island after the other
(an outline with its holes and everything inside it), nearest island first.
Inside an island: walls from the innermost to the outer wall, then skin lines,
then sparse infill lines.  Inner walls first is the default of both Cura and
PrusaSlicer: the outer wall, the one that shows, is laid last against walls that
already hold it (better overhangs, no later nozzle traffic over it), and its
seam is the only one that marks the surface.

Within a group, paths go nearest-first from where the nozzle is (a Numba greedy
walk over path ends on a uniform grid, so thousands of fill lines per layer cost
milliseconds); an open line may be printed backwards to start at its nearer end,
a closed loop starts at its seam and repeats that point at the end.  Islands go
nearest-first by their outline vertices (an island is taken to be left where it
was entered).

Seams: ``rear`` is the vertex with the largest y (then the smallest x),
``nearest`` the vertex nearest the nozzle, ``aligned`` the vertex nearest the
seam placed below (the previous layer's seam nearest the loop's centre; ``rear``
on the first layer).  ``rear`` and ``aligned`` seams move into a sharp concave
corner within ``SEAM_CORNER_REACH`` line widths, where they do not show.

Cooling: a layer whose estimated time is under ``min_layer_time`` is slowed by
``speed_factor``; each path then runs at ``effective_speeds`` (its speed times the
factor, never under ``min_print_speed`` and never faster than it was).  The fan
is off before ``fan_start_layer``, ``fan_speed`` from it on, and full on slowed
layers (as PrusaSlicer and Cura do: a layer too quick to cool gets all the air),
unless ``fan_speed`` is 0: a material printed without fan never gets one.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .fdm_settings import SliceSettings
from .model import LayerPaths, LayerRegions, PathKind, PlanError
from .rows import copy_rows

# ---------------------------------------------------------------------------
# kernels


@njit(cache=True, nogil=True)
def _build_grid(cand_xy, live):
    """Bucket the live candidates into a uniform grid of about two per cell:
    (x0, y0, cell size, nx, ny, cell_start, cell_cand, cell of each candidate)."""
    m = cand_xy.shape[0]
    x0 = np.inf
    y0 = np.inf
    x1 = -np.inf
    y1 = -np.inf
    n_live = 0
    for c in range(m):
        if live[c]:
            n_live += 1
            x0 = min(x0, cand_xy[c, 0])
            y0 = min(y0, cand_xy[c, 1])
            x1 = max(x1, cand_xy[c, 0])
            y1 = max(y1, cand_xy[c, 1])
    n_live = max(n_live, 1)
    span = max(x1 - x0, y1 - y0, 1e-9)
    area = max((x1 - x0) * (y1 - y0), span * span / n_live)  # collinear sets still get ~n cells
    h = math.sqrt(2.0 * area / n_live)
    nx = int((x1 - x0) / h) + 1
    ny = int((y1 - y0) / h) + 1
    counts = np.zeros(nx * ny + 1, np.int64)
    cell = np.full(m, -1, np.int64)
    for c in range(m):
        if live[c]:
            i = min(int((cand_xy[c, 0] - x0) / h), nx - 1)
            j = min(int((cand_xy[c, 1] - y0) / h), ny - 1)
            cell[c] = j * nx + i
            counts[cell[c] + 1] += 1
    for k in range(nx * ny):
        counts[k + 1] += counts[k]
    fill = counts[:-1].copy()
    cell_cand = np.empty(counts[nx * ny], np.int64)
    for c in range(m):
        if cell[c] >= 0:
            cell_cand[fill[cell[c]]] = c
            fill[cell[c]] += 1
    return x0, y0, h, nx, ny, counts, cell_cand, cell


@njit(cache=True, nogil=True)
def greedy_order(cand_xy, cand_exit, cand_owner, n_items, start):
    """Visit every item once, always the one with the nearest candidate start point.

    Candidate ``c`` is a way to print item ``cand_owner[c]``: starting at
    ``cand_xy[c]`` and ending at ``cand_exit[c]`` (an open line has two, its ends;
    a loop one per allowed seam vertex).  Ties go to the lowest candidate index.
    Returns (order of items, chosen candidate per step).  The grid is rebuilt
    when three quarters of the candidates are used, so the search stays local.
    """
    m = cand_xy.shape[0]
    owner_start = np.zeros(n_items + 1, np.int64)
    for c in range(m):
        owner_start[cand_owner[c] + 1] += 1
    for k in range(n_items):
        owner_start[k + 1] += owner_start[k]
    fill = owner_start[:-1].copy()
    owner_cand = np.empty(m, np.int64)
    for c in range(m):
        owner_cand[fill[cand_owner[c]]] = c
        fill[cand_owner[c]] += 1

    live = np.ones(m, np.bool_)
    visited = np.zeros(n_items, np.bool_)
    order = np.empty(n_items, np.int64)
    chosen = np.empty(n_items, np.int64)
    px = start[0]
    py = start[1]
    n_live = m
    x0, y0, h, nx, ny, cell_start, cell_cand, cell = _build_grid(cand_xy, live)
    alive = np.empty(nx * ny, np.int64)
    for k in range(nx * ny):
        alive[k] = cell_start[k + 1] - cell_start[k]
    built_with = n_live
    for step in range(n_items):
        if n_live * 4 < built_with and n_live > 64:
            x0, y0, h, nx, ny, cell_start, cell_cand, cell = _build_grid(cand_xy, live)
            alive = np.empty(nx * ny, np.int64)
            for k in range(nx * ny):
                alive[k] = cell_start[k + 1] - cell_start[k]
            built_with = n_live
        ci = min(max(int(math.floor((px - x0) / h)), 0), nx - 1)
        cj = min(max(int(math.floor((py - y0) / h)), 0), ny - 1)
        best = -1
        best_d = np.inf
        r = 0
        r_max = max(nx, ny)
        while r <= r_max:
            for j in range(cj - r, cj + r + 1):
                if j < 0 or j >= ny:
                    continue
                edge_row = j == cj - r or j == cj + r
                i = ci - r
                while i <= ci + r:
                    if 0 <= i < nx:
                        k = j * nx + i
                        if alive[k] > 0:
                            for q in range(cell_start[k], cell_start[k + 1]):
                                c = cell_cand[q]
                                if not live[c]:
                                    continue
                                dx = cand_xy[c, 0] - px
                                dy = cand_xy[c, 1] - py
                                d = dx * dx + dy * dy
                                if d < best_d or (d == best_d and c < best):
                                    best_d = d
                                    best = c
                    i = i + 1 if edge_row else i + 2 * r if r > 0 else i + 1
            if best >= 0 and best_d <= (r * h) * (r * h):
                break
            r += 1
        item = cand_owner[best]
        visited[item] = True
        order[step] = item
        chosen[step] = best
        for q in range(owner_start[item], owner_start[item + 1]):
            c = owner_cand[q]
            live[c] = False
            n_live -= 1
            if cell[c] >= 0:
                alive[cell[c]] -= 1
        px = cand_exit[best, 0]
        py = cand_exit[best, 1]
    return order, chosen


@njit(cache=True, nogil=True)
def island_of_points(query, loop_pts, loop_start):
    """For each query point the index of the smallest loop containing it (even-odd),
    or, when none does, of the loop with the nearest vertex."""
    n_loops = loop_start.shape[0] - 1
    area = np.empty(n_loops)
    box = np.empty((n_loops, 4))
    for L in range(n_loops):
        a = 0.0
        b0 = np.inf
        b1 = np.inf
        b2 = -np.inf
        b3 = -np.inf
        s = loop_start[L]
        e = loop_start[L + 1]
        for p in range(s, e):
            q = p + 1 if p + 1 < e else s
            a += loop_pts[p, 0] * loop_pts[q, 1] - loop_pts[q, 0] * loop_pts[p, 1]
            b0 = min(b0, loop_pts[p, 0])
            b1 = min(b1, loop_pts[p, 1])
            b2 = max(b2, loop_pts[p, 0])
            b3 = max(b3, loop_pts[p, 1])
        area[L] = abs(a) * 0.5
        box[L, 0] = b0
        box[L, 1] = b1
        box[L, 2] = b2
        box[L, 3] = b3
    out = np.empty(query.shape[0], np.int64)
    for t in range(query.shape[0]):
        x = query[t, 0]
        y = query[t, 1]
        best = -1
        for L in range(n_loops):
            if x < box[L, 0] or x > box[L, 2] or y < box[L, 1] or y > box[L, 3]:
                continue
            if best >= 0 and area[L] >= area[best]:
                continue
            inside = False
            s = loop_start[L]
            e = loop_start[L + 1]
            for p in range(s, e):
                q = p + 1 if p + 1 < e else s
                ya = loop_pts[p, 1]
                yb = loop_pts[q, 1]
                if (ya > y) != (yb > y):
                    xc = loop_pts[p, 0] + (y - ya) * (loop_pts[q, 0] - loop_pts[p, 0]) / (yb - ya)
                    if x < xc:
                        inside = not inside
            if inside:
                best = L
        if best < 0:
            best_d = np.inf
            for p in range(loop_pts.shape[0]):
                d = (loop_pts[p, 0] - x) ** 2 + (loop_pts[p, 1] - y) ** 2
                if d < best_d:
                    best_d = d
                    best = p
            L = 0
            while loop_start[L + 1] <= best:
                L += 1
            best = L
        out[t] = best
    return out


# ---------------------------------------------------------------------------
# speeds and cooling


def effective_speeds(speeds: np.ndarray, factor: float, min_speed: float) -> np.ndarray:
    """Speeds on a layer slowed by ``factor``: never under ``min_speed``, never faster than asked."""
    speeds = np.asarray(speeds, dtype=np.float64)
    return np.maximum(speeds * factor, np.minimum(speeds, min_speed))


def _slow_down(lengths: np.ndarray, speeds: np.ndarray, travel_s: float, settings: SliceSettings) -> float:
    """The speed factor that makes the layer take ``min_layer_time`` (1.0 if it already does).

    A path at speed v slowed by f takes L / max(v f, min(v, min_print_speed)):
    between the factors where speeds reach their floor (the knees) the layer
    time is ``fixed + scaled / f``, solved exactly on each stretch from the top.
    A layer runs at a handful of speeds, so lengths are summed per speed first.
    """
    if len(speeds) == 0:
        return 1.0
    unique, which = np.unique(speeds, return_inverse=True)
    floors = np.minimum(unique, settings.min_print_speed)
    runs = list(zip(np.bincount(which, weights=lengths).tolist(), unique.tolist(), floors.tolist(),
                    (floors / unique).tolist()))  # (length, speed, floor, knee)
    target = settings.min_layer_time
    if sum(length / speed for length, speed, _, _ in runs) + travel_s >= target:
        return 1.0
    lo = min(1.0, settings.min_print_speed / float(unique[-1]))  # below this nothing gets slower
    knees = sorted({lo, 1.0, *(knee for *_, knee in runs if lo < knee < 1.0)}, reverse=True)
    for upper, lower in zip(knees, knees[1:]):
        fixed = travel_s + sum(length / floor for length, _, floor, knee in runs if knee > lower)
        scaled = sum(length / speed for length, speed, _, knee in runs if knee <= lower)
        if target > fixed and scaled / (target - fixed) >= lower:
            return min(scaled / (target - fixed), upper)
    return lo


# ---------------------------------------------------------------------------
# seams and the layer walk

SEAM_MODES = ("rear", "aligned", "nearest")
#: how far (in line widths) a seam may move to hide in a concave corner
SEAM_CORNER_REACH = 2.0
_SHARP = math.sin(math.radians(30))  # a corner turning less than this is no hiding place


@njit(cache=True, nogil=True)
def seam_vertex(pts, s, e, aligned, prev_seams, reach):
    """Seam of the loop ``pts[s:e]`` (index into it): ``rear`` (largest y rounded to 1e-6,
    then smallest x) or ``aligned`` (vertex nearest the previous seam nearest the loop's
    centre), then moved into the sharpest concave corner within ``reach`` if there is one.
    Material is left of every loop, so a concave corner is a right turn."""
    n = e - s
    k = 0
    if aligned and prev_seams.shape[0] > 0:
        cx = 0.0
        cy = 0.0
        for i in range(s, e):
            cx += pts[i, 0]
            cy += pts[i, 1]
        cx /= n
        cy /= n
        b = 0
        best = np.inf
        for j in range(prev_seams.shape[0]):
            d = (prev_seams[j, 0] - cx) ** 2 + (prev_seams[j, 1] - cy) ** 2
            if d < best:
                best = d
                b = j
        best = np.inf
        for i in range(n):
            d = (pts[s + i, 0] - prev_seams[b, 0]) ** 2 + (pts[s + i, 1] - prev_seams[b, 1]) ** 2
            if d < best:
                best = d
                k = i
    else:
        by = -np.inf
        bx = np.inf
        for i in range(n):
            y = np.rint(pts[s + i, 1] * 1e6) / 1e6
            if y > by or (y == by and pts[s + i, 0] < bx):
                by = y
                bx = pts[s + i, 0]
                k = i
    kx = pts[s + k, 0]
    ky = pts[s + k, 1]
    best_turn = np.inf
    corner = k
    for i in range(n):
        if (pts[s + i, 0] - kx) ** 2 + (pts[s + i, 1] - ky) ** 2 > reach * reach:
            continue
        a = s + (i - 1 if i > 0 else n - 1)
        b = s + i
        c = s + (i + 1 if i + 1 < n else 0)
        ix = pts[b, 0] - pts[a, 0]
        iy = pts[b, 1] - pts[a, 1]
        ox = pts[c, 0] - pts[b, 0]
        oy = pts[c, 1] - pts[b, 1]
        norm = math.hypot(ix, iy) * math.hypot(ox, oy)
        turn = (ix * oy - iy * ox) / norm if norm > 0 else 0.0
        if turn < best_turn:
            best_turn = turn
            corner = i
    return corner if best_turn < -_SHARP else k


@njit(cache=True, nogil=True)
def _order_group(items, pts, start, closed, seam_mode, prev_seams, reach, nozzle,
                 out_pts, out_start, out_item, n_out, n_pts, seams, n_seams):
    """Append the paths of one group (all loops or all lines) nearest-first from ``nozzle``;
    returns the new counts.  A loop starts at its seam and repeats it at the end; a line
    starts at its nearer end."""
    m = items.shape[0]
    if closed[items[0]]:
        if seam_mode == 2:  # nearest: every vertex may be the seam
            total = 0
            for t in range(m):
                total += start[items[t] + 1] - start[items[t]]
            cand = np.empty((total, 2))
            owner = np.empty(total, np.int64)
            offset = np.empty(m, np.int64)
            q = 0
            for t in range(m):
                offset[t] = q
                for i in range(start[items[t]], start[items[t] + 1]):
                    cand[q, 0] = pts[i, 0]
                    cand[q, 1] = pts[i, 1]
                    owner[q] = t
                    q += 1
        else:
            cand = np.empty((m, 2))
            owner = np.arange(m)
            offset = np.empty(m, np.int64)
            for t in range(m):
                s = start[items[t]]
                k = seam_vertex(pts, s, start[items[t] + 1], seam_mode == 1, prev_seams, reach)
                offset[t] = -k  # chosen - offset = k: the one candidate is the seam
                cand[t, 0] = pts[s + k, 0]
                cand[t, 1] = pts[s + k, 1]
        order, chosen = greedy_order(cand, cand, owner, m, nozzle)
        for step in range(m):
            t = order[step]
            s = start[items[t]]
            e = start[items[t] + 1]
            k = (chosen[step] - offset[t]) if seam_mode == 2 else -offset[t]
            out_start[n_out] = n_pts
            out_item[n_out] = items[t]
            n_out += 1
            for i in range(s + k, e + k + 1):  # from the seam round to the seam again
                j = i if i < e else i - (e - s)
                out_pts[n_pts, 0] = pts[j, 0]
                out_pts[n_pts, 1] = pts[j, 1]
                n_pts += 1
            seams[n_seams, 0] = pts[s + k, 0]
            seams[n_seams, 1] = pts[s + k, 1]
            n_seams += 1
    else:
        cand = np.empty((2 * m, 2))
        exits = np.empty((2 * m, 2))
        owner = np.empty(2 * m, np.int64)
        for t in range(m):
            head, tail = start[items[t]], start[items[t] + 1] - 1
            copy_rows(cand, 2 * t, pts, head, 1)
            copy_rows(cand, 2 * t + 1, pts, tail, 1)
            copy_rows(exits, 2 * t, pts, tail, 1)
            copy_rows(exits, 2 * t + 1, pts, head, 1)
            owner[2 * t] = t
            owner[2 * t + 1] = t
        order, chosen = greedy_order(cand, exits, owner, m, nozzle)
        for step in range(m):
            t = order[step]
            s = start[items[t]]
            e = start[items[t] + 1]
            out_start[n_out] = n_pts
            out_item[n_out] = items[t]
            n_out += 1
            backwards = chosen[step] & 1
            for i in range(s, e):
                j = s + e - 1 - i if backwards else i
                out_pts[n_pts, 0] = pts[j, 0]
                out_pts[n_pts, 1] = pts[j, 1]
                n_pts += 1
    nozzle[0] = out_pts[n_pts - 1, 0]
    nozzle[1] = out_pts[n_pts - 1, 1]
    return n_out, n_pts, n_seams


@njit(cache=True, nogil=True)
def _order_island(isl, n_slots, key_start, by_key, pts, start, closed, seam_mode, prev_seams, reach, nozzle,
                  out_pts, out_start, out_item, seams, counts):
    """The groups of island ``isl`` (-1: outside islands) in slot order."""
    n_out, n_pts, n_seams = counts
    for s in range(n_slots):
        k = (isl + 1) * n_slots + s
        if key_start[k + 1] > key_start[k]:
            n_out, n_pts, n_seams = _order_group(by_key[key_start[k]:key_start[k + 1]], pts, start, closed, seam_mode,
                                                 prev_seams, reach, nozzle, out_pts, out_start, out_item, n_out, n_pts,
                                                 seams, n_seams)
    return n_out, n_pts, n_seams


@njit(cache=True, nogil=True)
def order_layer(pts, start, closed, slot, in_island, outline_pts, outline_start, outline_item,
                seam_mode, prev_seams, reach, nozzle):
    """One layer's items (packed paths) in print order: the groups outside islands by
    ``slot``, then island by island, nearest first by outline vertices, each island's
    groups by ``slot``.  An item's island is the smallest outline containing its first
    point (an outline item, ``outline_item``, is its own island).  ``seam_mode``: 0 rear,
    1 aligned, 2 nearest.  Returns (points, path_start, item of each path, length of each
    path, travel length, seams placed, nozzle at the end)."""
    n_items = start.shape[0] - 1
    n_outlines = outline_start.shape[0] - 1
    island = np.full(n_items, -1, np.int64)
    query = np.empty((n_items, 2))
    for i in range(n_items):
        copy_rows(query, i, pts, start[i], 1)
    if n_outlines > 1:
        found = island_of_points(query, outline_pts, outline_start)
        for i in range(n_items):
            if in_island[i]:
                island[i] = found[i]
        for j in range(n_outlines):
            if outline_item[j] >= 0:
                island[outline_item[j]] = j
    elif n_outlines == 1:
        for i in range(n_items):
            if in_island[i]:
                island[i] = 0
    n_slots = 1
    for i in range(n_items):
        n_slots = max(n_slots, slot[i] + 1)
    # items bucketed by (island, slot), stable: a group keeps the items' order
    n_keys = (n_outlines + 1) * n_slots
    key_start = np.zeros(n_keys + 1, np.int64)
    for i in range(n_items):
        key_start[(island[i] + 1) * n_slots + slot[i] + 1] += 1
    for k in range(n_keys):
        key_start[k + 1] += key_start[k]
    fill = key_start[:-1].copy()
    by_key = np.empty(n_items, np.int64)
    for i in range(n_items):
        k = (island[i] + 1) * n_slots + slot[i]
        by_key[fill[k]] = i
        fill[k] += 1

    n_closed = 0
    for i in range(n_items):
        n_closed += closed[i]
    out_pts = np.empty((start[n_items] + n_closed, 2))
    out_start = np.empty(n_items + 1, np.int64)
    out_item = np.empty(n_items, np.int64)
    seams = np.empty((n_closed, 2))
    start_at = nozzle
    nozzle = nozzle.copy()
    counts = (0, 0, 0)  # paths, points, seams written
    counts = _order_island(-1, n_slots, key_start, by_key, pts, start, closed, seam_mode, prev_seams, reach, nozzle,
                           out_pts, out_start, out_item, seams, counts)
    if n_outlines > 0:  # islands nearest-first from where the nozzle is once the groups outside them are done
        owner = np.empty(outline_pts.shape[0], np.int64)
        for j in range(n_outlines):
            owner[outline_start[j]:outline_start[j + 1]] = j
        visit, _ = greedy_order(outline_pts, outline_pts, owner, n_outlines, nozzle)
        for isl in visit:
            counts = _order_island(isl, n_slots, key_start, by_key, pts, start, closed, seam_mode, prev_seams, reach,
                                   nozzle, out_pts, out_start, out_item, seams, counts)
    n_out, n_pts, n_seams = counts
    out_start[n_out] = n_pts
    # lengths and travel for the cooling estimate, while the points are at hand
    length = np.zeros(n_out)
    travel = 0.0
    x = start_at[0]
    y = start_at[1]
    for p in range(n_out):
        travel += math.hypot(out_pts[out_start[p], 0] - x, out_pts[out_start[p], 1] - y)
        for i in range(out_start[p] + 1, out_start[p + 1]):
            length[p] += math.hypot(out_pts[i, 0] - out_pts[i - 1, 0], out_pts[i, 1] - out_pts[i - 1, 1])
        x = out_pts[out_start[p + 1] - 1, 0]
        y = out_pts[out_start[p + 1] - 1, 1]
    return out_pts[:n_pts], out_start[:n_out + 1], out_item[:n_out], length, travel, seams[:n_seams], nozzle


# ---------------------------------------------------------------------------
# packing and checking the layer's inputs


def _pack(arrays, what: str, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    """``arrays`` as one float64 (P, 2) point array and the point count of each; a bad one
    (not (n, 2), fewer than ``min_points``, not finite) raises PlanError naming ``what`` and
    its position.  Checked in vectorised passes: no Python work per array unless one is bad."""
    if not arrays:
        return np.zeros((0, 2)), np.zeros(0, np.int64)
    counts = np.fromiter(map(len, arrays), np.int64, len(arrays))
    try:
        pts = np.ascontiguousarray(np.concatenate(arrays), dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError
    except (ValueError, TypeError):
        i = next(i for i, a in enumerate(arrays) if np.ndim(a) != 2 or np.shape(a)[1] != 2)
        raise PlanError(f"{what} {i}: expected an (n >= {min_points}, 2) point array, "
                        f"got shape {np.shape(arrays[i])}") from None
    short = np.flatnonzero(counts < min_points)
    if len(short):
        i = int(short[0])
        raise PlanError(f"{what} {i}: expected an (n >= {min_points}, 2) point array, got shape {np.shape(arrays[i])}")
    bad = np.flatnonzero(~np.isfinite(pts).all(axis=1))
    if len(bad):
        i = int(np.searchsorted(np.cumsum(counts), bad[0], side="right"))
        raise PlanError(f"{what} {i}: has non-finite coordinates")
    return pts, counts


def _pack_loops(arrays, what: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_pack` for closed loops, without a closing point that repeats the first
    (some producers add one)."""
    pts, counts = _pack(arrays, what, 3)
    if len(counts):
        ends = np.cumsum(counts)
        starts = ends - counts
        repeated = (counts > 3) & (pts[starts] == pts[ends - 1]).all(axis=1)
        if repeated.any():
            keep = np.ones(len(pts), np.bool_)
            keep[ends[repeated] - 1] = False
            pts, counts = pts[keep], counts - repeated
    return pts, counts


def _signed_areas(pts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Signed area of each packed loop (counter-clockwise positive), in one pass."""
    ends = np.cumsum(counts)
    nxt = np.arange(1, len(pts) + 1)
    nxt[ends - 1] = ends - counts  # each loop's last point closes to its first
    cross = pts[:, 0] * pts[nxt, 1] - pts[nxt, 0] * pts[:, 1]
    return 0.5 * np.add.reduceat(cross, ends - counts) if len(counts) else np.zeros(0)


def _layer_items(layer: LayerRegions, skirt, brim, where: str):
    """The layer's items packed for :func:`order_layer`: (points, start, closed, slot,
    in_island, kind) per item, and the outlines (points, start, item or -1).

    Slots: skirt 0 and brim 1 outside islands; inside one, walls innermost first, then
    skin lines, then sparse lines."""
    groups = []  # (points, counts, closed, slot, in_island, kind)
    if skirt is not None:
        groups.append((*_pack_loops(skirt, "skirt loop"), True, 0, False, PathKind.SKIRT))
        groups.append((*_pack_loops(brim, "brim loop"), True, 1, False, PathKind.BRIM))
    depth = len(layer.walls)
    walls = [_pack_loops(ring, f"{where} wall {k} loop") for k, ring in enumerate(layer.walls)]
    for k, (pts, counts) in enumerate(walls):
        groups.append((pts, counts, True, depth - 1 - k, True, PathKind.WALL_OUTER if k == 0 else PathKind.WALL_INNER))
    groups.append((*_pack(layer.fill_lines, f"{where} skin line", 2), False, depth, True, PathKind.SKIN))
    groups.append((*_pack(layer.sparse_lines, f"{where} sparse line", 2), False, depth + 1, True, PathKind.INFILL))

    counts = np.concatenate([g[1] for g in groups])
    sizes = [len(g[1]) for g in groups]
    items = (np.concatenate([g[0] for g in groups]), np.concatenate(([0], np.cumsum(counts))),
             *(np.repeat(np.array([g[i] for g in groups]), sizes) for i in (2, 3, 4, 5)))

    if walls and len(walls[0][1]):
        cand_pts, cand_counts = walls[0]
        first_item = sum(sizes[:2]) if skirt is not None else 0
    else:
        cand_pts, cand_counts = _pack_loops(list(layer.skin) + list(layer.sparse), f"{where} region loop")
        first_item = -1
    is_outline = _signed_areas(cand_pts, cand_counts) > 0
    if not is_outline.any() and items[4].any():
        raise PlanError(f"{where}: has walls or fill but no counter-clockwise outline to put them in")
    outline_pts = cand_pts[np.repeat(is_outline, cand_counts)]
    outline_start = np.concatenate(([0], np.cumsum(cand_counts[is_outline])))
    outline_item = (first_item + np.flatnonzero(is_outline)) if first_item >= 0 else np.full(is_outline.sum(), -1)
    return items, (outline_pts, outline_start, outline_item.astype(np.int64))


def order_layers(regions: list[LayerRegions], skirt: list[np.ndarray], brim: list[np.ndarray],
                 settings: SliceSettings) -> list[LayerPaths]:
    """Every layer's paths in print order, with speeds, widths, slow-down and fan (module docstring)."""
    s = settings
    nozzle = np.zeros(2)
    prev_seams = np.zeros((0, 2))
    mode = SEAM_MODES.index(s.seam)
    reach = SEAM_CORNER_REACH * s.line_width
    speed_of_kind = np.zeros(len(PathKind))
    speed_of_kind[[PathKind.WALL_OUTER, PathKind.WALL_INNER, PathKind.SKIN, PathKind.INFILL]] = (
        s.outer_wall_speed, s.inner_wall_speed, s.skin_speed, s.infill_speed)
    out: list[LayerPaths] = []
    for n, layer in enumerate(regions):
        first = n == 0
        (pts, start, closed, slot, in_island, kind), outlines = _layer_items(
            layer, skirt if first else None, brim, f"layer {layer.index}")
        pts, path_start, item, lengths, travel, seams, end = order_layer(
            pts, start, closed, slot, in_island, *outlines, mode, prev_seams, reach, nozzle)
        kind = kind[item]
        width = np.full(len(kind), s.first_layer_line_width if first else s.line_width)
        speed = np.full(len(kind), s.first_layer_speed) if first else speed_of_kind[kind]
        factor = _slow_down(lengths, speed, travel / s.travel_speed, s)
        fan = 0.0 if n < s.fan_start_layer or s.fan_speed == 0 else (1.0 if factor < 1.0 else s.fan_speed)
        out.append(LayerPaths(layer.index, float(layer.z_top), float(layer.height), pts, path_start, kind, width, speed,
                              factor, fan))
        nozzle = end
        if len(seams):
            prev_seams = seams
    return out
