"""Checks and safe repairs between loading a mesh and slicing it.

``prepare_mesh`` rejects what cannot be printed as meant (no faces, NaN
coordinates, a size that looks like the wrong unit, holes it cannot close)
with a ``PlanError`` that names the mesh and the problem, and makes only
repairs that do not change the part: weld identical corners, drop faces
without area, merge boundary vertices closer than a gap tolerance (no vertex
moves further than it), drop duplicate faces, and orient faces so every shell
faces outward.  Each repair is counted in the ``MeshReport``.  A mesh whose
every edge has two faces running it opposite ways (the usual case) is
recognised in one pass and skips the edge repairs and the orientation flood;
only its shells' outsides are checked.

Orientation limitation: a shell is taken as a void (faces inward) when a point
of it is inside an odd number of other shells (ray parity); shells that touch
or cross each other can be judged wrongly, and an open shell's volume sign is
only as good as its holes are small.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from .mesh_topology import face_edges, oriented_shells, weld_exact
from .model import Mesh, PlanError

DEFAULT_BUILD_VOLUME = (220.0, 220.0, 250.0)
GAP_TOLERANCE = 1e-3  # mm: well above float32 STL rounding (~2e-5 mm at 250 mm), far below a line width
_ZERO_AREA = 1e-12  # a face is flat when its height is below this fraction of its longest edge
# A ray direction no mesh is aligned with, so ray hits on edges and vertices are unlikely.
_RAY = np.array([1.0, 0.3183098861837907, 0.2078795763507619]) / np.linalg.norm([1.0, 0.3183098861837907, 0.2078795763507619])


@dataclass
class MeshReport:
    """What ``prepare_mesh`` found and changed."""

    name: str
    welded_vertices: int = 0  # corners merged into an identical one
    degenerate_removed: int = 0  # faces with a repeated corner or no area
    duplicates_removed: int = 0  # faces with the same corners as another face
    gaps_closed: int = 0  # boundary vertices merged into one within the gap tolerance
    faces_flipped: int = 0
    shells: int = 0  # face groups connected across manifold edges
    voids: int = 0  # shells inside another, faced inward
    open_edges: int = 0  # left after repair (only with allow_open)
    non_manifold_edges: int = 0  # edges with more than two faces
    orientation_conflicts: int = 0  # manifold edges whose faces could not be made to agree
    unused_vertices_removed: int = 0
    bounds: np.ndarray = field(default_factory=lambda: np.zeros((2, 3)))
    gap_tolerance: float = GAP_TOLERANCE

    def messages(self) -> list[str]:
        """One sentence per repair made or problem left, for the user."""
        counted = [
            (self.welded_vertices, "merged {n} duplicate vertex corners"),
            (self.degenerate_removed, "removed {n} degenerate faces (repeated corner or zero area)"),
            (self.duplicates_removed, "removed {n} duplicate faces"),
            (self.gaps_closed, f"closed gaps by merging {{n}} boundary vertices within {self.gap_tolerance:g} mm"),
            (self.faces_flipped, "flipped {n} faces to face outward"),
            (self.voids, "kept {n} inner shells as voids (faced inward)"),
            (self.unused_vertices_removed, "dropped {n} unused vertices"),
            (self.open_edges, "warning: {n} open edges left (the mesh is not closed)"),
            (self.non_manifold_edges, "warning: {n} non-manifold edges (more than two faces: parts touching)"),
            (self.orientation_conflicts, "warning: {n} edges could not be oriented consistently"),
        ]
        return [text.format(n=count) for count, text in counted if count]


def prepare_mesh(
    mesh: Mesh,
    build_volume: tuple[float, float, float] = DEFAULT_BUILD_VOLUME,
    allow_open: bool = False,
    gap_tolerance: float = GAP_TOLERANCE,
) -> tuple[Mesh, MeshReport]:
    """Check ``mesh`` and make the safe repairs; the returned mesh is welded, closed and outward."""
    label = f"mesh {mesh.name or '(unnamed)'!r}"
    vertices, faces = mesh.vertices, mesh.faces
    report = MeshReport(mesh.name, gap_tolerance=gap_tolerance)
    if len(faces) == 0:
        raise PlanError(f"{label} has no faces")
    if faces.min() < 0 or faces.max() >= len(vertices):
        bad = int(np.argmax(((faces < 0) | (faces >= len(vertices))).any(axis=1)))
        raise PlanError(f"{label}: face {bad} uses a vertex index outside 0..{len(vertices) - 1}")
    welded, welded_faces = weld_exact(vertices, faces)  # NaNs weld like any bits; checked just below
    if not np.isfinite(welded).all():
        bad_vertex = ~np.isfinite(welded).all(axis=1)
        bad_face = bad_vertex[welded_faces].any(axis=1)
        if bad_face.any():
            raise PlanError(
                f"{label}: {int(bad_face.sum())} faces have NaN or infinite coordinates "
                f"(first: face {int(np.argmax(bad_face))})"
            )
    report.welded_vertices = len(vertices) - len(welded)
    vertices, faces, report.unused_vertices_removed = _compact(welded, welded_faces)
    bounds = _bounds(vertices)
    _check_size(label, bounds, build_volume)

    faces, report.degenerate_removed = _drop_degenerate(vertices, faces)
    if len(faces) == 0:
        raise PlanError(f"{label}: nothing left after removing {report.degenerate_removed} degenerate faces")

    oriented = oriented_shells(faces, len(vertices))
    if oriented is not None:  # closed and consistently oriented (the usual case): nothing to mend but the outside
        shell, n_shells = oriented
        flip = np.zeros(len(faces), bool)
    else:
        faces, shell, flip, n_shells = _mend_edges(label, vertices, faces, report, allow_open, gap_tolerance)
    faces = _orient(vertices, faces, shell, flip, n_shells, 0.5 * (bounds[0] + bounds[1]), report)
    if report.degenerate_removed or oriented is None:  # faces were dropped or merged: vertices may be unused
        vertices, faces, unused = _compact(vertices, faces)
        report.unused_vertices_removed += unused
        bounds = _bounds(vertices) if unused else bounds
    report.bounds = bounds
    return Mesh(vertices, faces, mesh.name), report


def _mend_edges(label, vertices, faces, report: MeshReport, allow_open: bool, gap_tolerance: float):
    """Close gaps, drop duplicate faces, refuse open edges (unless allowed), and flood the orientation.

    Returns (faces, shell of each face, flip of each face, number of shells).
    """
    edge_of_face, edge_vertices, uses, _ = face_edges(faces, len(vertices))
    if (uses == 1).any():
        faces, report.gaps_closed = _close_gaps(vertices, faces, edge_vertices[uses == 1], gap_tolerance)
        if report.gaps_closed:
            faces, dropped = _drop_degenerate(vertices, faces)
            report.degenerate_removed += dropped
            edge_of_face, edge_vertices, uses, _ = face_edges(faces, len(vertices))
    if (uses > 2).any():
        keep = _first_of_duplicates(faces, edge_of_face, uses)
        if keep is not None:
            report.duplicates_removed = len(faces) - len(keep)
            faces = faces[keep]
            edge_of_face, edge_vertices, uses, _ = face_edges(faces, len(vertices))

    open_edges = np.flatnonzero(uses == 1)
    report.open_edges = len(open_edges)
    report.non_manifold_edges = int((uses > 2).sum())
    if len(open_edges) and not allow_open:
        where = vertices[edge_vertices[open_edges[0]]]
        raise PlanError(
            f"{label} is not closed: {len(open_edges)} open edges after closing gaps up to {gap_tolerance:g} mm "
            f"(one runs from {_xyz(where[0])} to {_xyz(where[1])})"
        )

    shell, flip, n_shells, report.orientation_conflicts = _flood_orientation(faces, edge_of_face, uses)
    return faces, shell, flip, n_shells


def _xyz(p: np.ndarray) -> str:
    return "({:.4g}, {:.4g}, {:.4g})".format(*p)


def _used(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    used = np.zeros(n_vertices, bool)
    used[faces.ravel()] = True
    return used


def _bounds(vertices: np.ndarray) -> np.ndarray:
    """``[[xmin, ymin, zmin], [xmax, ymax, zmax]]``, column by column (several times faster than ``min(axis=0)``)."""
    return np.array([[vertices[:, d].min() for d in range(3)], [vertices[:, d].max() for d in range(3)]])


def _check_size(label: str, bounds: np.ndarray, build_volume) -> None:
    """Refuse sizes that suggest the file's unit is not millimetres, with the likely factor."""
    extent = bounds[1] - bounds[0]
    volume = np.asarray(build_volume, dtype=np.float64)
    size = "x".join(f"{e:.4g}" for e in extent)
    if extent.max() < 1.0:
        hint = "looks like metres: scale by 1000" if (extent * 1000 <= volume).all() else "check its unit"
        raise PlanError(f"{label} is only {size} mm (largest extent under 1 mm); {hint}")
    if (extent > volume).any():
        vol = "x".join(f"{v:g}" for v in volume)
        for factor, unit in ((0.1, "0.1 mm"), (0.01, "0.01 mm"), (0.001, "micrometres")):
            if (extent * factor <= volume).all():
                hint = f"if it is in {unit} units, scale by {factor:g}"
                break
        else:
            hint = "it is far too large for any unit"
        raise PlanError(f"{label} is {size} mm, larger than the {vol} mm build volume; {hint}")


