"""Material-removal verification of a mill program on a Z-map (height field).

The stock box is rasterised at a grid (0.1 mm by default): one material height per
cell, sampled at the cell centre.  Every move of the program, feed and rapid, sweeps
the tool through it (:mod:`ismctl.plan.zmap_kernels`: exact lowest point of a flat or
ball end mill over each cell centre, ramps and helices included) and the part's
top surface is rasterised on the same grid as the target.  Comparing the two says
what the program did to the part:

* **gouges**: cells cut below the target by more than the tolerance — the part is
  damaged there (max depth, area; per op that cut them: its source line, cells,
  deepest depth and place, extent);
* **collisions**: rapid moves (G0) that removed material — a rapid is not a cut;
* **material left**: cells above the target by more than the tolerance (volume, max);
  cells outside the part's outline have the part's bottom as target (the stock
  below it is the base the part stands on, which no 2.5D program cuts away);
* **removed volume** of stock.

Positions are work coordinates (see :mod:`ismctl.grbl_gcode`): the mesh and the stock
must be in the program's work coordinate system.  Moves whose ends the host cannot
know (after ``$H``, ``G28``, ``G53``...) are not simulated and are counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..grbl_gcode import MoveArrays
from ..grbl_gcode import moves as program_moves
from ..program import Program
from . import zmap_kernels
from .model import Mesh, PlanError

DEFAULT_GRID_MM = 0.1
DEFAULT_TOLERANCE_MM = 0.05
MAX_CELLS = 50_000_000  # ~0.4 GB per float64 map: a bigger grid is a mistake, not a job
COLLISION_MM = 1e-3  # a rapid that removes less than this only grazed the surface


@dataclass(frozen=True)
class ToolShape:
    """What the Z-map needs of a cutter: ``shape`` "flat" or "ball", ``diameter`` mm."""

    shape: str
    diameter: float
    name: str = ""

    def __post_init__(self) -> None:
        if self.shape not in ("flat", "ball"):
            raise PlanError(f"tool {self.name or self.shape!r}: the Z-map models flat and ball end mills, not {self.shape!r}")
        if not (self.diameter > 0 and math.isfinite(self.diameter)):
            raise PlanError(f"tool {self.name or self.shape!r}: diameter must be > 0, got {self.diameter!r}")

    @property
    def radius(self) -> float:
        return self.diameter / 2


@dataclass(frozen=True)
class Stock:
    """The raw block, an axis-aligned box in work coordinates (mm)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def __post_init__(self) -> None:
        try:  # plain floats: the kernels compile once per argument type
            object.__setattr__(self, "lo", tuple(float(v) for v in self.lo))
            object.__setattr__(self, "hi", tuple(float(v) for v in self.hi))
        except (TypeError, ValueError):
            raise PlanError(f"stock {self.lo}..{self.hi}: corners must be numbers") from None
        if len(self.lo) != 3 or len(self.hi) != 3 or not all(math.isfinite(v) for v in (*self.lo, *self.hi)):
            raise PlanError(f"stock {self.lo}..{self.hi}: corners must be three finite numbers each")
        if not all(h > lo for lo, h in zip(self.lo, self.hi)):
            raise PlanError(f"stock {self.lo}..{self.hi}: every side must have a positive length")

    @classmethod
    def around(cls, mesh: Mesh, margin: float = 0.0) -> "Stock":
        """The mesh's bounding box grown by ``margin`` in X, Y and on top (the bottom stays:
        the part sits on the stock's bottom)."""
        lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
        return cls((lo[0] - margin, lo[1] - margin, lo[2]), (hi[0] + margin, hi[1] + margin, hi[2] + margin))


@dataclass(frozen=True)
class Grid:
    """Cell (i, j) has its centre at ``x0 + (i + 0.5) * cell``, ``y0 + (j + 0.5) * cell``."""

    x0: float
    y0: float
    cell: float
    nx: int
    ny: int

    @classmethod
    def covering(cls, stock: Stock, cell: float) -> "Grid":
        if not (cell > 0 and math.isfinite(cell)):
            raise PlanError(f"grid cell must be > 0 mm, got {cell!r}")
        nx = max(1, math.ceil((stock.hi[0] - stock.lo[0]) / cell - 1e-9))
        ny = max(1, math.ceil((stock.hi[1] - stock.lo[1]) / cell - 1e-9))
        if nx * ny > MAX_CELLS:
            raise PlanError(f"a {cell:g} mm grid over the stock is {nx} x {ny} cells (limit {MAX_CELLS}); use a coarser grid")
        return cls(stock.lo[0], stock.lo[1], cell, nx, ny)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.ny, self.nx)

    def centre(self, j: int, i: int) -> tuple[float, float]:
        return (self.x0 + (i + 0.5) * self.cell, self.y0 + (j + 0.5) * self.cell)


