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
def _row_hash(bits, i):
    return _mix(np.uint64(bits[i, 0]) ^ _mix(np.uint64(bits[i, 1]) ^ _mix(np.uint64(bits[i, 2]))))


@njit(cache=True, nogil=True)
def _weld_exact(bits):
    """First-seen index of each distinct row of ``bits`` (n, 3) int64, and each row's group.

    The table holds distinct rows only and grows as they come (a triangle soup
    has about one distinct corner in six), so it stays small enough for the cache.
    """
    n = bits.shape[0]
    size = 16
    while size < n // 3:
        size *= 2
    table = np.full(size, _EMPTY, np.int64)
    hashes = np.empty(n, np.uint64)  # per distinct row, for rehashing without recomputing
    remap = np.empty(n, np.int64)
    keep = np.empty(n, np.int64)
    n_unique = 0
    for i in range(n):
        h = _row_hash(bits, i)
        mask = np.uint64(size - 1)
        slot = h & mask
        while True:
            j = table[slot]
            if j == _EMPTY:
                table[slot] = n_unique
                keep[n_unique] = i
                hashes[n_unique] = h
                remap[i] = n_unique
                n_unique += 1
                break
            if hashes[j] == h:
                k = keep[j]
                if bits[k, 0] == bits[i, 0] and bits[k, 1] == bits[i, 1] and bits[k, 2] == bits[i, 2]:
                    remap[i] = j
                    break
            slot = (slot + np.uint64(1)) & mask
        if 2 * n_unique > size:  # keep the load under one half: grow and re-insert
            size *= 2
            table = np.full(size, _EMPTY, np.int64)
            mask = np.uint64(size - 1)
            for j in range(n_unique):
                slot = hashes[j] & mask
                while table[slot] != _EMPTY:
                    slot = (slot + np.uint64(1)) & mask
                table[slot] = j
    return keep[:n_unique].copy(), remap


def weld_exact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge bit-identical vertices (after +0.0, so -0.0 equals 0.0); returns (vertices, faces)."""
    v = np.ascontiguousarray(vertices, dtype=np.float64) + 0.0
    keep, remap = _weld_exact(v.view(np.int64))
    return v[keep], remap[faces].astype(np.int32)


@njit(cache=True, nogil=True)
def _face_edges(faces, n_vertices):
    """Half-edges bucketed by their lower vertex (a counting sort), matched inside each small bucket.

    No hash table: the buckets are read in order, which on big meshes is several
    times faster than probing a table larger than the cache.
    """
    m = faces.shape[0]
    count = np.zeros(n_vertices + 1, np.int64)
    for f in range(m):
        for k in range(3):
            count[min(faces[f, k], faces[f, (k + 1) % 3]) + 1] += 1
    for v in range(n_vertices):
        count[v + 1] += count[v]
    fill = count[:-1].copy()
    bucket = np.empty(3 * m, np.int64)  # half-edge ids (3 f + k), grouped by lower vertex
    for f in range(m):
        for k in range(3):
            lo = min(faces[f, k], faces[f, (k + 1) % 3])
            bucket[fill[lo]] = 3 * f + k
            fill[lo] += 1
    edge_of_face = np.empty((m, 3), np.int64)
    edge_vertices = np.empty((3 * m, 2), np.int64)
    uses = np.zeros(3 * m, np.int32)
    forward = np.zeros(3 * m, np.int32)
    n_edges = 0
    for v in range(n_vertices):
        first_edge = n_edges
        lo_start, lo_end = count[v], count[v + 1]
        if lo_end - lo_start > 32:  # a fan apex: sort the bucket by the other vertex, not O(degree^2)
            others = np.empty(lo_end - lo_start, np.int64)
            for t in range(lo_start, lo_end):
                he = bucket[t]
                others[t - lo_start] = max(faces[he // 3, he % 3], faces[he // 3, (he % 3 + 1) % 3])
            bucket[lo_start:lo_end] = bucket[lo_start:lo_end][np.argsort(others, kind="mergesort")]
        for t in range(lo_start, lo_end):
            he = bucket[t]
            f, k = he // 3, he % 3
            a, b = faces[f, k], faces[f, (k + 1) % 3]
            hi = max(a, b)
            e = n_edges - 1 if lo_end - lo_start > 32 else first_edge
            found = -1
            while e >= first_edge and e < n_edges:
                if edge_vertices[e, 1] == hi:
                    found = e
                    break
                if lo_end - lo_start > 32:
                    break  # sorted: only the latest edge can match
                e += 1
            if found < 0:
                found = n_edges
                edge_vertices[found, 0] = v
                edge_vertices[found, 1] = hi
                n_edges += 1
            edge_of_face[f, k] = found
            uses[found] += 1
            if a < b:
                forward[found] += 1
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
