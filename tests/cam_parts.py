"""Test parts for CAM, built as real closed meshes without a CAD kernel.

A part is a stack of prisms: ``[(z0, z1, polygon), (z1, z2, polygon), ...]``
(shapely polygons sharing their common boundary points).  Its mesh is the
prisms' side walls, the bottom and top caps, and at each step the area one
prism covers and the other does not (a floor, or a roof).  Caps are Delaunay triangles of
the densified boundary kept when their centroid is inside the cap; faces come
out in any orientation (``prepare_mesh`` turns them outward).  The mesh is
checked closed (every edge on exactly two faces) before it is returned.
"""

from __future__ import annotations

import math

import numpy as np
import shapely.geometry as geo
from scipy.spatial import Delaunay

from ismctl.plan.model import Mesh

STEP = 1.0  # mm: boundary edges are split to at most this, so Delaunay keeps them


def _dense(ring) -> np.ndarray:
    pts = np.asarray(ring.coords)[:-1]
    out = []
    for a, b in zip(pts, np.roll(pts, -1, axis=0)):
        n = max(1, math.ceil(np.hypot(*(b - a)) / STEP))
        out.extend(a + (b - a) * t for t in np.arange(n) / n)
    return np.array(out)


def _rings(poly) -> list[np.ndarray]:
    polys = list(poly.geoms) if hasattr(poly, "geoms") else [poly]
    return [_dense(r) for p in polys for r in (p.exterior, *p.interiors)]


def _cap(poly, z: float) -> list:
    if poly.is_empty:
        return []
    pts = np.vstack(_rings(poly))
    tri = Delaunay(pts)
    keep = [s for s in tri.simplices if poly.contains(geo.Point(pts[s].mean(axis=0)))]
    return [[(*pts[i], z) for i in s] for s in keep]


def _walls(poly, z0: float, z1: float) -> list:
    faces = []
    for ring in _rings(poly):
        for a, b in zip(ring, np.roll(ring, -1, axis=0)):
            faces.append([(*a, z0), (*b, z0), (*b, z1)])
            faces.append([(*a, z0), (*b, z1), (*a, z1)])
    return faces


def prism_stack(layers, name: str = "part") -> Mesh:
    triangles = _cap(layers[0][2], layers[0][0]) + _cap(layers[-1][2], layers[-1][1])
    for (z0, z1, poly) in layers:
        triangles += _walls(poly, z0, z1)
    for (_, z, below), (_, _, above) in zip(layers, layers[1:]):
        triangles += _cap(below.difference(above), z) + _cap(above.difference(below), z)
    corners = np.round(np.array(triangles, dtype=np.float64).reshape(-1, 3), 9)
    vertices, index = np.unique(corners, axis=0, return_inverse=True)
    faces = index.reshape(-1, 3)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all(), f"test part {name!r} is not closed: {int((counts != 2).sum())} bad edges"
    return Mesh(vertices, faces, name)


def circle(x: float, y: float, d: float, segments: int = 32):
    """A regular polygon with its corners on the circle (what a CAD export of a cylinder gives)."""
    a = np.arange(segments) * 2 * math.pi / segments
    return geo.Polygon(np.column_stack((x + d / 2 * np.cos(a), y + d / 2 * np.sin(a))))


# The block the CAM tests machine: 30 x 20 x 8 mm, a 3 mm and a 5 mm through hole,
# and a 10 x 10 mm pocket 4 mm deep.
BLOCK = geo.box(0, 0, 30, 20)
HOLE_3 = (6.0, 10.0, 3.0)
HOLE_5 = (12.0, 10.0, 5.0)
POCKET = geo.box(17, 5, 27, 15)
HEIGHT, FLOOR = 8.0, 4.0


def block_with_pocket_and_holes() -> Mesh:
    base = BLOCK.difference(circle(*HOLE_3)).difference(circle(*HOLE_5))
    return prism_stack([(0.0, FLOOR, base), (FLOOR, HEIGHT, base.difference(POCKET))], "block")
