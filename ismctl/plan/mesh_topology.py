"""Mesh topology kernels: weld shared corners, number the edges.

STL stores every triangle's corners separately; slicing and repair need to know
which triangles share a corner and an edge.  Both are hash-table passes in
O(n) (``np.unique`` over rows sorts, which is several times slower on the
million-triangle meshes we slice).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_EMPTY = -1


@njit(cache=True, nogil=True)
def _mix(h):
    """A 64-bit finaliser (splitmix64) so that nearby coordinates land far apart."""
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


@njit(cache=True, nogil=True)
def _weld_exact(bits):
    """First-seen index of each distinct row of ``bits`` (n, 3) int64, and each row's group."""
    n = bits.shape[0]
    size = 1
    while size < 2 * n + 2:
        size *= 2
    mask = np.uint64(size - 1)
    table = np.full(size, _EMPTY, np.int64)
    remap = np.empty(n, np.int64)
    keep = np.empty(n, np.int64)
    n_unique = 0
    for i in range(n):
        h = _mix(np.uint64(bits[i, 0]) ^ _mix(np.uint64(bits[i, 1]) ^ _mix(np.uint64(bits[i, 2]))))
        slot = h & mask
        while True:
            j = table[slot]
            if j == _EMPTY:
                table[slot] = n_unique
                keep[n_unique] = i
                remap[i] = n_unique
                n_unique += 1
                break
            k = keep[j]
            if bits[k, 0] == bits[i, 0] and bits[k, 1] == bits[i, 1] and bits[k, 2] == bits[i, 2]:
                remap[i] = j
                break
            slot = (slot + np.uint64(1)) & mask
    return keep[:n_unique].copy(), remap


def weld_exact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge bit-identical vertices (after +0.0, so -0.0 equals 0.0); returns (vertices, faces)."""
    v = np.ascontiguousarray(vertices, dtype=np.float64) + 0.0
    keep, remap = _weld_exact(v.view(np.int64))
    return v[keep], remap[faces].astype(np.int32)


@njit(cache=True, nogil=True)
def _face_edges(faces, n_vertices):
    m = faces.shape[0]
    size = 1
    while size < 6 * m + 2:
        size *= 2
    mask = np.uint64(size - 1)
    table = np.full(size, _EMPTY, np.int64)
    edge_of_face = np.empty((m, 3), np.int64)
    edge_vertices = np.empty((3 * m, 2), np.int64)
    uses = np.zeros(3 * m, np.int32)
    forward = np.zeros(3 * m, np.int32)
    n_edges = 0
    nv = np.int64(n_vertices)
    for f in range(m):
        for k in range(3):
            a = np.int64(faces[f, k])
            b = np.int64(faces[f, (k + 1) % 3])
            lo = min(a, b)
            hi = max(a, b)
            key = lo * nv + hi
            slot = _mix(np.uint64(key)) & mask
            while True:
                e = table[slot]
                if e == _EMPTY:
                    e = n_edges
                    table[slot] = e
                    edge_vertices[e, 0] = lo
                    edge_vertices[e, 1] = hi
                    n_edges += 1
                    break
                if edge_vertices[e, 0] == lo and edge_vertices[e, 1] == hi:
                    break
                slot = (slot + np.uint64(1)) & mask
            edge_of_face[f, k] = e
            uses[e] += 1
            if a < b:
                forward[e] += 1
    return edge_of_face, edge_vertices[:n_edges].copy(), uses[:n_edges].copy(), forward[:n_edges].copy()


def face_edges(faces: np.ndarray, n_vertices: int):
    """Number the undirected edges of a welded mesh.

    Returns ``edge_of_face`` (m, 3) int64 (edge k of face f runs from corner k to
    corner k+1), ``edge_vertices`` (E, 2) int64 (low, high vertex index),
    ``uses`` (E,) int32 (faces on the edge: 1 = open, 2 = manifold, more =
    non-manifold) and ``forward`` (E,) int32 (faces that run the edge low to
    high; a consistently oriented manifold edge has exactly 1).
    """
    return _face_edges(np.ascontiguousarray(faces, dtype=np.int32), int(n_vertices))
