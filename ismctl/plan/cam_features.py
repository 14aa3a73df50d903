"""What the part asks of the mill: cutting levels, the area to keep at each, and drillable holes.

Everything here is in program coordinates: the mesh is already placed in the
stock (origin at the stock's front-left corner, Z = 0 at its top).

*Levels* are the heights the tool bottom cuts at: the part's floors (faces
looking straight up) and its bottom, with step-downs no deeper than the depth
of cut between them, so every floor is cut exactly.

*Keep areas*: the area the tool must not enter at a level is the union of the
part's sections at and above it -- the part's shadow seen from above -- so
no pass ever undercuts what is above it.  Sections are taken just above every
level and every height where the part has a vertex (where its sections can
change shape), so a wall that leans out is not cut into between levels.

*Holes*: a hole loop of a section that is a circle, found at the same centre
and radius on consecutive sections, is a vertical cylindrical hole; it is
drillable when nothing of the part is above its top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import cam_areas
from .model import Mesh
from .slicing import slice_mesh

EPS = 1e-4  # mm: sections are taken this far above or below a height where the part changes
MAX_EXTRA_PLANES = 400  # sections at vertex heights beyond this are taken on a regular grid instead
FLAT = 0.9999  # a face looks straight up when its normal's z is above this
SECTION_DEVIATION = 0.001  # mm: sections are simplified at most this much (inwards or outwards)


@dataclass(frozen=True)
class Hole:
    x: float
    y: float
    diameter: float
    top: float  # z where the hole opens
    bottom: float  # z of its floor (the part's bottom for a through hole)
    through: bool


def floor_heights(mesh: Mesh) -> np.ndarray:
    """Heights of faces looking straight up (pocket floors, steps), rising, without repeats."""
    v = mesh.vertices[mesh.faces]
    normal = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    length = np.linalg.norm(normal, axis=1)
    up = normal[:, 2] > FLAT * np.maximum(length, 1e-300)
    return np.unique(np.round(v[up, 0, 2], 4))


def cutting_levels(top: float, bottom: float, floors: np.ndarray, depth_of_cut: float) -> np.ndarray:
    """Tool-bottom heights from just below ``top`` down to ``bottom``, falling: every floor, steps <= depth_of_cut.

    Rounded to 1 µm, as the G-code writes them, so a level and the tool's height compare exactly."""
    stops = sorted({round(bottom, 4)} | {float(f) for f in floors if bottom < f < top - EPS}, reverse=True)
    levels, z = [], top
    for stop in stops:
        n = max(1, math.ceil((z - stop) / depth_of_cut - 1e-9))
        levels.extend(z - (z - stop) * (i + 1) / n for i in range(n))
        z = stop
    return np.round(levels, 3)


def _section_planes(mesh: Mesh, levels: np.ndarray) -> np.ndarray:
    """Rising heights to cut sections at: just above each level, and either side of each vertex height."""
    zmin, zmax = mesh.bounds[0, 2], mesh.bounds[1, 2]
    heights = np.unique(np.round(mesh.vertices[:, 2], 4))
    if len(heights) > MAX_EXTRA_PLANES:
        heights = np.linspace(zmin, zmax, MAX_EXTRA_PLANES)
    planes = np.concatenate((levels + EPS, heights - EPS, heights + EPS))
    planes = np.unique(np.round(planes[(planes > zmin) & (planes < zmax)], 6))
    return planes


def sections(mesh: Mesh, levels: np.ndarray):
    """The part's sections at the planes ``_section_planes`` picks: (planes rising, LayerStack)."""
    planes = _section_planes(mesh, levels)
    stack = slice_mesh(mesh, planes, planes, np.full(len(planes), EPS), max_deviation=SECTION_DEVIATION)
    return planes, stack


def keep_areas(planes: np.ndarray, stack, levels: np.ndarray) -> list[list[np.ndarray]]:
    """For each level (falling), the union of every section above it (see the module docstring)."""
    keep, union = [], []
    p = len(planes) - 1
    for z in levels:  # falling: the union only grows
        while p >= 0 and planes[p] > z:
            union = cam_areas.boolean("union", union, stack.loops(p))
            p -= 1
        keep.append(union)
    return keep


def _fit_circle(loop: np.ndarray):
    """Least-squares circle through the loop's points (Kasa): centre, radius, largest radial error."""
    x, y = loop[:, 0], loop[:, 1]
    a = np.column_stack((x, y, np.ones(len(x))))
    b = x * x + y * y
    (c0, c1, c2), *_ = np.linalg.lstsq(a, b, rcond=None)
    cx, cy = c0 / 2, c1 / 2
    r = math.sqrt(max(c2 + cx * cx + cy * cy, 0.0))
    return cx, cy, r, float(np.max(np.abs(np.hypot(x - cx, y - cy) - r)))


def _circular_holes(loops) -> list[tuple[float, float, float]]:
    found = []
    for loop in loops:
        area = cam_areas.signed_area(loop)
        if area >= 0 or len(loop) < 6:
            continue  # an outline, or too few corners to call it round
        cx, cy, r, err = _fit_circle(loop)
        if r > 0 and err <= 0.01 + 0.01 * r and abs(-area / (math.pi * r * r) - 1) < 0.03:
            found.append((cx, cy, r))
    return found


def find_holes(planes: np.ndarray, stack, part_top: float, part_bottom: float) -> list[Hole]:
    """Vertical cylindrical holes open to the top (see the module docstring), largest first."""
    tol = 0.01
    open_runs: list[list] = []  # [cx, cy, r, lowest plane index, highest plane index]
    runs = []
    for p in range(len(planes)):
        circles = _circular_holes(stack.loops(p))
        still = []
        for cx, cy, r in circles:
            match = next((run for run in open_runs if abs(run[0] - cx) < tol and abs(run[1] - cy) < tol
                          and abs(run[2] - r) < tol), None)
            if match is None:
                match = [cx, cy, r, p, p]
            match[4] = p
            still.append(match)
        runs.extend(run for run in open_runs if run not in still)
        open_runs = still
    runs.extend(open_runs)
    holes = []
    last = len(planes) - 1
    for cx, cy, r, lo, hi in runs:
        covered = any(cam_areas.contains(stack.loops(q), (cx, cy)) for q in range(hi + 1, last + 1))
        if covered:
            continue  # a closed cavity or a cross hole: no drill reaches it from above
        top = part_top if hi == last else (planes[hi] + planes[hi + 1]) / 2
        through = lo == 0
        bottom = part_bottom if through else (planes[lo] + planes[lo - 1]) / 2
        holes.append(Hole(*(round(float(v), 4) for v in (cx, cy, 2 * r, top, bottom)), through))
    return sorted(holes, key=lambda h: (-h.diameter, h.x, h.y))
