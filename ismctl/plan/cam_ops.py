"""The machining operations as moves: facing, profile, pocket clearing, drilling.

A ``Cutter`` knows the tool, the feeds and where material may still be, and
turns paths into moves on a ``GcodeWriter``:

- it never plunges an end mill into material: a closed loop is entered by a
  ramp along the loop, an open path by a ramp back and forth along it, a
  pocket by a helix -- all no steeper than the ramp angle -- starting from a
  height known to be clear (the level above, already cut), or straight down
  where the tool is beside the stock;
- between paths it feeds straight across only when the whole move stays in the
  area the tool centre may visit at that level; otherwise it lifts to the safe
  height, travels, and comes back down through air;
- direction: with the spindle turning clockwise (M3), climb milling keeps the
  material on the tool's right, so outlines are cut clockwise and pocket walls
  counter-clockwise (conventional: the other way round).
"""

from __future__ import annotations

import math

import numpy as np

from . import cam_areas
from .cam_gcode import GcodeWriter
from .cam_paths import CW, LINE, fit_arcs, scanline_segments

CLEARANCE = 1.0  # mm above a cleared floor that rapids stop at before feeding down
LINK_TOLERANCE = 1e-3  # mm: a link is inside an area when Clipper keeps all of it but this
ARC_FIT = 0.002  # mm: a path's points on a circle become a G2/G3 when the arc stays this close to the path
MIN_ARC_POINTS = 4
MAX_ARC_RADIUS = 1000.0  # mm: flatter than this is a straight line
MIN_ARC_CHORD = 0.01  # mm: shorter arcs are written as lines (1 µm rounding could make them full circles)