@dataclass
class Gouge:
    """The cells one op left below the part (each cell is blamed on the op that cut it last)."""

    op: int
    line: int
    command: str
    cells: int
    area_mm2: float
    max_depth_mm: float
    deepest_at: tuple[float, float]  # XY: the middle of its deepest cells
    box: tuple[tuple[float, float], tuple[float, float]]  # XY corners of its cells' centres


@dataclass
class Collision:
    op: int
    line: int
    command: str
    depth: float  # mm of material the rapid removed at its deepest


@dataclass
class ZmapReport:
    grid: Grid
    stock: Stock
    tool: ToolShape
    tolerance: float
    height: np.ndarray  # (ny, nx) material top after the program
    target: np.ndarray  # (ny, nx) the part's top surface, its bottom (or the stock's, if lower) outside it
    cutter: np.ndarray  # (ny, nx) op that last lowered the cell, -1 untouched
    gouge: np.ndarray  # (ny, nx) bool
    segments: int
    unplaced_moves: int
    removed_mm3: float
    left_mm3: float
    left_max_mm: float
    gouge_max_mm: float
    gouge_area_mm2: float
    part_above_stock_mm: float  # > 0: the part sticks out of the stock (the stock given is too small)
    gouges: list[Gouge] = field(default_factory=list)  # by op, deepest first
    collisions: list[Collision] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.gouge.any() and not self.collisions

    def summary(self) -> dict:
        """Everything but the maps, JSON-ready."""
        return {
            "clean": self.clean,
            "tool": {"shape": self.tool.shape, "diameter": self.tool.diameter, "name": self.tool.name},
            "stock": {"lo": list(self.stock.lo), "hi": list(self.stock.hi)},
            "grid": {"cell_mm": self.grid.cell, "nx": self.grid.nx, "ny": self.grid.ny},
            "tolerance_mm": self.tolerance,
            "segments": self.segments,
            "unplaced_moves": self.unplaced_moves,
            "removed_mm3": round(self.removed_mm3, 3),
            "part_above_stock_mm": round(self.part_above_stock_mm, 4),
            "left": {"volume_mm3": round(self.left_mm3, 3), "max_mm": round(self.left_max_mm, 4)},
            "gouges": {"cells": int(self.gouge.sum()), "area_mm2": round(self.gouge_area_mm2, 4),
                       "max_depth_mm": round(self.gouge_max_mm, 4),
                       "by_op": [{"op": g.op, "line": g.line, "command": g.command, "cells": g.cells,
                                  "area_mm2": round(g.area_mm2, 4), "max_depth_mm": round(g.max_depth_mm, 4),
                                  "deepest_at": [round(v, 4) for v in g.deepest_at],
                                  "box": [[round(v, 4) for v in corner] for corner in g.box]}
                                 for g in self.gouges]},
            "collisions": [{"op": c.op, "line": c.line, "command": c.command, "depth_mm": round(c.depth, 4)}
                           for c in self.collisions],
        }


def target_surface(mesh: Mesh, grid: Grid, floor: float) -> np.ndarray:
    """The mesh's top-surface height at each cell centre; ``floor`` where the mesh is not."""
    target = np.full(grid.shape, -np.inf)
    triangles = np.ascontiguousarray(mesh.vertices[mesh.faces], dtype=np.float64)
    zmap_kernels.top_surface(target, grid.x0, grid.y0, grid.cell, triangles)
    return np.maximum(target, floor)


