"""Mesh topology kernels: weld shared corners, number the edges, find oriented shells.

STL stores every triangle's corners separately; slicing and repair need to know
which triangles share a corner and an edge.  Welding is a hash-table pass in
O(n) that keeps no copy of the rows it has seen (``weld_exact``) or takes its
rows in chunks (``Welder``), so a reader never holds all corners of a big file at once (``np.unique`` over rows sorts, which is several
times slower on the million-triangle meshes we slice).  Edges are found by
grouping half-edges by their lower vertex, a counting sort read in order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .rows import copy_items, copy_rows

_EMPTY = -1
WELD_CHUNK_ROWS = 1 << 16  # rows a Welder takes at a time: a few MB of scratch, however big the mesh
_FAN = 32  # a vertex group longer than this is sorted with argsort, not by insertion


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
def _table_size(n_rows):
    """A power of two at least twice ``n_rows``, so probes stay short."""
    size = 16
    while size < 2 * n_rows:
        size *= 2
    return size


@njit(cache=True, nogil=True)
def _weld_rows(bits, table, unique, n_unique, index):
    """``index[i]``: the row of ``unique`` equal to ``bits[i]``, appended when new.

    ``table`` holds the numbers of ``unique``'s first ``n_unique`` rows; both
    grow here when needed and come back with the new row count.
    """
    for i in range(bits.shape[0]):
        mask = np.uint64(table.shape[0] - 1)
        slot = _row_hash(bits, i) & mask
        j = table[slot]
        while j != _EMPTY:  # probed here, not in a helper: a call per row costs more than the probe
            if unique[j, 0] == bits[i, 0] and unique[j, 1] == bits[i, 1] and unique[j, 2] == bits[i, 2]:
                break
            slot = (slot + np.uint64(1)) & mask
            j = table[slot]
        if j != _EMPTY:
            index[i] = j
            continue
        if n_unique == unique.shape[0]:
            grown = np.empty((2 * n_unique + 16, 3), unique.dtype)
            copy_rows(grown, 0, unique, 0, n_unique)
            unique = grown
        copy_rows(unique, n_unique, bits, i, 1)
        table[slot] = n_unique
        index[i] = n_unique
        n_unique += 1
        if 2 * n_unique > table.shape[0]:
            table = np.full(2 * table.shape[0], _EMPTY, np.int32)
            mask = np.uint64(table.shape[0] - 1)
            for j in range(n_unique):  # distinct rows: each goes to the first empty slot
                slot = _row_hash(unique, j) & mask
                while table[slot] != _EMPTY:
                    slot = (slot + np.uint64(1)) & mask
                table[slot] = j
    return table, unique, n_unique


@njit(cache=True, nogil=True)
def _weld_exact(bits):
    """First row of each group of equal rows of ``bits``, and each row's group; groups in first-seen order.

    The table holds input row numbers, so no row is copied: the scratch is two
    int32 per row plus the table.
    """
    n = bits.shape[0]
    table = np.full(_table_size(n), _EMPTY, np.int32)
    keep = np.empty(n, np.int32)
    remap = np.empty(n, np.int32)
    mask = np.uint64(table.shape[0] - 1)
    n_unique = 0
    for i in range(n):
        slot = _row_hash(bits, i) & mask
        j = table[slot]
        while j != _EMPTY:
            if bits[j, 0] == bits[i, 0] and bits[j, 1] == bits[i, 1] and bits[j, 2] == bits[i, 2]:
                break
            slot = (slot + np.uint64(1)) & mask
            j = table[slot]
        if j != _EMPTY:
            remap[i] = remap[j]
        else:
            table[slot] = i
            keep[n_unique] = i
            remap[i] = n_unique
            n_unique += 1
    return keep[:n_unique], remap


class Welder:
    """Merges bit-identical coordinate rows fed in chunks, in first-seen order (-0.0 counts as 0.0).

    ``dtype`` is the coordinates' float type (float32 for STL corners, whose
    bits are compared as stored); ``expected`` is a guess of the distinct rows
    so the tables need not grow.
    """

    def __init__(self, dtype, expected: int = 0):
        self._float = np.dtype(dtype)
        self._bits = np.dtype(f"u{self._float.itemsize}")
        self._table = np.full(_table_size(expected), _EMPTY, np.int32)
        self._unique = np.empty((max(expected, 16), 3), self._bits)
        self._n = 0
        self._scratch = np.empty((WELD_CHUNK_ROWS, 3), self._float)

    def __len__(self) -> int:
        return self._n

    def add(self, rows: np.ndarray, index: np.ndarray) -> None:
        """Weld ``rows`` (any shape ending in 3, at most WELD_CHUNK_ROWS rows); ``index`` (int32) gets their vertex numbers."""
        normal = self._scratch[:rows.size // 3]
        np.add(rows, self._float.type(0.0), out=normal.reshape(rows.shape))  # -0.0 + 0.0 is +0.0
        self._table, self._unique, self._n = _weld_rows(normal.view(self._bits), self._table, self._unique,
                                                        self._n, index)

    def vertices(self) -> np.ndarray:
        """The distinct rows, float64 (n, 3); ends the welding (the hash table is freed first)."""
        self._table = self._scratch = None
        return self._unique[:self._n].view(self._float).astype(np.float64)


def weld_exact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge bit-identical vertices (-0.0 equals 0.0); returns (vertices, faces int32).

    When no two vertices are equal the arrays come back as they are (no copy).
    """
    vertices = np.ascontiguousarray(vertices, dtype=np.float64)
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    negative_zero = (vertices == 0) & np.signbit(vertices)
    normal = vertices + 0.0 if negative_zero.any() else vertices  # bits compared: -0.0 + 0.0 is +0.0
    del negative_zero
    keep, remap = _weld_exact(normal.view(np.uint64))
    if len(keep) == len(vertices):  # first-seen order: every row new means remap is the identity
        return vertices, faces
    return normal[keep], remap[faces]