class Cutter:
    def __init__(self, out: GcodeWriter, tool, settings, feed: float, plunge: float, stock_box):
        self.out, self.tool, self.settings = out, tool, settings
        self.feed_rate, self.plunge_rate = feed, plunge
        self.r = tool.radius
        self.safe_z = settings.safe_z
        self.stock = stock_box  # [[x0, y0, z0], [x1, y1, z1]]
        self.tan = math.tan(math.radians(settings.ramp_angle))

    # -- where the tool is --------------------------------------------------------
    @property
    def xy(self) -> np.ndarray:
        return np.array(self.out.pos[:2])

    def beside_stock(self, point) -> bool:
        """True when the tool at ``point`` does not touch the stock (clear at any height)."""
        (x0, y0, _), (x1, y1, _) = self.stock
        dx = max(x0 - point[0], 0.0, point[0] - x1)
        dy = max(y0 - point[1], 0.0, point[1] - y1)
        return math.hypot(dx, dy) >= self.r + 1e-6

    def retract(self) -> None:
        if not self.out.pos[2] >= self.safe_z:
            self.out.rapid(z=self.safe_z)

    def travel_down(self, point, z_clear: float) -> None:
        """Lift, travel to ``point``, and come down through air to ``z_clear`` (a height known clear there)."""
        self.retract()
        self.out.rapid(point[0], point[1])
        if z_clear + CLEARANCE < self.safe_z:
            self.out.rapid(z=z_clear + CLEARANCE)
        self.out.feed(None, None, z_clear, self.plunge_rate)

    def link(self, point, z: float, area) -> bool:
        """Feed straight to ``point`` at ``z`` when the tool is at ``z`` and the move stays inside ``area``."""
        here = self.xy
        if np.isnan(here).any() or not self._at_depth(z) or not area:
            return False
        pieces = cam_areas.clip_paths([np.array([here, point])], area)
        span = float(np.hypot(*(np.asarray(point) - here)))
        if span > LINK_TOLERANCE and (len(pieces) != 1 or abs(cam_areas.polyline_length(pieces[0]) - span) > LINK_TOLERANCE):
            return False
        self.out.feed(point[0], point[1], z, self.feed_rate)
        return True

    def reach(self, point, z: float, area, z_clear: float) -> bool:
        """Bring the tool to ``point``: at ``z`` when it can get there without entering material from above
        (a link inside ``area``, or down beside the stock) -> True; else at ``z_clear``, ready for an entry -> False."""
        if self.link(point, z, area):
            return True
        if np.allclose(self.xy, np.round(point, 3), atol=1e-9) and self._at_depth(z_clear):
            return False  # already there (the same loop, one level down)
        if self.beside_stock(point):
            self.travel_down(point, z)
            return True
        self.travel_down(point, z_clear)
        return False

    # -- entries -----------------------------------------------------------------
    def ramp_loop(self, loop: np.ndarray, z_from: float, z_to: float) -> np.ndarray:
        """Down from ``z_from`` to ``z_to`` along the closed loop (which starts at the tool), at the ramp angle,
        lapping as often as that takes; returns the loop starting where the ramp ended, to be cut at depth."""
        length = (z_from - z_to) / self.tan
        if length <= 0 or not np.any(np.diff(loop, axis=0)):
            self.out.feed(None, None, z_to, self.plunge_rate)  # nothing to descend, or a loop of one point
            return loop
        n, walked, i = len(loop), 0.0, 1
        here = loop[0]
        while True:
            p = loop[i % n]
            step = float(np.hypot(*(p - here)))
            if walked + step >= length and step > 0:
                end = here + (p - here) * (length - walked) / step
                self.out.feed(end[0], end[1], z_to, self.plunge_rate)
                return np.vstack((end, np.roll(loop, -(i % n), axis=0)))
            walked += step
            self.out.feed(p[0], p[1], z_from - (z_from - z_to) * walked / length, self.plunge_rate)
            here, i = p, i + 1

    def ramp_open(self, path: np.ndarray, z_from: float, z_to: float) -> None:
        """Down from ``z_from`` to ``z_to`` back and forth along the start of the open path (no more of it than
        one leg there and one back at the ramp angle take), ending at its start."""
        at = np.concatenate(([0.0], np.cumsum(np.hypot(*np.diff(path, axis=0).T))))  # distance of each point
        leg = min(at[-1], (z_from - z_to) / self.tan / 2)
        if leg <= 0:
            self.out.feed(None, None, z_to, self.plunge_rate)
            return
        k = int(np.searchsorted(at, leg))  # the prefix of the path up to ``leg``, its end interpolated
        end = path[k - 1] + (path[k] - path[k - 1]) * (leg - at[k - 1]) / (at[k] - at[k - 1])
        path, at = np.vstack((path[:k], end)), np.append(at[:k], leg)
        length = leg
        legs = max(2, math.ceil((z_from - z_to) / max(length * self.tan, 1e-9) - 1e-9))
        legs += legs % 2
        there, back = np.arange(1, len(path)), np.arange(len(path) - 2, -1, -1)
        for leg in range(legs):
            order = there if leg % 2 == 0 else back
            along = at[order] if leg % 2 == 0 else length - at[order]
            for i, s in zip(order, along):
                z = z_from - (z_from - z_to) * (leg + s / length) / legs
                self.out.feed(path[i, 0], path[i, 1], z, self.plunge_rate)

    def helix(self, centre, radius: float, z_from: float, z_to: float) -> None:
        """Down from ``z_from`` to ``z_to`` on a helix (half-circle arcs), then one flat turn to clear its floor.

        Starts and ends at ``centre + (radius, 0)``; turns counter-clockwise when climbing."""
        cx, cy = centre
        pitch = 2 * math.pi * radius * self.tan
        turns = max(1, math.ceil((z_from - z_to) / pitch - 1e-9))
        ccw = self.settings.climb
        start = (cx + radius, cy)
        self.travel_down(start, z_from)
        for half in range(2 * turns + 2):
            z = max(z_to, z_from - (z_from - z_to) * (half + 1) / (2 * turns))
            x = cx - radius if half % 2 == 0 else cx + radius
            self.out.arc(x, cy, z, cx, cy, clockwise=not ccw, feed=self.plunge_rate if z > z_to else self.feed_rate)

    # -- cuts --------------------------------------------------------------------
    def cut_loop(self, loop: np.ndarray, z: float, area, z_clear: float) -> None:
        """Cut one closed loop at ``z``, starting beside the stock if it can, else at its corner nearest the tool."""
        loop = np.roll(loop, -self._start_index(loop), axis=0)
        if not self.reach(loop[0], z, area, z_clear):
            loop = self.ramp_loop(loop, z_clear, z)
        self.feed_path(np.vstack((loop, loop[:1])), z)

    def cut_open(self, path: np.ndarray, z: float, area, z_clear: float, either_way: bool = True) -> None:
        """Cut an open path at ``z``, from whichever end is nearer when ``either_way``."""
        if either_way and not np.isnan(self.xy).any() and \
                np.hypot(*(path[-1] - self.xy)) < np.hypot(*(path[0] - self.xy)):
            path = path[::-1]
        if not self.reach(path[0], z, area, z_clear):
            self.ramp_open(path, z_clear, z)
        self.feed_path(path, z)

    def feed_path(self, path: np.ndarray, z: float) -> None:
        """Feed along ``path`` (the tool at its first point) at ``z``: arcs where its points lie on a circle."""
        end, kind, centre = fit_arcs(np.ascontiguousarray(path, dtype=np.float64), ARC_FIT, MIN_ARC_POINTS,
                                     MAX_ARC_RADIUS)
        for e, k, (cx, cy) in zip(end, kind, centre):
            p = path[e]
            if k == LINE or np.hypot(*(np.round(p, 3) - self.xy)) < MIN_ARC_CHORD:
                self.out.feed(p[0], p[1], z, self.feed_rate)
            else:
                self.out.arc(p[0], p[1], z, cx, cy, clockwise=bool(k == CW), feed=self.feed_rate)

    def _at_depth(self, z: float) -> bool:
        return abs(self.out.pos[2] - round(z, 3)) < 1e-9

    def _start_index(self, loop: np.ndarray) -> int:
        beside = [i for i, p in enumerate(loop) if self.beside_stock(p)]
        if beside:
            candidates = np.array(beside)
        else:
            candidates = np.arange(len(loop))
        if np.isnan(self.xy).any():
            return int(candidates[0])
        d = np.hypot(*(loop[candidates] - self.xy).T)
        return int(candidates[int(np.argmin(d))])


