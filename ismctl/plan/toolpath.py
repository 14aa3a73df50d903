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
from .model import ExtrusionPath, LayerPaths, LayerRegions, PathKind, PlanError

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


def _slow_down(lengths, speeds, travel_s, settings: SliceSettings) -> float:
    """The speed factor that makes the layer take ``min_layer_time`` (1.0 if it already does)."""
    def layer_time(f):
        return float((lengths / effective_speeds(speeds, f, settings.min_print_speed)).sum()) + travel_s

    if len(speeds) == 0 or layer_time(1.0) >= settings.min_layer_time:
        return 1.0
    lo = min(1.0, settings.min_print_speed / float(speeds.max()))  # below this nothing gets slower
    if layer_time(lo) <= settings.min_layer_time:
        return lo
    hi = 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if layer_time(mid) > settings.min_layer_time:
            lo = mid
        else:
            hi = mid
    return lo


# ---------------------------------------------------------------------------
# seams and groups


def _checked(arrays, what: str, min_points: int) -> list[np.ndarray]:
    """``arrays`` as float64 (n, 2) point arrays of at least ``min_points`` finite points;
    a bad one raises PlanError naming ``what`` and its position (finiteness checked in one pass)."""
    out = [np.asarray(a, dtype=np.float64) for a in arrays]
    for i, a in enumerate(out):
        if a.ndim != 2 or a.shape[1] != 2 or len(a) < min_points:
            raise PlanError(f"{what} {i}: expected an (n >= {min_points}, 2) point array, got shape {a.shape}")
    if out:
        bad = np.flatnonzero(~np.isfinite(np.concatenate(out)).all(axis=1))
        if len(bad):
            i = int(np.searchsorted(np.cumsum([len(a) for a in out]), bad[0], side="right"))
            raise PlanError(f"{what} {i}: has non-finite coordinates")
    return out


#: how far (in line widths) a seam may move to hide in a concave corner
SEAM_CORNER_REACH = 2.0
_SHARP = math.sin(math.radians(30))  # a corner turning less than this is no hiding place


def _hide_in_corner(loop: np.ndarray, k: int, reach: float) -> int:
    """Vertex ``k``, or the sharpest concave corner within ``reach`` of it: a seam there hides
    in the corner instead of marking a flat face.  Material is left of every loop (outlines
    counter-clockwise, holes clockwise), so a concave corner is a right turn."""
    near = np.flatnonzero(((loop - loop[k]) ** 2).sum(axis=1) <= reach * reach)
    into = loop[near] - loop[near - 1]
    out = loop[(near + 1) % len(loop)] - loop[near]
    norm = np.hypot(*into.T) * np.hypot(*out.T)
    turn = (into[:, 0] * out[:, 1] - into[:, 1] * out[:, 0]) / np.where(norm > 0, norm, np.inf)
    best = int(np.argmin(turn))
    return int(near[best]) if turn[best] < -_SHARP else k


def _open_loop(loop: np.ndarray) -> np.ndarray:
    """A loop without its closing point (some producers repeat the first point at the end)."""
    return loop[:-1] if len(loop) > 3 and (loop[0] == loop[-1]).all() else loop


