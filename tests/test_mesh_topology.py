"""The weld and edge-numbering kernels against slow references."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ismctl.plan.mesh_topology import face_edges, weld_exact


def weld_reference(vertices, faces):
    index: dict[tuple, int] = {}
    unique, remap = [], []
    for row in vertices + 0.0:
        key = tuple(row.tolist())
        if key not in index:
            index[key] = len(unique)
            unique.append(row)
        remap.append(index[key])
    return np.array(unique).reshape(-1, 3), np.array(remap)[faces]


def edges_reference(faces):
    """{(lo, hi): [uses, forward]} from a plain dict."""
    table: dict[tuple, list] = {}
    for face in faces.tolist():
        for k in range(3):
            a, b = face[k], face[(k + 1) % 3]
            entry = table.setdefault((min(a, b), max(a, b)), [0, 0])
            entry[0] += 1
            entry[1] += a < b
    return table


corners = st.integers(0, 5).map(float)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(corners, corners, st.sampled_from([0.0, -0.0, 1.0])), min_size=3, max_size=60).filter(lambda r: len(r) % 3 == 0))
def test_weld_matches_reference(rows):
    vertices = np.array(rows)
    faces = np.arange(len(rows)).reshape(-1, 3)
    got_v, got_f = weld_exact(vertices, faces)
    ref_v, ref_f = weld_reference(vertices, faces)
    assert np.array_equal(got_v, ref_v)  # first-seen order, -0.0 welded to 0.0
    assert np.array_equal(got_f, ref_f)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 40), min_size=3, max_size=3, unique=True), min_size=1, max_size=80))
def test_edges_match_reference(face_list):
    faces = np.array(face_list)
    edge_of_face, edge_vertices, uses, forward = face_edges(faces, 41)
    reference = edges_reference(faces)
    assert len(edge_vertices) == len(reference)
    got = {tuple(v): [int(u), int(f)] for v, u, f in zip(edge_vertices.tolist(), uses, forward)}
    assert got == reference
    for f, face in enumerate(face_list):  # edge k of face f joins corners k and k + 1
        for k in range(3):
            assert set(edge_vertices[edge_of_face[f, k]]) == {face[k], face[(k + 1) % 3]}


def test_fan_apex_with_many_edges():
    """A vertex shared by hundreds of edges takes the sorted path of the kernel."""
    n = 300
    ring = [[0, 1 + i, 1 + (i + 1) % n] for i in range(n)] + [[n + 1, 1 + (i + 1) % n, 1 + i] for i in range(n)]
    faces = np.array(ring)
    _, edge_vertices, uses, forward = face_edges(faces, n + 2)
    assert len(edge_vertices) == 3 * n
    assert set(uses.tolist()) == {2} and set(forward.tolist()) == {1}
    assert {tuple(v): [int(u), int(f)] for v, u, f in zip(edge_vertices.tolist(), uses, forward)} == edges_reference(faces)