@njit(cache=True, nogil=True)
def _high_end(faces, he):
    f, k = he // 3, he % 3
    return max(faces[f, k], faces[f, (k + 1) % 3])


@njit(cache=True, nogil=True)
def _half_edges_by_vertex(faces, n_vertices):
    """Half-edge ids (3 f + k, edge k of face f runs from corner k to k + 1), grouped by lower vertex, then by higher.

    Returns ``group`` (n_vertices + 1,): lower vertex v owns ``half_edges[group[v]:group[v + 1]]``.
    A counting sort, then each (small) group sorted by insertion; a fan apex with
    many edges by argsort, so it does not cost O(degree^2).
    """
    m = faces.shape[0]
    group = np.zeros(n_vertices + 1, np.int64)
    for f in range(m):
        for k in range(3):
            group[min(faces[f, k], faces[f, (k + 1) % 3]) + 1] += 1
    for v in range(n_vertices):
        group[v + 1] += group[v]
    fill = group[:-1].copy()
    half_edges = np.empty(3 * m, np.int32)
    for f in range(m):
        for k in range(3):
            lo = min(faces[f, k], faces[f, (k + 1) % 3])
            half_edges[fill[lo]] = 3 * f + k
            fill[lo] += 1
    for v in range(n_vertices):
        g0, g1 = group[v], group[v + 1]
        if g1 - g0 > _FAN:
            others = np.empty(g1 - g0, np.int32)
            for t in range(g0, g1):
                others[t - g0] = _high_end(faces, half_edges[t])
            by_high_end = half_edges[g0:g1][np.argsort(others, kind="mergesort")]
            copy_items(half_edges, g0, by_high_end, 0, g1 - g0)
            continue
        for t in range(g0 + 1, g1):
            he = half_edges[t]
            key = _high_end(faces, he)
            s = t - 1
            while s >= g0 and _high_end(faces, half_edges[s]) > key:
                half_edges[s + 1] = half_edges[s]
                s -= 1
            half_edges[s + 1] = he
    return group, half_edges