class _LayerOrder:
    """Orders one layer's groups, carrying the nozzle position and the seams placed."""

    def __init__(self, settings: SliceSettings, nozzle: np.ndarray, prev_seams: np.ndarray):
        self.settings = settings
        self.nozzle = nozzle
        self.prev_seams = prev_seams
        self.seams: list[np.ndarray] = []
        self.paths: list[ExtrusionPath] = []

    def _seam(self, loop: np.ndarray) -> int:
        mode = self.settings.seam
        if mode == "aligned" and len(self.prev_seams):
            # this loop's seam below is the previous seam nearest its centre; take the vertex nearest that
            below = self.prev_seams[np.argmin(((self.prev_seams - loop.mean(axis=0)) ** 2).sum(axis=1))]
            k = int(np.argmin(((loop - below) ** 2).sum(axis=1)))
        else:  # "rear" (and "aligned" with nothing to align to): largest y, then smallest x
            k = int(np.lexsort((loop[:, 0], -np.round(loop[:, 1], 6)))[0])
        return _hide_in_corner(loop, k, SEAM_CORNER_REACH * self.settings.line_width)

    def loops(self, kind: PathKind, loops: list[np.ndarray], width: float, speed: float) -> None:
        if not loops:
            return
        nearest = self.settings.seam == "nearest"
        if nearest:  # every vertex may be the seam: the walk picks the one nearest the nozzle
            cand = np.concatenate(loops)
            sizes = np.array([len(lp) for lp in loops])
            owner = np.repeat(np.arange(len(loops)), sizes)
            offset = np.concatenate(([0], np.cumsum(sizes)))
        else:
            seam = [self._seam(lp) for lp in loops]
            cand = np.array([lp[k] for lp, k in zip(loops, seam)])
            owner = np.arange(len(loops))
        order, chosen = greedy_order(cand, cand, owner, len(loops), self.nozzle)
        for item, c in zip(order.tolist(), chosen.tolist()):
            lp = loops[item]
            k = c - offset[item] if nearest else seam[item]
            pts = np.concatenate((lp[k:], lp[:k + 1]))
            self.seams.append(pts[0])
            self.paths.append(ExtrusionPath(kind, pts, width, speed))
        self.nozzle = self.paths[-1].points[-1]

    def lines(self, kind: PathKind, lines: list[np.ndarray], width: float, speed: float) -> None:
        if not lines:
            return
        heads = np.array([ln[0] for ln in lines])
        tails = np.array([ln[-1] for ln in lines])
        n = len(lines)
        cand = np.empty((2 * n, 2))
        cand[0::2] = heads
        cand[1::2] = tails
        exits = np.empty((2 * n, 2))
        exits[0::2] = tails
        exits[1::2] = heads
        order, chosen = greedy_order(cand, exits, np.repeat(np.arange(n), 2), n, self.nozzle)
        reverse = (chosen & 1).astype(bool).tolist()
        for item, rev in zip(order.tolist(), reverse):
            ln = lines[item]
            self.paths.append(ExtrusionPath(kind, ln[::-1] if rev else ln, width, speed))
        self.nozzle = self.paths[-1].points[-1]


def _islands(layer: LayerRegions, where: str):
    """Split a layer into islands: (outline loops, per island: wall loops by depth, skin lines, sparse lines)."""
    walls = [[_open_loop(lp) for lp in _checked(ring, f"{where} wall {k} loop", 3)] for k, ring in enumerate(layer.walls)]
    fill = _checked(layer.fill_lines, f"{where} skin line", 2)
    sparse = _checked(layer.sparse_lines, f"{where} sparse line", 2)
    if walls and walls[0]:
        candidates = walls[0]
    else:
        candidates = [_open_loop(lp) for lp in _checked(list(layer.skin) + list(layer.sparse), f"{where} region loop", 3)]
    outline_of = [i for i, lp in enumerate(candidates) if _signed_area(lp) > 0]
    outlines = [candidates[i] for i in outline_of]
    if not outlines:
        if any(walls) or fill or sparse:
            raise PlanError(f"{where}: has walls or fill but no counter-clockwise outline to put them in")
        return []
    items = [(k, lp) for k, ring in enumerate(walls) for lp in ring]
    islands = [([[] for _ in walls], [], []) for _ in outlines]
    if len(outlines) == 1:
        owner = np.zeros(len(items) + len(fill) + len(sparse), np.int64)
    else:
        loop_pts = np.concatenate(outlines)
        loop_start = np.concatenate(([0], np.cumsum([len(lp) for lp in outlines]))).astype(np.int64)
        firsts = [lp[0] for _, lp in items] + [ln[0] for ln in fill] + [ln[0] for ln in sparse]
        owner = island_of_points(np.array(firsts).reshape(-1, 2), loop_pts, loop_start)
        if walls and walls[0]:  # an outline is its own island (its points lie on it, not inside)
            owner[np.array(outline_of)] = np.arange(len(outlines))
    owner_walls = owner[:len(items)]
    owner_fill = owner[len(items):len(items) + len(fill)]
    owner_sparse = owner[len(items) + len(fill):]
    for (k, lp), o in zip(items, owner_walls.tolist()):
        islands[o][0][k].append(lp)
    for ln, o in zip(fill, owner_fill.tolist()):
        islands[o][1].append(ln)
    for ln, o in zip(sparse, owner_sparse.tolist()):
        islands[o][2].append(ln)
    return list(zip(outlines, islands))


