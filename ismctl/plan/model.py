"""The types that pass between planning steps.

Geometry travels as contiguous numpy arrays so Numba kernels take it as is:
a set of closed loops is one ``(P, 2)`` float64 point array plus an int64
``start`` array (loop ``i`` is ``points[start[i]:start[i + 1]]``, the closing
point not repeated).  Loops are oriented: counter-clockwise outlines,
clockwise holes, so a loop's signed area says what it is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


MESH_SUFFIXES = (".stl", ".obj", ".3mf")  # the mesh files planning reads (case-insensitive)


class PlanError(ValueError):
    """Input that cannot be planned (bad mesh, impossible settings); the message names it."""


@dataclass(frozen=True)
class Mesh:
    """An indexed triangle mesh in millimetres; faces counter-clockwise seen from outside."""

    vertices: np.ndarray  # float64 (n, 3)
    faces: np.ndarray  # int32 (m, 3)
    name: str = ""

    def __post_init__(self) -> None:
        vertices = np.ascontiguousarray(self.vertices, dtype=np.float64)
        faces = np.ascontiguousarray(self.faces, dtype=np.int32)
        if vertices.ndim != 2 or vertices.shape[1] != 3:
            raise PlanError(f"mesh {self.name!r}: vertices must be (n, 3), got {vertices.shape}")
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise PlanError(f"mesh {self.name!r}: faces must be (m, 3), got {faces.shape}")
        object.__setattr__(self, "vertices", vertices)
        object.__setattr__(self, "faces", faces)

    @property
    def bounds(self) -> np.ndarray:
        """``[[xmin, ymin, zmin], [xmax, ymax, zmax]]`` of the vertices used by faces."""
        used = self.vertices
        if len(self.faces):
            mask = np.zeros(len(self.vertices), dtype=bool)
            mask[self.faces.ravel()] = True  # a mask, not np.unique: no sort of every corner
            if not mask.all():
                used = self.vertices[mask]
        columns = [used[:, axis] for axis in range(3)]  # per column: min over (n, 3) along axis 0 is slow
        return np.array([[c.min() for c in columns], [c.max() for c in columns]])


@dataclass(frozen=True)
class LayerStack:
    """Every layer's cross-section: oriented closed loops (see the module docstring)."""

    z_cut: np.ndarray  # float64 (L,): height of the slicing plane (middle of the layer)
    z_top: np.ndarray  # float64 (L,): top of the layer, where the nozzle prints it
    height: np.ndarray  # float64 (L,): layer thickness
    points: np.ndarray  # float64 (P, 2)
    loop_start: np.ndarray  # int64 (N + 1,)
    layer_start: np.ndarray  # int64 (L + 1,): layer k owns loops layer_start[k]:layer_start[k + 1]
    notes: tuple[str, ...] = ()  # what slicing had to mend (gaps closed, open chains dropped)

    def __len__(self) -> int:
        return len(self.z_cut)

    def loops(self, layer: int) -> list[np.ndarray]:
        """Layer ``layer``'s loops as (n, 2) views, outlines CCW and holes CW."""
        ls, pts = self.loop_start, self.points
        return [pts[ls[i]:ls[i + 1]] for i in range(self.layer_start[layer], self.layer_start[layer + 1])]


@dataclass
class LayerRegions:
    """What to print in one layer, as areas and wall loops (before ordering)."""

    index: int
    z_top: float
    height: float
    walls: list[list[np.ndarray]]  # walls[k]: loops of wall k (0 = outermost), oriented
    skin: list[np.ndarray]  # solid-fill area: oriented loops
    sparse: list[np.ndarray]  # sparse-infill area: oriented loops
    fill_lines: list[np.ndarray] = field(default_factory=list)  # (n, 2) polylines of solid fill, set by infill
    sparse_lines: list[np.ndarray] = field(default_factory=list)  # (n, 2) polylines of sparse fill, set by infill


