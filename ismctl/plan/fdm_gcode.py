"""Ordered layer paths to Marlin G-code text and the Program that streams it.

Two Numba passes make the body: ``_build_moves`` turns the paths into records,
one per command (travel, retract, z-hop, extrusion, fan), each with the full
position and modal feedrate, plus notes for the ``;LAYER:``/``;TYPE:`` comment
lines between them; ``_write_lines`` formats both into ASCII in a byte buffer
(one ``_body`` call runs the two; fixed 3 decimals for X Y Z, 5 for E, 1 for F, trailing zeros trimmed, correctly
rounded), since formatting a million floats in Python takes seconds.  The
Program's ops are the records (plus start and end commands), timed in one
``motion.move_durations`` call.

Choices:

* Relative E (``M83``): every move carries its own filament length, so a program
  resumed or split at any op needs no ``G92 E`` bookkeeping, and E keeps its 5
  decimals however long the print (an absolute E of 10^5 mm would not).
* Extrusion per move: ``length * width * layer_height / filament_area *
  extrusion_multiplier`` (Cura's rectangle model: a layer extrudes its area times
  its height).
* Travel: a travel longer than ``retract_min_travel`` that leaves the part
  (crosses a wall-outer loop of the layer, or has its midpoint outside them)
  retracts and z-hops; travels inside the part do not (like Cura's combing, minus
  the detour).  A layer without outer walls retracts on every long travel.  The
  test looks only at the wall edges in the grid cells the travel passes (``wall_grid``),
  so its cost does not grow with wall points times travels.
* Heating, homing and the fan take 0 s in the estimate (Cura's ``;TIME:`` counts
  motion only); ``;TIME:`` is the sum of the Program's durations.
* ``;TYPE:`` comes before the travel to a path of a new kind; the fan (``M106``
  / ``M107``) is set after ``;LAYER:<k>`` when it changes.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from ..program import Program
from .fdm_settings import SliceSettings
from .memory import release_free_memory
from .model import LayerPaths, PathKind, PlanError
from .motion import move_durations
from .motion_limits import MotionLimits
from .rows import copy_items
from .toolpath import effective_speeds

# record opcodes (one command each) and note kinds (comment lines between records)
OP_G0, OP_G1, OP_FAN = 0, 1, 2
NOTE_LAYER, NOTE_TYPE = 0, 1
# word bits of a move record (val columns 0..4 in this order)
W_F, W_X, W_Y, W_Z, W_E = 1, 2, 4, 8, 16
_WORD_LETTERS = np.frombuffer(b"FXYZE", np.uint8).copy()
_WORD_DECIMALS = np.array([1, 3, 3, 3, 5], np.int64)  # F (mm/min), X, Y, Z, E
#: ``;TYPE:`` names by PathKind (Cura's, BRIM ours)
TYPE_NAMES = ("SKIRT", "BRIM", "WALL-OUTER", "WALL-INNER", "SKIN", "FILL")
_TYPE_TEXT = np.frombuffer("".join(TYPE_NAMES).encode("ascii"), np.uint8).copy()
_TYPE_START = np.cumsum([0] + [len(t) for t in TYPE_NAMES]).astype(np.int64)
_MAX_COORD = 99_999.0  # mm: keeps every command far under Marlin's 82-byte budget
_LINE_BYTES = 72  # upper bound of one formatted record (5 words of <= 12 bytes each)
_END_LIFT = 10.0  # mm the nozzle rises off the finished part


# ---------------------------------------------------------------------------
# number formatting


_POW10 = np.array([10.0 ** i for i in range(10)])


@njit(cache=True, nogil=True)
def _scaled_round(a, scale):
    """``a * scale`` (a >= 0) rounded to the nearest integer, ties to even, on the exact product."""
    hi = a * scale
    n = np.floor(hi)
    side = hi - n - 0.5
    if abs(side) <= hi * 2.3e-16:  # within hi's rounding error of a tie: decide on the exact product
        # Dekker's two-product: lo is the rounding error of hi, so hi + lo == a * scale exactly
        c = 134217729.0 * a
        ah = c - (c - a)
        al = a - ah
        c = 134217729.0 * scale
        sh = c - (c - scale)
        sl = scale - sh
        lo = ((ah * sh - hi) + ah * sl + al * sh) + al * sl
        side += lo  # rounding keeps the sign of the sum
    k = np.uint64(n)
    if side > 0.0 or (side == 0.0 and k & np.uint64(1)):
        k += np.uint64(1)
    return k


@njit(cache=True, nogil=True)
def put_number(buf, pos, x, decimals):
    """Write ``x`` with ``decimals`` decimals at ``pos`` (correctly rounded, ties to even like
    Python's format; trailing zeros and dot trimmed; never "-0"); returns the position after it."""
    ten = np.uint64(10)
    k = _scaled_round(abs(x), _POW10[decimals])
    if k != 0 and x < 0:
        buf[pos] = 45  # '-'
        pos += 1
    width = decimals  # fraction digits left after trimming trailing zeros
    while width > 0 and k % ten == 0:
        k //= ten
        width -= 1
    digits = 1
    t = k // ten
    while t:
        digits += 1
        t //= ten
    digits = max(digits, width + 1)
    end = pos + digits + (1 if width else 0)
    p = end - 1
    for i in range(digits):  # least significant first, right to left
        if i == width and width:
            buf[p] = 46  # '.'
            p -= 1
        buf[p] = 48 + np.uint8(k % ten)
        k //= ten
        p -= 1
    return end


@njit(cache=True, nogil=True)
def _put_text(buf, pos, table, start, stop):
    for i in range(start, stop):
        buf[pos] = table[i]
        pos += 1
    return pos


@njit(cache=True, nogil=True)
def _write_lines(op, mask, val, arg, note_at, note_kind, note_arg, type_text, type_start):
    """Every record as one line of ASCII, the notes (``;LAYER:``, ``;TYPE:``) between them.
    The buffer starts at a typical line length and grows by half when a line might not
    fit (a worst-case buffer would be three times the text)."""
    n = op.shape[0]
    buf = np.empty(n * 32 + note_at.shape[0] * 24 + _LINE_BYTES, np.uint8)
    pos = 0
    j = 0
    for r in range(n + 1):
        if pos + _LINE_BYTES * 2 > buf.shape[0]:  # room for a note and a record
            grown = np.empty(buf.shape[0] * 3 // 2 + _LINE_BYTES * 2, np.uint8)
            copy_items(grown, 0, buf, 0, pos)
            buf = grown
        while j < note_at.shape[0] and note_at[j] == r:
            if note_kind[j] == NOTE_LAYER:
                for ch in (59, 76, 65, 89, 69, 82, 58):  # ;LAYER:
                    buf[pos] = ch
                    pos += 1
                pos = put_number(buf, pos, float(note_arg[j]), 0)
            else:
                for ch in (59, 84, 89, 80, 69, 58):  # ;TYPE:
                    buf[pos] = ch
                    pos += 1
                pos = _put_text(buf, pos, type_text, type_start[note_arg[j]], type_start[note_arg[j] + 1])
            buf[pos] = 10
            pos += 1
            j += 1
        if r == n:
            break
        code = op[r]
        if code == OP_FAN:  # M106 S<0-255>, or M107 for off
            buf[pos] = 77
            buf[pos + 1] = 49
            buf[pos + 2] = 48
            if arg[r] == 0:
                buf[pos + 3] = 55
                pos += 4
            else:
                buf[pos + 3] = 54
                buf[pos + 4] = 32
                buf[pos + 5] = 83
                pos = put_number(buf, pos + 6, float(arg[r]), 0)
        else:
            buf[pos] = 71  # 'G'
            buf[pos + 1] = 48 + code
            pos += 2
            for w in range(5):
                if mask[r] & (1 << w):
                    buf[pos] = 32
                    buf[pos + 1] = _WORD_LETTERS[w]
                    pos = put_number(buf, pos + 2, val[r, w], _WORD_DECIMALS[w])
        buf[pos] = 10
        pos += 1
    return buf[:pos]


# ---------------------------------------------------------------------------
# records


@njit(cache=True, nogil=True)
def _orient(ax, ay, bx, by, cx, cy):
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


@njit(cache=True, nogil=True)
def _cell(v, v0, h, n):
    """Grid index of coordinate ``v`` (clamped to 0..n-1): monotonic in ``v``."""
    return min(max(int(math.floor((v - v0) / h)), 0), n - 1)


@njit(cache=True, nogil=True)
def wall_grid(pts, path_start, loops):
    """The edges of the closed paths ``loops`` bucketed into a uniform grid of about two
    edges per cell, each edge in every cell its bounding box touches, so a travel tests
    only the edges near it: (x0, y0, cell size, nx, ny, cell_start, cell_edge), an edge
    named by the index of its first point in ``pts``."""
    n_edges = 0
    x0 = np.inf
    y0 = np.inf
    x1 = -np.inf
    y1 = -np.inf
    for t in range(loops.shape[0]):
        for i in range(path_start[loops[t]], path_start[loops[t] + 1]):
            x0 = min(x0, pts[i, 0])
            y0 = min(y0, pts[i, 1])
            x1 = max(x1, pts[i, 0])
            y1 = max(y1, pts[i, 1])
        n_edges += path_start[loops[t] + 1] - path_start[loops[t]] - 1
    if n_edges <= 0:
        return 0.0, 0.0, 1.0, 1, 1, np.zeros(2, np.int64), np.zeros(0, np.int64)
    span = max(x1 - x0, y1 - y0, 1e-9)
    area = max((x1 - x0) * (y1 - y0), span * span / n_edges)  # a thin part still gets ~n cells
    h = math.sqrt(2.0 * area / n_edges)
    nx = int((x1 - x0) / h) + 1
    ny = int((y1 - y0) / h) + 1
    edge = np.empty(n_edges, np.int64)
    box = np.empty((n_edges, 4), np.int64)  # cell range of each edge: i0, i1, j0, j1
    cell_start = np.zeros(nx * ny + 1, np.int64)
    n = 0
    for t in range(loops.shape[0]):
        for i in range(path_start[loops[t]], path_start[loops[t] + 1] - 1):
            edge[n] = i
            box[n, 0] = _cell(min(pts[i, 0], pts[i + 1, 0]), x0, h, nx)
            box[n, 1] = _cell(max(pts[i, 0], pts[i + 1, 0]), x0, h, nx)
            box[n, 2] = _cell(min(pts[i, 1], pts[i + 1, 1]), y0, h, ny)
            box[n, 3] = _cell(max(pts[i, 1], pts[i + 1, 1]), y0, h, ny)
            for j in range(box[n, 2], box[n, 3] + 1):
                for c in range(j * nx + box[n, 0], j * nx + box[n, 1] + 1):
                    cell_start[c + 1] += 1
            n += 1
    for c in range(nx * ny):
        cell_start[c + 1] += cell_start[c]
    cell_edge = np.empty(cell_start[nx * ny], np.int64)
    fill = cell_start[:-1].copy()
    for n in range(n_edges):
        for j in range(box[n, 2], box[n, 3] + 1):
            for c in range(j * nx + box[n, 0], j * nx + box[n, 1] + 1):
                cell_edge[fill[c]] = edge[n]
                fill[c] += 1
    return x0, y0, h, nx, ny, cell_start, cell_edge


@njit(cache=True, nogil=True)
def leaves_outline(ax, ay, bx, by, pts, grid):
    """Does the travel a->b leave the area inside the loops of ``grid`` (:func:`wall_grid`;
    closed paths, even-odd)?

    Yes when it properly crosses a loop edge (touching at its ends does not
    count: travels start and end on walls) or when its midpoint is outside.
    Only the cells the travel passes through and the midpoint's row are searched.
    """
    x0, y0, h, nx, ny, cell_start, cell_edge = grid
    ylo = min(ay, by)
    yhi = max(ay, by)
    pad = h * 1e-6  # the cells a travel touches, with room for rounding at cell borders
    for j in range(_cell(ylo - pad, y0, h, ny), _cell(yhi + pad, y0, h, ny) + 1):
        # the part of the travel inside row j, padded (border rows reach to infinity)
        r0 = max(ylo, y0 + j * h - pad) if j > 0 else ylo
        r1 = min(yhi, y0 + (j + 1) * h + pad) if j < ny - 1 else yhi
        if ay == by:
            xa = min(ax, bx)
            xb = max(ax, bx)
        else:
            xa = ax + (r0 - ay) * (bx - ax) / (by - ay)
            xb = ax + (r1 - ay) * (bx - ax) / (by - ay)
            if xa > xb:
                xa, xb = xb, xa
        for c in range(j * nx + _cell(xa - pad, x0, h, nx), j * nx + _cell(xb + pad, x0, h, nx) + 1):
            for q in range(cell_start[c], cell_start[c + 1]):
                i = cell_edge[q]
                px = pts[i, 0]
                py = pts[i, 1]
                qx = pts[i + 1, 0]
                qy = pts[i + 1, 1]
                d1 = _orient(ax, ay, bx, by, px, py)
                d2 = _orient(ax, ay, bx, by, qx, qy)
                if d1 * d2 < 0.0:
                    d3 = _orient(px, py, qx, qy, ax, ay)
                    d4 = _orient(px, py, qx, qy, bx, by)
                    if d3 * d4 < 0.0:
                        return True
    # even-odd on a ray from the midpoint to -x: the edges of the midpoint's row, each
    # counted in the one cell that holds its crossing (an edge sits in several)
    mx = 0.5 * (ax + bx)
    my = 0.5 * (ay + by)
    inside = False
    j = _cell(my, y0, h, ny)
    for c in range(j * nx, j * nx + nx):
        for q in range(cell_start[c], cell_start[c + 1]):
            i = cell_edge[q]
            px = pts[i, 0]
            py = pts[i, 1]
            qx = pts[i + 1, 0]
            qy = pts[i + 1, 1]
            if (py > my) != (qy > my):
                xc = px + (my - py) * (qx - px) / (qy - py)
                home = min(max(_cell(xc, x0, h, nx), _cell(min(px, qx), x0, h, nx)), _cell(max(px, qx), x0, h, nx))
                if home == c - j * nx and mx > xc:
                    inside = not inside
    return not inside


@njit(cache=True, nogil=True)
def _put(op, mask, val, arg, lay, k, code, m, f, x, y, z, e, a, layer):
    """Append a record; X Y Z and E rounded as they will be written, so timing and totals match the text."""
    op[k] = code
    mask[k] = m
    val[k, 0] = f
    val[k, 1] = np.rint(x * 1e3) / 1e3
    val[k, 2] = np.rint(y * 1e3) / 1e3
    val[k, 3] = np.rint(z * 1e3) / 1e3
    val[k, 4] = np.rint(e * 1e5) / 1e5
    arg[k] = a
    lay[k] = layer
    return k + 1


@njit(cache=True, nogil=True)
def _with_room(op, mask, val, arg, lay, k, need):
    """The record arrays, grown by half when fewer than ``need`` slots are left after the first ``k``."""
    if k + need <= op.shape[0]:
        return op, mask, val, arg, lay
    cap = op.shape[0] * 3 // 2 + need
    op2, mask2, val2 = np.empty(cap, np.int8), np.empty(cap, np.int8), np.empty((cap, 5))
    arg2, lay2 = np.zeros(cap, np.int64), np.empty(cap, np.int32)
    for i in range(k):
        op2[i], mask2[i], arg2[i], lay2[i] = op[i], mask[i], arg[i], lay[i]
        for c in range(5):
            val2[i, c] = val[i, c]
    return op2, mask2, val2, arg2, lay2


@njit(cache=True, nogil=True)
def _build_moves(pts, path_start, path_kind, path_e_per_mm, path_feed, layer_paths, layer_z, layer_fan,
                 wall_paths, wall_start, retract_e, retract_feed, travel_feed, z_hop, min_travel, end_z):
    """Records for every layer, then the final retract and lift (see the module docstring).

    A path of m points is m records (its travel and m - 1 moves), a retracting
    travel 4 more: the arrays start at the points plus a retract for one path
    in eight and grow when a part retracts more (a worst-case size, 6 per
    path, was 2.5 times the records on a big part: 30 MB of 54-byte slots).
    """
    n_layers = layer_z.shape[0]
    n_paths = path_start.shape[0] - 1
    cap = pts.shape[0] + n_paths // 2 + 2 * n_layers + 8
    op = np.empty(cap, np.int8)
    mask = np.empty(cap, np.int8)
    val = np.empty((cap, 5))
    arg = np.zeros(cap, np.int64)
    lay = np.empty(cap, np.int32)
    note_at = np.empty(n_layers + n_paths, np.int64)
    note_kind = np.empty(n_layers + n_paths, np.int8)
    note_arg = np.empty(n_layers + n_paths, np.int64)
    kn = 0
    k = 0
    x = 0.0
    y = 0.0
    z = 0.0
    f = -1.0
    kind = -1
    fan = 0
    for L in range(n_layers):
        note_at[kn] = k
        note_kind[kn] = NOTE_LAYER
        note_arg[kn] = L
        kn += 1
        op, mask, val, arg, lay = _with_room(op, mask, val, arg, lay, k, 2)
        if layer_fan[L] != fan:
            fan = layer_fan[L]
            k = _put(op, mask, val, arg, lay, k, OP_FAN, 0, f, x, y, z, 0.0, fan, L)
        z = layer_z[L]
        m = W_Z | (W_F if f != travel_feed else 0)
        f = travel_feed
        k = _put(op, mask, val, arg, lay, k, 0, m, f, x, y, z, 0.0, 0, L)
        loops = wall_paths[wall_start[L]:wall_start[L + 1]]
        grid = wall_grid(pts, path_start, loops)
        for p in range(layer_paths[L], layer_paths[L + 1]):
            if path_kind[p] != kind:
                kind = path_kind[p]
                note_at[kn] = k
                note_kind[kn] = NOTE_TYPE
                note_arg[kn] = kind
                kn += 1
            s = path_start[p]
            op, mask, val, arg, lay = _with_room(op, mask, val, arg, lay, k, path_start[p + 1] - s + 6)
            sx = pts[s, 0]
            sy = pts[s, 1]
            dist = math.hypot(sx - x, sy - y)
            if dist > 0.0:
                retract = (retract_e > 0.0 and dist > min_travel
                           and (loops.shape[0] == 0 or leaves_outline(x, y, sx, sy, pts, grid)))
                if retract:
                    m = W_E | (W_F if f != retract_feed else 0)
                    f = retract_feed
                    k = _put(op, mask, val, arg, lay, k, 1, m, f, x, y, z, -retract_e, 0, L)
                    if z_hop > 0.0:
                        f = travel_feed
                        k = _put(op, mask, val, arg, lay, k, 0, W_F | W_Z, f, x, y, z + z_hop, 0.0, 0, L)
                m = W_X | W_Y | (W_F if f != travel_feed else 0)
                f = travel_feed
                k = _put(op, mask, val, arg, lay, k, 0, m, f, sx, sy, z + (z_hop if retract else 0.0), 0.0, 0, L)
                x = sx
                y = sy
                if retract:
                    if z_hop > 0.0:
                        k = _put(op, mask, val, arg, lay, k, 0, W_Z, f, x, y, z, 0.0, 0, L)
                    f = retract_feed
                    k = _put(op, mask, val, arg, lay, k, 1, W_F | W_E, f, x, y, z, retract_e, 0, L)
            for i in range(s + 1, path_start[p + 1]):
                nx = pts[i, 0]
                ny = pts[i, 1]
                length = math.hypot(nx - x, ny - y)
                if length <= 0.0:
                    continue
                m = W_X | W_Y | W_E | (W_F if f != path_feed[p] else 0)
                f = path_feed[p]
                k = _put(op, mask, val, arg, lay, k, 1, m, f, nx, ny, z, length * path_e_per_mm[p], 0, L)
                x = nx
                y = ny
    last = n_layers - 1
    op, mask, val, arg, lay = _with_room(op, mask, val, arg, lay, k, 2)
    if retract_e > 0.0:
        m = W_E | (W_F if f != retract_feed else 0)
        f = retract_feed
        k = _put(op, mask, val, arg, lay, k, 1, m, f, x, y, z, -retract_e, 0, last)
    m = W_Z | (W_F if f != travel_feed else 0)
    f = travel_feed
    k = _put(op, mask, val, arg, lay, k, 0, m, f, x, y, max(z, end_z), 0.0, 0, last)
    return op[:k], mask[:k], val[:k], arg[:k], lay[:k], note_at[:kn], note_kind[:kn], note_arg[:kn]


@njit(cache=True, nogil=True)
def _body(pts, path_start, path_kind, path_e_per_mm, path_feed, layer_paths, layer_z, layer_fan, wall_paths,
          wall_start, retract_e, retract_feed, travel_feed, z_hop, min_travel, end_z, type_text, type_start):
    """The records and their text in one call (one kernel to load in a fresh process, not two):
    (op, mask, val, layer of each record, where the notes go, the body's text)."""
    op, mask, val, arg, lay, note_at, note_kind, note_arg = _build_moves(
        pts, path_start, path_kind, path_e_per_mm, path_feed, layer_paths, layer_z, layer_fan, wall_paths, wall_start,
        retract_e, retract_feed, travel_feed, z_hop, min_travel, end_z)
    text = _write_lines(op, mask, val, arg, note_at, note_kind, note_arg, type_text, type_start)
    return op, mask, val, lay, note_at, text


# ---------------------------------------------------------------------------
# the emitter


def _check_layers(layers: list[LayerPaths]) -> None:
    for n, layer in enumerate(layers):
        if not (math.isfinite(layer.z_top) and 0 <= layer.z_top <= _MAX_COORD and layer.height > 0):
            raise PlanError(f"layer {layer.index} (#{n}): z_top {layer.z_top!r} / height {layer.height!r} are not printable")
        if not (0 < layer.speed_factor <= 1 and 0 <= layer.fan <= 1):
            raise PlanError(f"layer {layer.index}: speed_factor {layer.speed_factor!r} must be in (0, 1] "
                            f"and fan {layer.fan!r} in [0, 1]")


def _gather(layers: list[LayerPaths]):
    """All layers' paths as one set of arrays: (points, path_start, kind, width, speed,
    path_layer), checked vectorised; a bad path is named by its layer and position."""
    per_layer = np.fromiter((len(layer) for layer in layers), np.int64, len(layers))
    path_layer = np.repeat(np.arange(len(layers)), per_layer)
    pts = np.concatenate([layer.points for layer in layers])
    offset = np.cumsum([0] + [len(layer.points) for layer in layers])
    path_start = np.concatenate([layer.path_start[:-1] + o for layer, o in zip(layers, offset)] + [offset[-1:]])
    kind, width, speed = (np.concatenate([getattr(layer, name) for layer in layers]) for name in ("kind", "width", "speed"))

    def name(i: int) -> str:
        return f"layer {layers[path_layer[i]].index} path {i - np.searchsorted(path_layer, path_layer[i])}"

    count = np.diff(path_start)
    bad = np.flatnonzero((count < 2) | (kind < 0) | (kind >= len(TYPE_NAMES)) | ~(width > 0) | ~(speed > 0))
    if len(bad):
        i = int(bad[0])
        kind_name = PathKind(kind[i]).name if 0 <= kind[i] < len(PathKind) else str(kind[i])
        raise PlanError(f"{name(i)}: needs >= 2 points, an extrusion kind, width and speed > 0; got "
                        f"{count[i]} points, {kind_name}, width {width[i]!r}, speed {speed[i]!r}")
    bad = np.flatnonzero(~(np.abs(pts) <= _MAX_COORD).all(axis=1))
    if len(bad):
        i = int(np.searchsorted(path_start, bad[0], side="right")) - 1
        raise PlanError(f"{name(i)}: point {pts[bad[0]].tolist()} is not finite or beyond {_MAX_COORD:g} mm")
    return pts, path_start, kind, width, speed, path_layer


def _feed(mm_s) -> np.ndarray:
    """mm/min as it will be written (1 decimal), so the timing uses what the printer reads."""
    return np.round(np.asarray(mm_s, dtype=np.float64) * 60.0, 1)


def format_duration(seconds: float) -> str:
    """PrusaSlicer's ``1d 2h 3m 4s`` (leading zero units left out)."""
    s = int(round(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    parts = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{v}{u}" for v, u in parts)


@dataclass(frozen=True)
class ProgramParts:
    """What the Program of an emitted G-code text needs besides the text: its commands are the
    text's command lines, made only when the Program is asked for (on a big part, 40 MB of
    strings that ``ismctl slice`` never needs)."""

    name: str
    header_lines: int  # comment lines before the first command
    n_start: int  # commands before the first record
    n_end: int  # commands after the last record
    note_at: np.ndarray  # body notes (;LAYER:, ;TYPE:): note j comes before record note_at[j]
    layer: np.ndarray  # layer of each record
    duration: np.ndarray  # seconds of each record
    position: np.ndarray  # (start + records + end, 3) X Y Z after each command
    meta: dict

    def __len__(self) -> int:
        return self.n_start + len(self.layer) + self.n_end

    def program(self, text: str) -> Program:
        first_body = self.header_lines + self.n_start + 1  # 1-based line of the first record or note
        lines = text.split("\n")
        lines.pop()  # after the last newline
        notes = first_body - 1 + self.note_at + np.arange(len(self.note_at))
        pieces = zip(itertools.chain([self.header_lines], (notes + 1).tolist()),
                     itertools.chain(notes.tolist(), [len(lines)]))
        commands = tuple(itertools.chain.from_iterable(lines[a:b] for a, b in pieces))
        del lines
        record = np.arange(len(self.layer))
        line_of = first_body + record + np.searchsorted(self.note_at, record, side="right")
        end_line = first_body + len(record) + len(self.note_at)
        source_line = np.concatenate((np.arange(self.header_lines + 1, first_body), line_of,
                                      np.arange(end_line, end_line + self.n_end)))
        layer = np.concatenate((np.full(self.n_start, -1), self.layer, np.full(self.n_end, self.meta["layers"] - 1)))
        durations = np.concatenate((np.zeros(self.n_start), self.duration, np.zeros(self.n_end)))
        return Program("printer", self.name, commands, source_line, layer, durations, self.position, self.meta)


def emit_fdm(layers: list[LayerPaths], settings: SliceSettings, limits: MotionLimits | None = None,
             name: str = "") -> tuple[str, ProgramParts]:
    """Marlin G-code for ``layers`` (module docstring) and what its Program needs besides the text:
    ``parts.program(text)`` makes the Program."""
    s = settings
    limits = limits or MotionLimits()
    if not layers:
        raise PlanError(f"{name or 'print'}: nothing to print (no layers)")
    _check_layers(layers)
    pts, path_start, kind, width, speed, path_layer = _gather(layers)
    per_layer = np.array([len(layer) for layer in layers], np.int64)
    layer_paths = np.concatenate(([0], np.cumsum(per_layer))).astype(np.int64)
    heights = np.array([layer.height for layer in layers], np.float64)
    factors = np.array([layer.speed_factor for layer in layers], np.float64)
    speed = effective_speeds(speed, factors[path_layer], s.min_print_speed)
    filament_area = math.pi * (s.filament_diameter / 2) ** 2
    e_per_mm = width * heights[path_layer] / filament_area * s.extrusion_multiplier
    walls = np.flatnonzero(kind == PathKind.WALL_OUTER).astype(np.int64)
    wall_start = np.searchsorted(path_layer[walls], np.arange(len(layers) + 1)).astype(np.int64)
    layer_z = np.round(np.array([layer.z_top for layer in layers], np.float64), 3)
    fan = np.round(np.array([layer.fan for layer in layers], np.float64) * 255).astype(np.int64)
    travel_feed, retract_feed = _feed([s.travel_speed, s.retract_speed])
    end_z = min(float(layer_z.max()) + _END_LIFT, s.max_z) if len(layers) else 0.0
    op, mask, val, lay, note_at, body = _body(
        pts, path_start, kind, np.ascontiguousarray(e_per_mm), _feed(speed), layer_paths, layer_z, fan,
        walls, wall_start, float(s.retract_length), float(retract_feed), float(travel_feed), float(s.z_hop),
        float(s.retract_min_travel), end_z, _TYPE_TEXT, _TYPE_START)

    # every record is timed as a move: a fan record does not move and takes 0 s without breaking the chain
    delta = val[:, 1:5].copy()
    delta[:, :3] = np.diff(delta[:, :3], axis=0, prepend=delta[:1, :3])
    feed = np.where(val[:, 0] > 0, val[:, 0], travel_feed) / 60.0
    restart = np.zeros(len(op), np.bool_)
    restart[:1] = True  # the first move follows heat-and-wait: the planner starts empty
    duration = move_durations(delta, feed, limits, restart=restart) if len(op) else np.zeros(0)
    del delta, feed, restart  # a million-move part holds several of these; the peak is this step's
    release_free_memory()
    estimated = float(duration.sum())
    extruding = (op == OP_G1) & ((mask & (W_X | W_Y)) != 0) & (val[:, 4] > 0)
    filament_mm = float(val[extruding, 4].sum())
    filament_g = filament_mm * filament_area * s.filament_density / 1000.0
    bbox = None
    if extruding.any():  # the ends of extruding moves are the path points, as written
        xy = np.rint(pts * 1e3) / 1e3
        z = layer_z[per_layer > 0]
        bbox = [[*xy.min(axis=0).round(4).tolist(), float(z.min())], [*xy.max(axis=0).round(4).tolist(), float(z.max())]]

    start_cmds = [f"M140 S{s.bed_temp:g}", f"M104 S{s.nozzle_temp:g}", "G28", f"M190 S{s.bed_temp:g}",
                  f"M109 S{s.nozzle_temp:g}", "G90", "M83", "M107"]
    end_cmds = ["M104 S0", "M140 S0", "M107", "M84"]
    lo, hi = bbox if bbox else ([0.0] * 3, [0.0] * 3)
    header = [
        ";FLAVOR:Marlin",
        f";TIME:{int(round(estimated))}",
        f";Filament used: {filament_mm / 1000:.5f}m",
        f";Layer height: {s.layer_height:g}",
        f";MINX:{lo[0]:.3f}", f";MINY:{lo[1]:.3f}", f";MINZ:{lo[2]:.3f}",
        f";MAXX:{hi[0]:.3f}", f";MAXY:{hi[1]:.3f}", f";MAXZ:{hi[2]:.3f}",
        f";LAYER_COUNT:{len(layers)}",
        f";Generated with ismctl {importlib.metadata.version('ismctl')}",
        f"; estimated printing time (normal mode) = {format_duration(estimated)}",
        f"; filament used [mm] = {filament_mm:.2f}",
        f"; filament used [g] = {filament_g:.2f}",
    ]
    end_pos = val[-1:, 1:4] if len(val) else np.zeros((1, 3))
    position = np.vstack((np.full((len(start_cmds), 3), np.nan), val[:, 1:4], np.repeat(end_pos, len(end_cmds), axis=0)))
    del val, extruding  # (unknown before the first move, as gcode.parse has it)
    release_free_memory()
    text = "".join(("\n".join(header + start_cmds), "\n", str(body, "ascii"), "\n".join(end_cmds), "\n"))
    meta = {"source": "mesh", "layers": len(layers), "estimated_s": estimated, "filament_mm": round(filament_mm, 4),
            "filament_g": round(filament_g, 4), "bbox": bbox}
    return text, ProgramParts(name, len(header), len(start_cmds), len(end_cmds), note_at, lay, duration, position, meta)
