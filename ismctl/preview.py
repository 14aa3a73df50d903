"""Layer preview images: what a G-code file prints, layer by layer, as PNGs.

Works from G-code text only, so it shows our own output and other slicers'
files (Cura, PrusaSlicer, slic3r) alike.  Parsing is vectorised: one regular
expression pass picks the lines that matter (moves, modal commands, ``;TYPE:``
and layer comments) in file order, one pass per axis letter reads the move
words, and the machine state (G90/G91, M82/M83, G92, G28, G20/G21) is carried
with numpy cumulative sums instead of a per-line loop.

Layers come from ``;LAYER:<n>`` (Cura, ours), ``;LAYER_CHANGE`` (PrusaSlicer,
slic3r) or ``; layer <n>`` (Simplify3D) markers, counted in file order (so a
Cura raft's ``;LAYER:-2`` is layer 0 here); moves before the first marker (start
G-code, purge lines) belong to no layer.  A file without markers gets layers
from Z: a new layer starts after the last extrusion below a higher extruding
move, as in :mod:`ismctl.gcode`.

Kinds come from ``;TYPE:`` comments (see :data:`TYPE_KINDS`); extrusions under
a type we do not know (support, wipe tower, ...) or under none get
:data:`OTHER` (-1), drawn in a neutral brown.  ``PathKind.TRAVEL`` marks XY
moves that do not extrude; retractions and Z-only moves have no XY extent and
are not segments.  Arcs (G2/G3) are sampled every 1/64 turn.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit
from PIL import Image, ImageDraw, ImageFont

from .plan.model import PathKind, PlanError

__all__ = ["OTHER", "TYPE_KINDS", "KIND_COLOURS", "PreviewLayer", "PixelFrame",
           "layers_from_gcode", "render_layers"]

#: Kind code of extrusions whose ``;TYPE:`` is unknown or missing (PathKind has no such member).
OTHER = -1

#: ``;TYPE:`` names (lower case) of Cura/ours and PrusaSlicer/slic3r to kinds.
TYPE_KINDS: dict[str, int] = {
    # Cura and ismctl
    "skirt": PathKind.SKIRT, "brim": PathKind.BRIM,
    "wall-outer": PathKind.WALL_OUTER, "wall-inner": PathKind.WALL_INNER,
    "skin": PathKind.SKIN, "fill": PathKind.INFILL,
    # PrusaSlicer, slic3r
    "skirt/brim": PathKind.SKIRT,
    "external perimeter": PathKind.WALL_OUTER, "overhang perimeter": PathKind.WALL_OUTER,
    "perimeter": PathKind.WALL_INNER,
    "solid infill": PathKind.SKIN, "top solid infill": PathKind.SKIN, "bridge infill": PathKind.SKIN,
    "internal bridge infill": PathKind.SKIN, "gap fill": PathKind.SKIN, "ironing": PathKind.SKIN,
    "internal infill": PathKind.INFILL,
}

#: RGB colour and legend label per kind code.
KIND_COLOURS: dict[int, tuple[tuple[int, int, int], str]] = {
    PathKind.SKIRT: ((0, 150, 150), "skirt"),
    PathKind.BRIM: ((0, 110, 200), "brim"),
    PathKind.WALL_OUTER: ((220, 30, 30), "outer wall"),
    PathKind.WALL_INNER: ((0, 160, 0), "inner wall"),
    PathKind.SKIN: ((230, 140, 0), "skin (solid fill)"),
    PathKind.INFILL: ((150, 40, 200), "infill"),
    PathKind.TRAVEL: ((150, 150, 150), "travel"),
    OTHER: ((140, 100, 60), "other (support, untyped)"),
}
_PREVIOUS_COLOUR = (222, 222, 222)
# drawn last = on top: walls over fills, so a part's outline stays readable
_DRAW_ORDER = (OTHER, PathKind.INFILL, PathKind.SKIN, PathKind.WALL_INNER, PathKind.WALL_OUTER,
               PathKind.BRIM, PathKind.SKIRT)
_ARC_STEP = 2 * math.pi / 64  # radians per sampled chord
_NUM_RE = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)", re.ASCII)
_TAG_RE = re.compile(r";[ \t]*(?:(TYPE:)(.*)|LAYER:|LAYER_CHANGE\b|layer[ \t]+-?[0-9])", re.I | re.ASCII)
_MODAL = {("G", 90), ("G", 91), ("G", 92), ("G", 28), ("G", 20), ("G", 21), ("M", 82), ("M", 83)}
_POW10 = np.array([10.0 ** k for k in range(16)])  # all exact
_BLANK = (ord(" "), ord("\t"), ord("\r"))


@dataclass(frozen=True)
class PreviewLayer:
    """One layer's XY moves: ``segments[i]`` = x0 y0 x1 y1 (mm) of kind ``kinds[i]``
    (a PathKind value or :data:`OTHER`), in print order."""

    index: int
    z: float  # mm: highest extrusion of the layer (the last move's Z when it extrudes nothing)
    segments: np.ndarray  # float64 (k, 4)
    kinds: np.ndarray  # int8 (k,)
    width: float  # mm: median extrusion width estimated from E, NaN without extrusion


class _Lines:
    """The text as bytes with every line's command located, so that words are read
    for all lines at once with numpy (the per-line Python work is comments and modal
    commands only)."""

    def __init__(self, text: str):
        data = text.encode("utf-8", errors="replace")
        if not data.endswith(b"\n"):
            data += b"\n"
        self.data = data
        self.bytes = np.frombuffer(data + b"\0" * 8, dtype=np.uint8)
        b = self.bytes
        self.end = np.flatnonzero(b == ord("\n"))
        self.start = np.concatenate([[0], self.end[:-1] + 1])
        first = self.start.copy()
        for i in np.flatnonzero(np.isin(b[first], _BLANK)).tolist():  # indented lines are rare
            while first[i] < self.end[i] and b[first[i]] in _BLANK:
                first[i] += 1
        self.first = first
        head = b[first] | 0x20  # lower case
        digits = np.stack([b[first + k] for k in range(1, 4)], axis=1)
        is_digit = (digits >= ord("0")) & (digits <= ord("9"))
        n_digits = np.where(is_digit.all(axis=1), 3, np.argmin(is_digit, axis=1))
        value = np.zeros(len(first), np.int64)
        for k in range(3):
            value = np.where(k < n_digits, value * 10 + digits[:, k].astype(np.int64) - ord("0"), value)
        self.letter = np.where(n_digits > 0, head, 0)  # ord("g"), ord("m") or 0
        self.code = np.where(n_digits > 0, value, -1)
        self.words_from = first + 1 + n_digits
        semicolons = np.flatnonzero(b[: len(data)] == ord(";"))
        nxt = np.searchsorted(semicolons, first)
        comment = np.append(semicolons, len(data))[nxt]
        self.words_to = np.minimum(comment, self.end)
        self.comment = b[first] == ord(";")

    def __len__(self) -> int:
        return len(self.start)

    def text(self, i: int) -> str:
        return self.data[self.first[i]:self.end[i]].decode("utf-8", errors="replace").rstrip("\r")

    def words(self, lines: np.ndarray, letters: str) -> dict[str, np.ndarray]:
        """Per letter of ``letters``, the number after it on each of ``lines`` (bool mask),
        NaN where there is none; a malformed number is a PlanError naming the line."""
        column = np.full(256, -1, np.int64)
        for k, c in enumerate(letters.lower()):
            column[ord(c)] = k
        out = np.full((len(self), len(letters)), np.nan)
        which = np.flatnonzero(lines)
        bad = read_words(self.bytes, which, self.words_from, self.words_to, column, out)
        if bad >= 0:
            raise PlanError(f"G-code line {which[bad] + 1}: bad number in {self.text(which[bad])!r}")
        return {c: out[:, k] for k, c in enumerate(letters)}


@njit(cache=True, nogil=True)
def _number_at(text: np.ndarray, p: int) -> tuple[float, int, bool]:
    """The decimal number at ``text[p:]`` (sign, digits, one point): (value, length, ok).

    Exact like float(): the digits (at most 15) form an integer below 2**53, divided
    by an exact power of ten, so the quotient is rounded once."""
    start = p
    negative = p < len(text) and text[p] == 45
    if p < len(text) and (text[p] == 45 or text[p] == 43):
        p += 1
    mantissa = 0.0
    fraction = 0
    digits = 0
    point = False
    ok = True
    while p < len(text):
        c = text[p]
        if 48 <= c <= 57:
            mantissa = mantissa * 10.0 + (c - 48)
            digits += 1
            if point:
                fraction += 1
        elif c == 46:
            ok = ok and not point
            point = True
        elif c == 43 or c == 45:
            ok = False
        else:
            break
        p += 1
    ok = ok and 0 < digits <= 15
    value = mantissa / _POW10[min(fraction, 15)]
    return (-value if negative else value), p - start, ok


@njit(cache=True, nogil=True)
def read_words(text: np.ndarray, lines: np.ndarray, begin: np.ndarray, end: np.ndarray,
               column: np.ndarray, out: np.ndarray) -> int:
    """For each line ``i`` in ``lines``, the words in ``text[begin[i]:end[i]]`` (ASCII
    bytes) whose letter (either case) has ``column[ord(lower case letter)] = k >= 0``
    go to ``out[i, k]``; a letter with no number leaves ``out`` as it is (a firmware
    default).  -> the position in ``lines`` of the first line with a malformed number
    (``X1.2.3``, ``X-``, more than 15 digits), or -1."""
    for j in range(len(lines)):
        i = lines[j]
        p = begin[i]
        while p < end[i]:
            k = column[text[p] | 32]
            p += 1
            if k < 0:
                continue
            if p < end[i] and text[p] == 32:  # Marlin allows "X 10"
                p += 1
            value, size, ok = _number_at(text[:end[i]], p)
            if size > 0:
                if not ok:
                    return j
                out[i, k] = value
            p += size
    return -1


def _forward_index(flags: np.ndarray) -> np.ndarray:
    """For each row, the index of the last row at or before it with ``flags`` set, -1 if none."""
    index = np.where(flags, np.arange(len(flags)), -1)
    return np.maximum.accumulate(index) if len(index) else index


def _carry(flags: np.ndarray, values: np.ndarray, default: float) -> np.ndarray:
    """Modal state: ``values`` at flagged rows, held until the next flagged row."""
    last = _forward_index(flags)
    return np.where(last >= 0, values[np.maximum(last, 0)], default)


def _integrate(sets: np.ndarray, set_values: np.ndarray, adds: np.ndarray) -> np.ndarray:
    """An axis position per row: set to ``set_values`` where ``sets``, else moved by ``adds`` (0 start)."""
    cum = np.cumsum(adds)
    last = _forward_index(sets)
    base = np.where(last >= 0, set_values[np.maximum(last, 0)] - cum[np.maximum(last, 0)], 0.0)
    return base + cum


def _before(values: np.ndarray) -> np.ndarray:
    """The value before each row (0 before the first): where a move starts."""
    return np.concatenate([[0.0], values[:-1]])


def _arc_chords(start: np.ndarray, end: np.ndarray, ij: np.ndarray, r: np.ndarray,
                clockwise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample arcs into chords: -> (segments (k, 4), owning arc index (k,)).

    Centre from I/J (offset from the start) or, failing those, from R the way
    Marlin does it (negative R: the long way round); same start and end with
    I/J is a full circle."""
    use_r = np.isnan(ij).all(axis=1) & ~np.isnan(r)
    off = np.nan_to_num(ij)
    d = end - start
    chord = np.hypot(d[:, 0], d[:, 1])
    safe = np.where(chord > 0, chord, 1.0)
    rr = np.nan_to_num(r)
    h = np.sqrt(np.maximum((rr - 0.5 * chord) * (rr + 0.5 * chord), 0.0))
    side = np.where(clockwise ^ (rr < 0), -1.0, 1.0)
    centre_r = 0.5 * (start + end) + (side * h / safe)[:, None] * np.stack([-d[:, 1], d[:, 0]], axis=1)
    centre = np.where(use_r[:, None], centre_r, start + off)
    a0 = np.arctan2(start[:, 1] - centre[:, 1], start[:, 0] - centre[:, 0])
    a1 = np.arctan2(end[:, 1] - centre[:, 1], end[:, 0] - centre[:, 0])
    sweep = np.where(clockwise, a0 - a1, a1 - a0) % (2 * math.pi)
    sweep = np.where(sweep < 1e-9, np.where(use_r, 0.0, 2 * math.pi), sweep)
    radius = np.hypot(start[:, 0] - centre[:, 0], start[:, 1] - centre[:, 1])
    steps = np.clip(np.ceil(sweep / _ARC_STEP), 1, None).astype(np.int64)
    arc = np.repeat(np.arange(len(steps)), steps)
    k = np.arange(len(arc)) - np.repeat(np.cumsum(steps) - steps, steps)
    turn = np.where(clockwise, -sweep, sweep)[arc] / steps[arc]
    ang0 = a0[arc] + turn * k
    ang1 = ang0 + turn
    seg = np.stack([centre[arc, 0] + radius[arc] * np.cos(ang0), centre[arc, 1] + radius[arc] * np.sin(ang0),
                    centre[arc, 0] + radius[arc] * np.cos(ang1), centre[arc, 1] + radius[arc] * np.sin(ang1)],
                   axis=1)
    first = k == 0
    last = k == steps[arc] - 1
    seg[first, :2] = start[arc[first]]
    seg[last, 2:] = end[arc[last]]
    return seg, arc


