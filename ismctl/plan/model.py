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
        used = self.vertices[np.unique(self.faces)] if len(self.faces) else self.vertices
        return np.array([used.min(axis=0), used.max(axis=0)])


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


@dataclass
class LayerPaths:
    """One layer's paths in print order, and the layer's cooling decisions."""

    index: int
    z_top: float
    height: float
    paths: list[ExtrusionPath]
    speed_factor: float = 1.0  # < 1 when the minimum layer time slows the layer down
    fan: float = 0.0  # part-cooling fan, 0..1