def _drop_degenerate(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, int]:
    degenerate = _degenerate_faces(vertices, faces, _ZERO_AREA)
    if not degenerate.any():
        return faces, 0
    return faces[~degenerate], int(degenerate.sum())


@njit(cache=True, nogil=True)
def _degenerate_faces(vertices, faces, zero_area):
    """Faces with a repeated corner, or whose height is below ``zero_area`` times their longest edge."""
    out = np.zeros(faces.shape[0], np.bool_)
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        if a == b or b == c or a == c:
            out[f] = True
            continue
        u0 = vertices[b, 0] - vertices[a, 0]
        u1 = vertices[b, 1] - vertices[a, 1]
        u2 = vertices[b, 2] - vertices[a, 2]
        w0 = vertices[c, 0] - vertices[a, 0]
        w1 = vertices[c, 1] - vertices[a, 1]
        w2 = vertices[c, 2] - vertices[a, 2]
        x = u1 * w2 - u2 * w1
        y = u2 * w0 - u0 * w2
        z = u0 * w1 - u1 * w0
        longest = max(u0 * u0 + u1 * u1 + u2 * u2, w0 * w0 + w1 * w1 + w2 * w2,
                      (w0 - u0) ** 2 + (w1 - u1) ** 2 + (w2 - u2) ** 2)
        # |cross| = 2 * area = longest edge * height
        out[f] = x * x + y * y + z * z <= (zero_area * longest) ** 2
    return out


