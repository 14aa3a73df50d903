"""Areas for CAM: offsets and booleans of loop sets through Clipper (pyclipper).

An area is a list of closed loops, each a (n, 2) float64 array in mm, the
closing point not repeated; outlines counter-clockwise, holes clockwise (what
Clipper returns).  Coordinates go to Clipper as integers at ``SCALE`` units per
mm (0.1 µm), far finer than the 1 µm the G-code is written with.  Offsets use
round joins: a tool's centre path keeps exactly its radius from a corner.
"""

from __future__ import annotations

import numpy as np
import pyclipper

SCALE = 10_000.0  # Clipper units per mm
ARC_TOLERANCE = 0.002  # mm: round joins stay this close to a true arc


def _to_clipper(area) -> list:
    return [np.round(np.asarray(loop) * SCALE).astype(np.int64).tolist() for loop in area if len(loop) >= 3]


def _from_clipper(paths) -> list[np.ndarray]:
    return [np.asarray(p, dtype=np.float64) / SCALE for p in paths if len(p) >= 3]


def offset(area, delta: float) -> list[np.ndarray]:
    """``area`` grown by ``delta`` mm (shrunk when negative), with round joins."""
    if not area:
        return []
    off = pyclipper.PyclipperOffset(2.0, ARC_TOLERANCE * SCALE)
    off.AddPaths(_to_clipper(area), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return _from_clipper(off.Execute(delta * SCALE))


def boolean(operation: str, subject, clip) -> list[np.ndarray]:
    """``union``, ``difference`` or ``intersection`` of two areas (non-zero winding)."""
    kind = {"union": pyclipper.CT_UNION, "difference": pyclipper.CT_DIFFERENCE,
            "intersection": pyclipper.CT_INTERSECTION}[operation]
    subject, clip = _to_clipper(subject), _to_clipper(clip)
    if not subject and (operation != "union" or not clip):
        return []
    pc = pyclipper.Pyclipper()
    if subject:
        pc.AddPaths(subject, pyclipper.PT_SUBJECT, True)
    if clip:
        pc.AddPaths(clip, pyclipper.PT_CLIP, True)
    return _from_clipper(pc.Execute(kind, pyclipper.PFT_NONZERO, pyclipper.PFT_NONZERO))


def clip_paths(paths, area) -> list[np.ndarray]:
    """The parts of open polylines ``paths`` inside ``area``."""
    if not paths or not area:
        return []
    pc = pyclipper.Pyclipper()
    pc.AddPaths([np.round(np.asarray(p) * SCALE).astype(np.int64).tolist() for p in paths], pyclipper.PT_SUBJECT, False)
    pc.AddPaths(_to_clipper(area), pyclipper.PT_CLIP, True)
    tree = pc.Execute2(pyclipper.CT_INTERSECTION, pyclipper.PFT_NONZERO, pyclipper.PFT_NONZERO)
    return [np.asarray(p, dtype=np.float64) / SCALE for p in pyclipper.OpenPathsFromPolyTree(tree) if len(p) >= 2]


def signed_area(loop: np.ndarray) -> float:
    x, y = loop[:, 0], loop[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def area_mm2(area) -> float:
    return sum(signed_area(loop) for loop in area)


def islands(area) -> list[list[np.ndarray]]:
    """``area`` split into its connected pieces: each outline with the holes inside it."""
    outlines = [loop for loop in area if signed_area(loop) > 0]
    holes = [loop for loop in area if signed_area(loop) < 0]
    pieces = [[o] for o in sorted(outlines, key=signed_area)]  # smallest first: a hole goes to the tightest outline
    for hole in holes:
        for piece in pieces:
            if pyclipper.PointInPolygon(_to_clipper([hole])[0][0], _to_clipper([piece[0]])[0]) != 0:
                piece.append(hole)
                break
    return pieces


def rectangle(x0: float, y0: float, x1: float, y1: float) -> list[np.ndarray]:
    return [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)]


def distance_to_edges(point, area) -> float:
    """Distance from ``point`` to the nearest edge of ``area``."""
    best = np.inf
    p = np.asarray(point, dtype=np.float64)
    for loop in area:
        a, b = loop, np.roll(loop, -1, axis=0)
        ab = b - a
        t = np.clip(np.einsum("ij,ij->i", p - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-30), 0.0, 1.0)
        best = min(best, float(np.min(np.hypot(*(a + t[:, None] * ab - p).T))))
    return best


def contains(area, point) -> bool:
    """True when ``point`` is inside ``area`` (winding non-zero)."""
    q = np.round(np.asarray(point) * SCALE).astype(np.int64).tolist()
    winding = 0
    for loop in _to_clipper(area):
        if pyclipper.PointInPolygon(q, loop) != 0:
            winding += 1 if signed_area(np.asarray(loop, dtype=np.float64)) > 0 else -1
    return winding != 0


def _clip_segment(p, q, box):
    """Liang-Barsky: the parameters (t0, t1) of segment p->q inside ``box`` (x0, y0, x1, y1), or None."""
    t0, t1 = 0.0, 1.0
    d = q - p
    for delta, low, high, start in ((d[0], box[0], box[2], p[0]), (d[1], box[1], box[3], p[1])):
        if abs(delta) < 1e-15:
            if start < low or start > high:
                return None
            continue
        a, b = (low - start) / delta, (high - start) / delta
        t0, t1 = max(t0, min(a, b)), min(t1, max(a, b))
    return (t0, t1) if t1 - t0 > 1e-12 else None


def clip_loop_to_box(loop: np.ndarray, box) -> tuple[bool, list[np.ndarray]]:
    """The parts of closed ``loop`` inside the axis-aligned ``box`` (x0, y0, x1, y1), in the loop's direction.

    Returns (True, [loop]) when the loop is wholly inside, else (False, open pieces) -- each piece starts and
    ends on the box's edge."""
    outside = np.flatnonzero((loop[:, 0] < box[0]) | (loop[:, 0] > box[2]) | (loop[:, 1] < box[1]) |
                             (loop[:, 1] > box[3]))
    if not len(outside):
        return True, [loop]
    ring = np.roll(loop, -int(outside[0]), axis=0)  # start outside: no piece is split at the seam
    ring = np.vstack((ring, ring[:1]))
    pieces, current = [], None
    for p, q in zip(ring[:-1], ring[1:]):
        inside = _clip_segment(p, q, box)
        if inside is None:
            current = None
            continue
        t0, t1 = inside
        if current is None or t0 > 0:
            current = [p + (q - p) * t0]
            pieces.append(current)
        current.append(p + (q - p) * t1)
        if t1 < 1:
            current = None
    return False, [np.array(piece) for piece in pieces if polyline_length(piece) > 1e-3]


def polyline_length(points) -> float:
    """Length of an open polyline (0 for fewer than two points)."""
    pts = np.asarray(points)
    return float(np.sum(np.hypot(*np.diff(pts, axis=0).T))) if len(pts) > 1 else 0.0