def _named_words(lines: _Lines, i: int) -> dict[str, float]:
    """Line ``i``'s words as letter -> value (0 for a bare letter); a bad number is a PlanError."""
    words = lines.data[lines.words_from[i]:lines.words_to[i]].decode("ascii", errors="replace")
    named = {}
    for word in re.finditer(r"([A-Za-z])[ \t]*([^A-Za-z \t\r]*)", words):
        value = word.group(2)
        if value and not _NUM_RE.fullmatch(value):
            raise PlanError(f"G-code line {i + 1}: bad number in {word.group(0)!r}: {lines.text(i)!r}")
        named[word.group(1).upper()] = float(value) if value else 0.0
    return named


def _filament_diameter(text: str, default: float) -> float:
    """The diameter a PrusaSlicer (``; filament_diameter = 1.75``) or Cura
    (``;EXTRUDER_TRAIN.0.MATERIAL.DIAMETER:2.85``) comment states, else ``default``."""
    for key in ("filament_diameter", "MATERIAL.DIAMETER:"):
        at = text.find(key)
        if at >= 0:
            found = re.match(r"\s*=?\s*([0-9]*\.?[0-9]+)", text[at + len(key):at + len(key) + 40])
            if found and float(found.group(1)) > 0:
                return float(found.group(1))
    return default