def _close_gaps(vertices, faces, open_edge_vertices, tolerance):
    """Merge vertices of open edges lying within ``tolerance`` of each other; (faces, vertices merged)."""
    boundary = np.unique(open_edge_vertices)
    target = _cluster_within(vertices[boundary], float(tolerance))
    moved = target != np.arange(len(boundary))
    if not moved.any():
        return faces, 0
    remap = np.arange(len(vertices), dtype=np.int32)
    remap[boundary] = boundary[target]
    return remap[faces], int(moved.sum())


@njit(cache=True, nogil=True)
def _cluster_within(points, tolerance):
    """For each point, the first earlier point within ``tolerance`` that is itself kept, else itself.

    Greedy, in input order, through a hash grid of cell size ``tolerance``: a
    point only ever joins a kept point, so none moves further than the tolerance.
    """
    n = points.shape[0]
    size = 1
    while size < 2 * n + 2:
        size *= 2
    cell_key = np.empty((size, 3), np.int64)
    head = np.full(size, -1, np.int64)  # first kept point of the cell in this slot
    next_in_cell = np.full(n, -1, np.int64)
    target = np.arange(n)
    cells = np.floor(points / tolerance).astype(np.int64)
    tol2 = tolerance * tolerance
    for i in range(n):
        best = -1
        best_d2 = tol2
        for dx in range(-1, 2):
            for dy in range(-1, 2):
                for dz in range(-1, 2):
                    slot = _find_cell(cell_key, head, cells[i, 0] + dx, cells[i, 1] + dy, cells[i, 2] + dz)
                    if head[slot] < 0:
                        continue
                    j = head[slot]
                    while j >= 0:
                        d2 = ((points[i, 0] - points[j, 0]) ** 2 + (points[i, 1] - points[j, 1]) ** 2
                              + (points[i, 2] - points[j, 2]) ** 2)
                        if d2 <= best_d2 and (best < 0 or d2 < best_d2 or j < best):
                            best = j
                            best_d2 = d2
                        j = next_in_cell[j]
        if best >= 0:
            target[i] = best
        else:
            slot = _find_cell(cell_key, head, cells[i, 0], cells[i, 1], cells[i, 2])
            if head[slot] < 0:
                cell_key[slot, 0] = cells[i, 0]
                cell_key[slot, 1] = cells[i, 1]
                cell_key[slot, 2] = cells[i, 2]
            next_in_cell[i] = head[slot]
            head[slot] = i
    return target