# ---------------------------------------------------------------------------- operations

def face(c: Cutter, levels: np.ndarray, stepover: float) -> None:
    """Zig-zag over the whole stock top at each level, from beside the stock, linking outside it."""
    (x0, y0, _), (x1, y1, _) = c.stock
    r = c.r
    n = max(1, math.ceil((y1 - y0 - r) / stepover))
    ys = np.linspace(y0 + r / 2, y1 - r / 2, n + 1) if y1 - y0 > r else np.array([(y0 + y1) / 2])
    left, right = x0 - r - 1.0, x1 + r + 1.0
    for k, z in enumerate(levels):
        c.out.next_level()
        c.out.comment(f"face z {z:.3f}")
        if k == 0:
            c.travel_down((left, ys[0]), z)
        else:  # still beside the stock, where the last level ended
            c.out.feed(None, None, z, c.plunge_rate)
        for i, y in enumerate(ys):
            a, b = (left, right) if i % 2 == 0 else (right, left)
            c.out.feed(a, y, z, c.feed_rate)
            c.out.feed(b, y, z, c.feed_rate)
        if len(ys) % 2:  # back to the start side, beside the stock, for the next level
            c.out.feed(left, ys[-1], z, c.feed_rate)
        c.out.feed(left, ys[0], z, c.feed_rate)


def directed(loop: np.ndarray, climb: bool) -> np.ndarray:
    """A loop of a tool-centre area as Clipper orients it (the area on its left, material on its right) is
    the climb direction; conventional milling runs it the other way."""
    return loop if climb else loop[::-1].copy()


def outer_rings(keep, clearance: float, stepover: float, reach_box) -> list[list[np.ndarray]]:
    """Offset rings around the kept area, outermost first, each oriented as the free area's loops (clockwise,
    the part on the right); the last is the profile (``clearance`` away).  Rings stop once one lies wholly
    outside ``reach_box`` (the stock grown by the tool radius: nothing left to cut there)."""
    rings, j = [], 0
    while True:
        grown = cam_areas.offset(keep, clearance + j * stepover)
        outlines = [loop[::-1].copy() for loop in grown if cam_areas.signed_area(loop) > 0]
        if j and not any(cam_areas.clip_loop_to_box(loop, reach_box)[1] for loop in outlines):
            break
        rings.append(outlines)
        j += 1
    return rings[::-1]


def pocket_rings(area, stepover: float) -> list[list[np.ndarray]]:
    """Inward offset rings of a tool-centre area, innermost first; the last is the wall pass."""
    rings, j = [], 0
    while True:
        ring = cam_areas.offset(area, -j * stepover) if j else area
        if not ring:
            break
        rings.append(ring)
        j += 1
    return rings[::-1]


def zigzag_lines(area, stepover: float) -> list[np.ndarray]:
    """Scanline pieces across ``area`` shrunk by half a stepover, in zig-zag order from the bottom."""
    inner = cam_areas.offset(area, -stepover / 2)
    if not inner:
        return []
    pts = np.vstack(inner)
    start = np.concatenate(([0], np.cumsum([len(loop) for loop in inner]))).astype(np.int64)
    lo, hi = pts[:, 1].min(), pts[:, 1].max()
    n = max(1, math.ceil((hi - lo) / stepover))
    ys = np.linspace(lo, hi, n + 1)[1:-1] if n > 1 else np.array([(lo + hi) / 2])
    segments, line = scanline_segments(pts, start, ys)
    paths = []
    for k, (xa, xb, y) in zip(line, segments):
        if xb - xa > 1e-3:  # a line grazing a corner is no cut
            a, b = (xa, xb) if k % 2 == 0 else (xb, xa)
            paths.append(np.array([[a, y], [b, y]]))
    return paths


def helix_site(area, innermost, wanted_radius: float):
    """Centre and radius of a helix that fits in the tool-centre ``area``; radius 0 when none does."""
    loop = max(innermost, key=cam_areas.signed_area)
    centre = loop.mean(axis=0)
    if not cam_areas.contains(area, centre):
        centre = loop[0]
    room = cam_areas.distance_to_edges(centre, area)
    return centre, min(wanted_radius, room - 1e-3)


def drill(c: Cutter, holes, peck: float, top: float) -> None:
    """Peck drilling with G0/G1 (grbl has no canned cycles): down one peck, out to clear chips, rapid back."""
    tip = c.r / math.tan(math.radians(59.0))  # a 118 degree point
    for h in holes:
        c.out.comment(f"drill D{h.diameter:.3f} at X{h.x:.3f} Y{h.y:.3f} to Z{h.bottom:.3f}")
        bottom = h.bottom - tip - 0.2 if h.through else h.bottom
        c.retract()
        c.out.rapid(h.x, h.y)
        start = top + CLEARANCE
        c.out.rapid(z=start)
        depth = top
        while depth > bottom + 1e-9:
            if depth < top:
                c.out.rapid(z=depth + 0.5)  # back down to just above the last peck's floor
            depth = max(bottom, depth - peck)
            c.out.feed(None, None, depth, c.plunge_rate)
            c.out.rapid(z=start)
        c.retract()