@njit(cache=True, nogil=True)
def _face_edges(faces, n_vertices):
    """Runs of half-edges with the same ends (adjacent after ``_half_edges_by_vertex``) are one edge."""
    m = faces.shape[0]
    group, half_edges = _half_edges_by_vertex(faces, n_vertices)
    n_edges = 0
    for v in range(n_vertices):
        for t in range(group[v], group[v + 1]):
            if t == group[v] or _high_end(faces, half_edges[t]) != _high_end(faces, half_edges[t - 1]):
                n_edges += 1
    edge_of_face = np.empty((m, 3), np.int32)
    edge_vertices = np.empty((n_edges, 2), np.int32)
    uses = np.zeros(n_edges, np.int32)
    forward = np.zeros(n_edges, np.int32)
    e = -1
    for v in range(n_vertices):
        for t in range(group[v], group[v + 1]):
            he = half_edges[t]
            f, k = he // 3, he % 3
            hi = _high_end(faces, he)
            if t == group[v] or hi != edge_vertices[e, 1]:
                e += 1
                edge_vertices[e, 0] = v
                edge_vertices[e, 1] = hi
            edge_of_face[f, k] = e
            uses[e] += 1
            if faces[f, k] < faces[f, (k + 1) % 3]:
                forward[e] += 1
    return edge_of_face, edge_vertices, uses, forward


def face_edges(faces: np.ndarray, n_vertices: int):
    """Number the undirected edges of a welded mesh, in order of (low, high) vertex.

    Returns ``edge_of_face`` (m, 3) int32 (edge k of face f runs from corner k to
    corner k+1), ``edge_vertices`` (E, 2) int32 (low, high vertex index),
    ``uses`` (E,) int32 (faces on the edge: 1 = open, 2 = manifold, more =
    non-manifold) and ``forward`` (E,) int32 (faces that run the edge low to
    high; a consistently oriented manifold edge has exactly 1).
    """
    return _face_edges(np.ascontiguousarray(faces, dtype=np.int32), int(n_vertices))


@njit(cache=True, nogil=True)
def _root(parent, f):
    while parent[f] != f:
        parent[f] = parent[parent[f]]  # path halving
        f = parent[f]
    return f


@njit(cache=True, nogil=True)
def _oriented_shells(faces, n_vertices):
    """Shell of each face by union-find over paired half-edges; (shell, n_shells), n_shells = -1 if not oriented."""
    m = faces.shape[0]
    group, half_edges = _half_edges_by_vertex(faces, n_vertices)
    parent = np.empty(m, np.int32)
    for f in range(m):
        parent[f] = f
    for v in range(n_vertices):
        g0, g1 = group[v], group[v + 1]
        if (g1 - g0) % 2:
            return parent, -1
        for t in range(g0, g1, 2):
            a, b = half_edges[t], half_edges[t + 1]
            hi = _high_end(faces, a)
            if _high_end(faces, b) != hi or (t + 2 < g1 and _high_end(faces, half_edges[t + 2]) == hi):
                return parent, -1  # an edge with one face, or more than two
            fa, fb = a // 3, b // 3
            if (faces[fa, a % 3] < faces[fa, (a % 3 + 1) % 3]) == (faces[fb, b % 3] < faces[fb, (b % 3 + 1) % 3]):
                return parent, -1  # both faces run the edge the same way
            ra, rb = _root(parent, fa), _root(parent, fb)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    # Links (and path halving) only ever point to a smaller face, so each root is its shell's
    # first face and, in face order, a face's parent is relabelled before the face: in place.
    n_shells = 0
    for f in range(m):
        if parent[f] == f:
            parent[f] = n_shells
            n_shells += 1
        else:
            parent[f] = parent[parent[f]]
    return parent, n_shells


def oriented_shells(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, int] | None:
    """Shells of a closed, consistently oriented mesh, or None when the mesh is not one.

    Such a mesh has every edge in exactly two faces that run it opposite ways;
    then (shell of each face int32, number of shells) with shells numbered in
    order of their first face.  It is the common case, and checking it costs
    far less memory and time than ``face_edges`` plus an orientation flood.
    """
    shell, n_shells = _oriented_shells(np.ascontiguousarray(faces, dtype=np.int32), int(n_vertices))
    return None if n_shells < 0 else (shell, n_shells)