@njit(cache=True, nogil=True)
def _find_cell(cell_key, head, x, y, z):
    """The slot of cell (x, y, z) in the open-addressing table, or the empty slot where it would go."""
    mask = head.shape[0] - 1
    slot = ((x * 73856093) ^ (y * 19349663) ^ (z * 83492791)) & mask
    while head[slot] >= 0:
        if cell_key[slot, 0] == x and cell_key[slot, 1] == y and cell_key[slot, 2] == z:
            return slot
        slot = (slot + 1) & mask
    return slot


def _first_of_duplicates(faces, edge_of_face, uses):
    """Indices of faces to keep when some share all three corners (only those on >2-face edges can)."""
    face_uses = uses[edge_of_face]
    candidates = np.flatnonzero((face_uses >= 2).all(axis=1) & (face_uses > 2).any(axis=1))
    if len(candidates) < 2:
        return None
    _, first = np.unique(np.sort(faces[candidates], axis=1), axis=0, return_index=True)
    if len(first) == len(candidates):
        return None
    drop = np.ones(len(faces), bool)
    drop[candidates] = False
    drop[candidates[first]] = True
    return np.flatnonzero(drop)


@njit(cache=True, nogil=True)
def _flood_orientation(faces, edge_of_face, uses):
    """Group faces into shells across manifold edges and flip them to agree with each shell's first face.

    Returns (shell of each face, flip of each face, number of shells, edges where
    the flips disagree, i.e. a non-orientable surface).
    """
    m = faces.shape[0]
    n_edges = uses.shape[0]
    edge_face = np.full((n_edges, 2), -1, np.int32)
    edge_up = np.zeros((n_edges, 2), np.bool_)  # does that face run the edge from low to high vertex
    for f in range(m):
        for k in range(3):
            e = edge_of_face[f, k]
            if uses[e] == 2:
                side = 0 if edge_face[e, 0] < 0 else 1
                edge_face[e, side] = f
                edge_up[e, side] = faces[f, k] < faces[f, (k + 1) % 3]
    shell = np.full(m, -1, np.int32)
    flip = np.zeros(m, np.bool_)
    queue = np.empty(m, np.int32)
    n_shells = 0
    conflicts = 0
    for seed in range(m):
        if shell[seed] >= 0:
            continue
        shell[seed] = n_shells
        queue[0] = seed
        head, tail = 0, 1
        while head < tail:
            f = queue[head]
            head += 1
            for k in range(3):
                e = edge_of_face[f, k]
                if uses[e] != 2:
                    continue
                side = 1 if edge_face[e, 0] == f else 0
                g = edge_face[e, side]
                # Directions along the edge must differ once flips are applied.
                want_flip = edge_up[e, side] == (edge_up[e, 1 - side] != flip[f])
                if shell[g] < 0:
                    shell[g] = n_shells
                    flip[g] = want_flip
                    queue[tail] = g
                    tail += 1
                elif flip[g] != want_flip and f < g:
                    conflicts += 1
        n_shells += 1
    return shell, flip, n_shells, conflicts


@njit(cache=True, nogil=True)
def _shell_volumes(vertices, faces, shell, n_shells, origin):
    """Signed volume of each shell (sum of origin-based tetrahedra, positive when faces point out)."""
    out = np.zeros(n_shells)
    ox, oy, oz = origin[0], origin[1], origin[2]
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        ax, ay, az = vertices[a, 0] - ox, vertices[a, 1] - oy, vertices[a, 2] - oz
        bx, by, bz = vertices[b, 0] - ox, vertices[b, 1] - oy, vertices[b, 2] - oz
        cx, cy, cz = vertices[c, 0] - ox, vertices[c, 1] - oy, vertices[c, 2] - oz
        out[shell[f]] += (ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)) / 6.0
    return out