def layers_from_gcode(text: str, filament_diameter: float = 1.75) -> list[PreviewLayer]:
    """Every layer's XY moves by kind (see the module docstring for the rules).

    ``filament_diameter`` (mm) only serves the width estimate and yields to a
    ``filament_diameter =`` (PrusaSlicer) or ``MATERIAL.DIAMETER:`` (Cura) comment.
    """
    lines = _Lines(text)
    n = len(lines)
    g, m = ord("g"), ord("m")
    move = (lines.letter == g) & (lines.code >= 0) & (lines.code <= 3)
    code = lines.code
    given = lines.words(move, "XYZE")

    # modal commands and comments: few lines, a plain loop
    abs_xyz_set = np.zeros(n, bool)
    abs_e_set = np.zeros(n, bool)
    abs_xyz_val = np.ones(n)
    abs_e_val = np.ones(n)
    unit_set = np.zeros(n, bool)
    unit_val = np.ones(n)
    kind_set = np.zeros(n, bool)
    kind_val = np.full(n, OTHER, dtype=np.int8)
    marker = np.zeros(n, bool)
    axis_set = {c: np.zeros(n, bool) for c in "XYZE"}
    axis_val = {c: np.zeros(n) for c in "XYZE"}
    modal = np.zeros(n, bool)
    for letter, number in _MODAL:
        modal |= (lines.letter == (g if letter == "G" else m)) & (code == number)
    for i in np.flatnonzero(modal | lines.comment).tolist():
        if lines.comment[i]:
            tag = _TAG_RE.match(lines.text(i))
            if tag and tag.group(1):
                kind_set[i] = True
                kind_val[i] = TYPE_KINDS.get(tag.group(2).strip().lower(), OTHER)
            elif tag:
                marker[i] = True
            continue
        cmd = f"{chr(lines.letter[i]).upper()}{code[i]}"
        if cmd in ("G90", "G91"):
            abs_xyz_set[i] = abs_e_set[i] = True
            abs_xyz_val[i] = abs_e_val[i] = cmd == "G90"
        elif cmd in ("M82", "M83"):
            abs_e_set[i] = True
            abs_e_val[i] = cmd == "M82"
        elif cmd in ("G20", "G21"):
            unit_set[i] = True
            unit_val[i] = 25.4 if cmd == "G20" else 1.0
        else:  # G92 (set position) or G28 (home): the named axes, or all when none is named
            named = _named_words(lines, i)
            axes = "XYZE" if cmd == "G92" else "XYZ"
            for c in [c for c in axes if c in named] or axes:
                axis_set[c][i] = True
                axis_val[c][i] = named.get(c, 0.0) if cmd == "G92" else 0.0

    scale = _carry(unit_set, unit_val, 1.0)
    absolute = {"E": _carry(abs_e_set, abs_e_val, 1.0) > 0}
    absolute["X"] = absolute["Y"] = absolute["Z"] = _carry(abs_xyz_set, abs_xyz_val, 1.0) > 0
    pos = {}
    for c in "XYZE":
        v = given[c] * scale
        has = move & ~np.isnan(v)
        sets = axis_set[c] | (has & absolute[c])
        set_values = np.where(axis_set[c], axis_val[c] * scale, np.nan_to_num(v))
        adds = np.where(has & ~absolute[c], v, 0.0)
        pos[c] = _integrate(sets, set_values, np.nan_to_num(adds))
    x, y, z, e = pos["X"], pos["Y"], pos["Z"], pos["E"]
    x0, y0, e_prev = _before(x), _before(y), _before(e)
    de = np.where(move & ~absolute["E"], np.nan_to_num(given["E"] * scale), e - e_prev)
    de = np.where(move, de, 0.0)
    arc = move & (code >= 2)
    moved_xy = (x != x0) | (y != y0)
    drawn = move & (moved_xy | arc)
    extruding = drawn & (de > 0)

    # layers
    if marker.any():
        row_layer = np.cumsum(marker) - 1
    else:
        ext_rows = np.flatnonzero(extruding)
        zext = z[ext_rows]
        higher = zext > np.concatenate([[-np.inf], np.maximum.accumulate(zext)[:-1]]) + 1e-6
        starts = np.zeros(n, bool)
        new = np.flatnonzero(higher)
        starts[np.where(new > 0, ext_rows[np.maximum(new - 1, 0)] + 1, 0)] = True
        row_layer = np.cumsum(starts) - 1
    n_layers = int(row_layer[-1]) + 1
    if n_layers <= 0:
        return []
    kind_row = np.where(extruding, _carry(kind_set, kind_val, OTHER), PathKind.TRAVEL).astype(np.int8)

    # segments: straight moves as they are, arcs sampled
    rows = np.flatnonzero(drawn & (row_layer >= 0) & ~arc)
    seg = np.stack([x0[rows], y0[rows], x[rows], y[rows]], axis=1)
    length = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
    seg_row = rows
    arc_rows = np.flatnonzero(arc & (row_layer >= 0))
    if len(arc_rows):
        arc_lines = np.zeros(n, bool)
        arc_lines[arc_rows] = True
        centre = lines.words(arc_lines, "IJR")
        ij = np.stack([centre["I"][arc_rows], centre["J"][arc_rows]], axis=1) * scale[arc_rows, None]
        r = centre["R"][arc_rows] * scale[arc_rows]
        start = np.stack([x0[arc_rows], y0[arc_rows]], axis=1)
        end = np.stack([x[arc_rows], y[arc_rows]], axis=1)
        arc_seg, owner = _arc_chords(start, end, ij, r, code[arc_rows] == 2)
        arc_len = np.hypot(arc_seg[:, 2] - arc_seg[:, 0], arc_seg[:, 3] - arc_seg[:, 1])
        seg_row = np.concatenate([rows, arc_rows[owner]])
        order = np.argsort(seg_row, kind="stable")
        seg_row = seg_row[order]
        seg = np.concatenate([seg, arc_seg])[order]
        # an arc's E spreads over its chords in proportion to their length
        arc_total = np.bincount(owner, weights=arc_len, minlength=len(arc_rows))
        share = arc_len / np.where(arc_total[owner] > 0, arc_total[owner], 1.0)
        de_share = np.concatenate([np.ones(len(rows)), share])[order]
        length = np.concatenate([length, arc_len])[order]
    else:
        de_share = np.ones(len(rows))
    kinds = kind_row[seg_row]
    seg_layer = row_layer[seg_row]

    # z per layer: the highest extrusion, else the last position in the layer
    z_layer = np.full(n_layers, -np.inf)
    ext_seg = kinds != PathKind.TRAVEL
    np.maximum.at(z_layer, seg_layer[ext_seg], z[seg_row[ext_seg]])
    last_row = np.searchsorted(row_layer, np.arange(n_layers), side="right") - 1
    z_layer = np.where(np.isfinite(z_layer), z_layer, z[last_row])

    # width from the extruded volume: filament area * E = width * height * length
    area = math.pi * (_filament_diameter(text, filament_diameter) / 2) ** 2
    height = np.diff(z_layer, prepend=0.0)[seg_layer]
    with np.errstate(divide="ignore", invalid="ignore"):
        width = area * de[seg_row] * de_share / (height * length)
    width_ok = ext_seg & (height > 0) & (length > 0) & np.isfinite(width)

    bounds = np.searchsorted(seg_layer, np.arange(n_layers + 1))
    layers = []
    for k in range(n_layers):
        lo, hi = bounds[k], bounds[k + 1]
        w = width[lo:hi][width_ok[lo:hi]]
        layers.append(PreviewLayer(index=k, z=float(z_layer[k]), segments=np.ascontiguousarray(seg[lo:hi]),
                                   kinds=np.ascontiguousarray(kinds[lo:hi]),
                                   width=float(np.median(w)) if len(w) else math.nan))
    return layers