def clip_to_box(start: np.ndarray, end: np.ndarray, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Each 3D segment cut to the part of it over the XY box ``lo``..``hi`` (Liang-Barsky).

    A segment that leaves the box is swept from where it enters to where it leaves: a cell's
    distance to a segment that reaches a billion millimetres away loses the micrometres that
    decide a gouge.  Segments inside, or missing the box, are returned as they are.
    """
    start, end = np.array(start, dtype=np.float64), np.array(end, dtype=np.float64)
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    leaving = np.flatnonzero(((start[:, :2] < lo) | (start[:, :2] > hi) | (end[:, :2] < lo) | (end[:, :2] > hi)).any(axis=1))
    a, d = start[leaving], end[leaving] - start[leaving]
    t0, t1 = np.zeros(len(leaving)), np.ones(len(leaving))
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis in (0, 1):
            for bound, sign in ((lo[axis], -1.0), (hi[axis], 1.0)):
                p, q = sign * d[:, axis], sign * (bound - a[:, axis])  # inside where p * t <= q
                t = q / p
                t0 = np.where(p < 0, np.maximum(t0, t), t0)
                t1 = np.where(p > 0, np.minimum(t1, t), t1)
    cut = t0 <= t1
    rows = leaving[cut]
    start[rows] = a[cut] + t0[cut, None] * d[cut]
    end[rows] = a[cut] + t1[cut, None] * d[cut]
    return start, end


def simulate(program: Program, stock: Stock, tool: ToolShape, grid: Grid, path: MoveArrays | None = None):
    """Sweep every placed move through the stock: -> (height, cutter, MoveArrays, max_cut per segment).
    ``path``: the program's moves when the caller has them (``parse_with_path``)."""
    if path is None:
        path = program_moves(program)
    height = np.full(grid.shape, float(stock.hi[2]))
    cutter = zmap_kernels.empty_cutter(grid.shape)
    max_cut = np.zeros(len(path))
    reach = float(tool.radius) + grid.cell
    start, end = clip_to_box(path.start, path.end, (grid.x0 - reach, grid.y0 - reach),
                             (grid.x0 + grid.nx * grid.cell + reach, grid.y0 + grid.ny * grid.cell + reach))
    zmap_kernels.sweep(height, cutter, float(grid.x0), float(grid.y0), float(grid.cell), start, end,
                       path.op, float(tool.radius), tool.shape == "ball", stock.lo[2], max_cut)
    return height, cutter, path, max_cut


def verify(program: Program, mesh: Mesh, stock: Stock, tool: ToolShape,
           cell: float = DEFAULT_GRID_MM, tolerance: float = DEFAULT_TOLERANCE_MM,
           path: MoveArrays | None = None) -> ZmapReport:
    """Run ``program`` (its moves: ``path``, or parsed again) through the stock and compare the
    result with ``mesh``'s top surface."""
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise PlanError(f"tolerance must be >= 0 mm, got {tolerance!r}")
    grid = Grid.covering(stock, cell)
    floor = max(float(stock.lo[2]), float(mesh.vertices[:, 2].min())) if len(mesh.vertices) else float(stock.lo[2])
    target = target_surface(mesh, grid, floor)
    height, cutter, path, max_cut = simulate(program, stock, tool, grid, path)
    area = grid.cell * grid.cell
    below = target - height
    gouge = (below > tolerance) & (cutter >= 0)  # where nothing cut, the stock was short, not the program wrong
    above = height - target
    left = above > tolerance
    report = ZmapReport(
        grid=grid, stock=stock, tool=tool, tolerance=tolerance, height=height, target=target, cutter=cutter,
        gouge=gouge, segments=len(path), unplaced_moves=path.unplaced,
        removed_mm3=float((stock.hi[2] - height).sum() * area),
        left_mm3=float(above[left].sum() * area), left_max_mm=float(above.max(initial=0.0)),
        gouge_max_mm=float(below[gouge].max(initial=0.0)), gouge_area_mm2=float(gouge.sum() * area),
        part_above_stock_mm=max(0.0, float(target.max()) - stock.hi[2]),
        gouges=_gouges_by_op(program, grid, gouge, below, cutter))
    hits = np.flatnonzero(path.rapid & (max_cut > COLLISION_MM))
    worst: dict[int, float] = {}
    for k in hits.tolist():
        op = int(path.op[k])
        worst[op] = max(worst.get(op, 0.0), float(max_cut[k]))
    report.collisions = [Collision(op, int(program.source_line[op]), program.commands[op], depth)
                         for op, depth in sorted(worst.items())]
    return report


def _gouges_by_op(program: Program, grid: Grid, gouge: np.ndarray, below: np.ndarray, cutter: np.ndarray) -> list[Gouge]:
    """Group the gouged cells by the op that cut them (one sort, not one pass per op)."""
    cells = np.flatnonzero(gouge.ravel())
    if not len(cells):
        return []
    ops, depth = cutter.ravel()[cells], below.ravel()[cells]
    order = np.lexsort((-depth, ops))  # by op, deepest first within an op
    cells, ops, depth = cells[order], ops[order], depth[order]
    starts = np.flatnonzero(np.r_[True, ops[1:] != ops[:-1]])
    j, i = np.divmod(cells, grid.nx)
    x, y = grid.x0 + (i + 0.5) * grid.cell, grid.y0 + (j + 0.5) * grid.cell
    counts = np.diff(np.r_[starts, len(cells)])
    lo_x, hi_x = np.minimum.reduceat(x, starts), np.maximum.reduceat(x, starts)
    lo_y, hi_y = np.minimum.reduceat(y, starts), np.maximum.reduceat(y, starts)
    out = []
    for k, first in enumerate(starts.tolist()):
        op = int(ops[first])
        # the deepest place: the middle of the cells as deep as the deepest (a flat-bottomed gouge has many)
        deepest = first + int(np.searchsorted(-depth[first:first + counts[k]], -depth[first] + 1e-6, "right"))
        out.append(Gouge(op, int(program.source_line[op]), program.commands[op], int(counts[k]),
                         float(counts[k] * grid.cell * grid.cell), float(depth[first]),
                         (float(x[first:deepest].mean()), float(y[first:deepest].mean())),
                         ((float(lo_x[k]), float(lo_y[k])), (float(hi_x[k]), float(hi_y[k])))))
    return sorted(out, key=lambda g: -g.max_depth_mm)