@njit(cache=True, nogil=True)
def _ray_crossings(vertices, faces, shell, points, candidate_start, candidates, direction):
    """crossings[s, t]: faces of shell s hit by the ray from points[t] along ``direction``.

    Only the pairs listed (shells t of candidates[candidate_start[s]:candidate_start[s + 1]]) are tested.
    """
    n_shells = points.shape[0]
    crossings = np.zeros((n_shells, n_shells), np.int64)
    dx, dy, dz = direction[0], direction[1], direction[2]
    for f in range(faces.shape[0]):
        s = shell[f]
        if candidate_start[s] == candidate_start[s + 1]:
            continue
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        px, py, pz = vertices[i0, 0], vertices[i0, 1], vertices[i0, 2]
        e1x, e1y, e1z = vertices[i1, 0] - px, vertices[i1, 1] - py, vertices[i1, 2] - pz
        e2x, e2y, e2z = vertices[i2, 0] - px, vertices[i2, 1] - py, vertices[i2, 2] - pz
        hx, hy, hz = dy * e2z - dz * e2y, dz * e2x - dx * e2z, dx * e2y - dy * e2x  # direction x e2
        det = e1x * hx + e1y * hy + e1z * hz
        if det == 0.0:
            continue
        for idx in range(candidate_start[s], candidate_start[s + 1]):  # Moeller-Trumbore
            t = candidates[idx]
            qx, qy, qz = points[t, 0] - px, points[t, 1] - py, points[t, 2] - pz
            u = (qx * hx + qy * hy + qz * hz) / det
            if u < 0.0 or u > 1.0:
                continue
            rx, ry, rz = qy * e1z - qz * e1y, qz * e1x - qx * e1z, qx * e1y - qy * e1x  # q x e1
            v = (dx * rx + dy * ry + dz * rz) / det
            if v < 0.0 or u + v > 1.0:
                continue
            if (e2x * rx + e2y * ry + e2z * rz) / det > 0.0:
                crossings[s, t] += 1
    return crossings


def _orient(vertices, faces, shell, flip, n_shells, origin, report: MeshReport) -> np.ndarray:
    """Faces flipped (``flip`` makes each shell consistent) so each shell faces outward, or inward inside another."""
    report.shells = n_shells
    consistent = _flipped(faces, flip)
    volume = _shell_volumes(vertices, consistent, shell, n_shells, origin)
    inside = _shells_inside(vertices, consistent, shell, n_shells)
    del consistent
    report.voids = int(inside.sum())
    wrong = (volume < 0) != inside
    if wrong.any():
        flip ^= wrong[shell]
    report.faces_flipped = int(flip.sum())
    return _flipped(faces, flip)


def _flipped(faces, flip):
    """``faces`` with the ``flip`` ones turned over (the same array when none is)."""
    if not flip.any():
        return faces
    out = faces.copy()
    out[flip] = out[flip][:, [0, 2, 1]]
    return out


def _shells_inside(vertices, faces, shell, n_shells) -> np.ndarray:
    """For each shell, whether a point of it lies inside an odd number of other shells."""
    if n_shells == 1:
        return np.zeros(1, bool)
    first_face, lo, hi = _shell_extents(vertices, faces, shell, n_shells)
    points = vertices[faces[first_face]].mean(axis=1)
    # candidate[s, t]: point of shell t is within shell s's box
    candidate = ((points[None, :, :] >= lo[:, None, :]) & (points[None, :, :] <= hi[:, None, :])).all(axis=2)
    np.fill_diagonal(candidate, False)
    rows, cols = np.nonzero(candidate)
    start = np.searchsorted(rows, np.arange(n_shells + 1))
    crossings = _ray_crossings(vertices, faces, shell, points, start, cols.astype(np.int64), _RAY)
    return (crossings % 2).sum(axis=0) % 2 == 1


@njit(cache=True, nogil=True)
def _shell_extents(vertices, faces, shell, n_shells):
    """Each shell's first face and bounding box (lo, hi), in one pass without an (m, 3, 3) corner copy."""
    first_face = np.full(n_shells, -1, np.int64)
    lo = np.full((n_shells, 3), np.inf)
    hi = np.full((n_shells, 3), -np.inf)
    for f in range(faces.shape[0]):
        s = shell[f]
        if first_face[s] < 0:
            first_face[s] = f
        for k in range(3):
            for d in range(3):
                x = vertices[faces[f, k], d]
                lo[s, d] = min(lo[s, d], x)
                hi[s, d] = max(hi[s, d], x)
    return first_face, lo, hi


def _compact(vertices, faces):
    used = _used(faces, len(vertices))
    if used.all():
        return vertices, faces, 0
    new_index = np.cumsum(used) - 1
    return vertices[used], new_index[faces].astype(np.int32), int(len(vertices) - used.sum())