@dataclass(frozen=True)
class PixelFrame:
    """The image layout shared by all layers of a part, so that their images compare:
    a title band, a ``size`` square for the part, a legend band; millimetres map to
    pixels as ``px = (x - x_min) * scale + left``, ``py = bottom - (y - y_min) * scale`` (Y up)."""

    size: int  # px: image width and height of the drawing square
    band: int  # px: height of the title band above and the legend band below the square
    margin: float  # px: free border inside the square (plus half a line width)
    x_min: float
    y_min: float
    scale: float  # px per mm
    left: float
    bottom: float
    line_px: int  # extrusion line width: the part's median extrusion width at this scale, at least 1

    @classmethod
    def for_image(cls, layers: list[PreviewLayer], size: int) -> PixelFrame:
        """Fit every layer's extrusions (or, without any, all moves) in the ``size`` square."""
        band = 2 * font_px_for(size)
        margin = max(4, size // 40)
        segs = [layer.segments[layer.kinds != PathKind.TRAVEL] for layer in layers]
        pts = np.concatenate([s.reshape(-1, 2) for s in segs] + [np.zeros((0, 2))])
        if not len(pts):
            pts = np.concatenate([layer.segments.reshape(-1, 2) for layer in layers] + [np.zeros((1, 2))])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        span = float(max(hi[0] - lo[0], hi[1] - lo[1], 1e-3))
        widths = [layer.width for layer in layers if not math.isnan(layer.width)]
        width = float(np.median(widths)) if widths else 0.0
        scale = (size - 2 * margin) / (span + width)  # half a line width more on each side
        margin += width * scale / 2
        left = margin + (span - (hi[0] - lo[0])) * scale / 2
        bottom = band + size - margin - (span - (hi[1] - lo[1])) * scale / 2
        line_px = max(1, round(width * scale))
        return cls(size, band, margin, float(lo[0]), float(lo[1]), scale, left, bottom, line_px)

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) mm -> (..., 2) pixel coordinates."""
        xy = np.asarray(xy, dtype=np.float64)
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] - self.x_min) * self.scale + self.left
        out[..., 1] = self.bottom - (xy[..., 1] - self.y_min) * self.scale
        return out


def font_px_for(size: int) -> int:
    return max(12, size // 55)


def _chains(segments: np.ndarray) -> list[np.ndarray]:
    """Consecutive segments that join end to start, as polylines (drawn with round joints)."""
    if not len(segments):
        return []
    breaks = np.flatnonzero((segments[1:, :2] != segments[:-1, 2:]).any(axis=1)) + 1
    chains = []
    for part in np.split(segments, breaks):
        closed = len(part) > 2 and (part[0, :2] == part[-1, 2:]).all()
        # a closed loop goes once more to its second point, so its start gets a joint too
        chains.append(np.concatenate([part[:1, :2], part[:, 2:], part[:1, 2:] if closed else part[:0, 2:]]))
    return chains


def _draw_lines(draw: ImageDraw.ImageDraw, frame: PixelFrame, segments: np.ndarray, colour, width: int) -> None:
    for line in _chains(segments):
        draw.line(frame.to_pixels(line).ravel().tolist(), fill=colour, width=width,
                  joint="curve" if width > 2 else None)


def render_layers(layers: list[PreviewLayer], which: list[int], out: Path, size: int = 1000,
                  travels: bool = True, previous: bool = True) -> list[Path]:
    """Write ``out/layer-<k>.png`` for each layer ``k`` in ``which`` (negative counts from the
    top, as in Python; the file is named by the non-negative index) and return the paths.

    Layout and scale are :meth:`PixelFrame.for_image`'s: ``size`` px wide, a title band
    (layer, z, move counts) above and a legend band (only the kinds drawn) below the
    ``size`` square.  Extrusions are drawn as wide as the part's median extrusion width,
    walls over fills; travels (``travels``) as 1 px grey lines under them; the layer
    below in light grey under everything (``previous``).
    """
    count = len(layers)
    chosen = []
    for k in which:
        if not -count <= k < count:
            raise PlanError(f"layer {k} out of range: the G-code has {count} layers (0..{count - 1}, or -1..-{count})")
        chosen.append(k % count)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PlanError(f"preview output {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    frame = PixelFrame.for_image(layers, size)
    font = ImageFont.load_default(size=font_px_for(size))
    written = []
    for k in chosen:
        layer = layers[k]
        image = Image.new("RGB", (size, size + 2 * frame.band), "white")
        draw = ImageDraw.Draw(image)
        shown = []
        if previous and k > 0:
            below = layers[k - 1]
            _draw_lines(draw, frame, below.segments[below.kinds != PathKind.TRAVEL], _PREVIOUS_COLOUR, frame.line_px)
            shown.append((_PREVIOUS_COLOUR, f"layer {k - 1}"))
        travel = layer.kinds == PathKind.TRAVEL
        if travels and travel.any():
            _draw_lines(draw, frame, layer.segments[travel], KIND_COLOURS[PathKind.TRAVEL][0], 1)
            shown.append(KIND_COLOURS[PathKind.TRAVEL])
        for kind in _DRAW_ORDER:
            mask = layer.kinds == kind
            if mask.any():
                _draw_lines(draw, frame, layer.segments[mask], KIND_COLOURS[kind][0], frame.line_px)
                shown.append(KIND_COLOURS[kind])
        n_travel = int(travel.sum())
        title = (f"layer {k} of 0..{count - 1}   z = {layer.z:.3f} mm   "
                 f"{len(travel) - n_travel} extrusion and {n_travel} travel moves")
        draw_bands(draw, frame.size, frame.band, font, title, shown)
        path = out / f"layer-{k}.png"
        image.save(path)
        written.append(path)
    return written


def draw_bands(draw: ImageDraw.ImageDraw, size: int, band: int, font, title: str, legend) -> None:
    """The title above a ``size`` square and a row of colour swatches with labels below it
    (blanked first: wide lines may reach into the bands); the Z-map image uses it too."""
    font_px = font_px_for(size)
    draw.rectangle((0, 0, size, band - 1), fill="white")
    draw.text((4, band // 4), title, fill="black", font=font)
    top = size + band
    draw.rectangle((0, top, size, top + band), fill="white")
    x = 4
    for colour, label in legend:
        draw.rectangle((x, top + band // 4, x + font_px, top + band // 4 + font_px), fill=colour, outline="black")
        x += font_px + 4
        draw.text((x, top + band // 4), label, fill="black", font=font)
        x += int(draw.textlength(label, font=font)) + font_px