def _signed_area(loop: np.ndarray) -> float:
    x, y = loop[:, 0], loop[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def order_layers(regions: list[LayerRegions], skirt: list[np.ndarray], brim: list[np.ndarray],
                 settings: SliceSettings) -> list[LayerPaths]:
    """Every layer's paths in print order, with speeds, widths, slow-down and fan (module docstring)."""
    s = settings
    nozzle = np.zeros(2)
    prev_seams = np.zeros((0, 2))
    out: list[LayerPaths] = []
    for n, layer in enumerate(regions):
        where = f"layer {layer.index}"
        first = n == 0
        width = s.first_layer_line_width if first else s.line_width
        speed = {kind: s.first_layer_speed for kind in PathKind} if first else {
            PathKind.WALL_OUTER: s.outer_wall_speed, PathKind.WALL_INNER: s.inner_wall_speed,
            PathKind.SKIN: s.skin_speed, PathKind.INFILL: s.infill_speed}
        order = _LayerOrder(s, nozzle, prev_seams)
        if first:
            order.loops(PathKind.SKIRT, [_open_loop(lp) for lp in _checked(skirt, "skirt loop", 3)],
                        width, speed[PathKind.SKIRT])
            order.loops(PathKind.BRIM, [_open_loop(lp) for lp in _checked(brim, "brim loop", 3)],
                        width, speed[PathKind.BRIM])
        islands = _islands(layer, where)
        if islands:
            outlines = [o for o, _ in islands]
            cand = np.concatenate(outlines)
            owner = np.repeat(np.arange(len(outlines)), [len(o) for o in outlines])
            visit, _ = greedy_order(cand, cand, owner, len(outlines), order.nozzle)
            for i in visit.tolist():
                walls, fill, sparse = islands[i][1]
                for k in range(len(walls) - 1, -1, -1):
                    kind = PathKind.WALL_OUTER if k == 0 else PathKind.WALL_INNER
                    order.loops(kind, walls[k], width, speed[kind])
                order.lines(PathKind.SKIN, fill, width, speed[PathKind.SKIN])
                order.lines(PathKind.INFILL, sparse, width, speed[PathKind.INFILL])
        paths = order.paths
        factor = 1.0
        if paths:
            lengths = _path_lengths([p.points for p in paths])
            speeds = np.array([p.speed for p in paths])
            ends = np.array([nozzle] + [p.points[-1] for p in paths[:-1]])
            starts = np.array([p.points[0] for p in paths])
            travel_s = float(np.hypot(*(starts - ends).T).sum()) / s.travel_speed
            factor = _slow_down(lengths, speeds, travel_s, s)
            nozzle = order.nozzle
        fan = 0.0 if n < s.fan_start_layer or s.fan_speed == 0 else (1.0 if factor < 1.0 else s.fan_speed)
        out.append(LayerPaths(layer.index, float(layer.z_top), float(layer.height), paths, factor, fan))
        if order.seams:
            prev_seams = np.array(order.seams)
    return out


def _path_lengths(points: list[np.ndarray]) -> np.ndarray:
    """Length of each polyline, in one vectorised pass over all of them."""
    counts = np.fromiter(map(len, points), np.int64, len(points))
    seg = np.hypot(*np.diff(np.concatenate(points), axis=0).T)
    seg = np.append(seg, 0.0)
    seg[np.cumsum(counts) - 1] = 0.0  # the step from one path's end to the next path's start
    return np.add.reduceat(seg, np.concatenate(([0], np.cumsum(counts)[:-1])))