class PathKind(enum.IntEnum):
    """What a path is, for speeds, G-code ``;TYPE:`` comments and preview colours."""

    SKIRT = 0
    BRIM = 1
    WALL_OUTER = 2
    WALL_INNER = 3
    SKIN = 4
    INFILL = 5
    TRAVEL = 6  # only in previews and timing; travel moves are implied between paths


@dataclass(frozen=True)
class ExtrusionPath:
    """One extruded polyline; a closed loop repeats its first point at the end."""

    kind: PathKind
    points: np.ndarray  # float64 (n, 2), n >= 2
    width: float  # mm
    speed: float  # mm/s


@dataclass(frozen=True)
class LayerPaths:
    """One layer's paths in print order, and the layer's cooling decisions.

    The paths are packed like loops are (module docstring): path ``i`` is
    ``points[path_start[i]:path_start[i + 1]]`` with ``kind[i]``, ``width[i]`` and
    ``speed[i]``, so a layer of thousands of fill lines is five arrays, not
    thousands of objects.  ``path(i)``/``paths`` give them one by one;
    ``from_paths`` builds a layer from ExtrusionPaths.
    """

    index: int
    z_top: float
    height: float
    points: np.ndarray  # float64 (P, 2)
    path_start: np.ndarray  # int64 (N + 1,), path_start[0] == 0, path_start[-1] == P
    kind: np.ndarray  # int64 (N,): PathKind of each path
    width: np.ndarray  # float64 (N,): mm
    speed: np.ndarray  # float64 (N,): mm/s, before the layer's slow-down
    speed_factor: float = 1.0  # < 1 when the minimum layer time slows the layer down
    fan: float = 0.0  # part-cooling fan, 0..1

    def __post_init__(self) -> None:
        where = f"layer {self.index} paths"
        for name, dtype in (("points", np.float64), ("path_start", np.int64), ("kind", np.int64),
                            ("width", np.float64), ("speed", np.float64)):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=dtype))
        n = len(self.path_start) - 1
        if self.points.ndim != 2 or self.points.shape[1] != 2:
            raise PlanError(f"{where}: points must be (P, 2), got shape {self.points.shape}")
        if (self.path_start.ndim != 1 or n < 0 or self.path_start[0] != 0 or self.path_start[-1] != len(self.points)
                or (np.diff(self.path_start) < 0).any()):
            raise PlanError(f"{where}: path_start must rise from 0 to {len(self.points)}, got {self.path_start}")
        for name in ("kind", "width", "speed"):
            if getattr(self, name).shape != (n,):
                raise PlanError(f"{where}: {name} has shape {getattr(self, name).shape}, expected ({n},)")

    @classmethod
    def from_paths(cls, index: int, z_top: float, height: float, paths: list[ExtrusionPath],
                   speed_factor: float = 1.0, fan: float = 0.0) -> "LayerPaths":
        points = [np.asarray(p.points, dtype=np.float64) for p in paths]
        for i, pts in enumerate(points):
            if pts.ndim != 2 or pts.shape[1] != 2:
                raise PlanError(f"layer {index} path {i}: points must be (n, 2), got shape {pts.shape}")
        start = np.concatenate(([0], np.cumsum([len(p) for p in points], dtype=np.int64)))
        return cls(index, z_top, height, np.concatenate(points) if points else np.zeros((0, 2)), start,
                   [p.kind for p in paths], [p.width for p in paths], [p.speed for p in paths], speed_factor, fan)

    def __len__(self) -> int:
        return len(self.path_start) - 1

    def path(self, i: int) -> ExtrusionPath:
        """Path ``i`` (its points a view into ``points``)."""
        return ExtrusionPath(PathKind(int(self.kind[i])), self.points[self.path_start[i]:self.path_start[i + 1]],
                             float(self.width[i]), float(self.speed[i]))

    @property
    def paths(self) -> list[ExtrusionPath]:
        return [self.path(i) for i in range(len(self))]
