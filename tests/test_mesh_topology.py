"""The weld, edge-numbering and shell kernels against slow references."""

from __future__ import annotations

import numpy as np
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from ismctl.plan.mesh_topology import Welder, face_edges, oriented_shells, weld_exact


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


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(corners, corners, st.sampled_from([0.0, -0.0, 1.0])), min_size=1, max_size=90),
       st.integers(1, 7))
def test_welder_fed_in_chunks_matches_reference(rows, chunk):
    vertices = np.array(rows, dtype=np.float32)
    welder = Welder(np.float32)
    index = np.empty(len(rows), np.int32)
    for s in range(0, len(rows), chunk):
        welder.add(vertices[s:s + chunk], index[s:s + chunk])
    ref_v, ref_index = weld_reference(vertices.astype(np.float64), np.arange(len(rows)))
    assert len(welder) == len(ref_v)
    assert np.array_equal(welder.vertices(), ref_v) and np.array_equal(index, ref_index)


def shells_reference(faces):
    """(shell of each face, count) if every edge is run once each way, else None; a dict and a breadth-first walk."""
    directed: dict[tuple, int] = {}
    for f, face in enumerate(faces.tolist()):
        for k in range(3):
            edge = (face[k], face[(k + 1) % 3])
            if edge in directed:
                return None
            directed[edge] = f
    if any((b, a) not in directed for a, b in directed):
        return None
    shell, n = [-1] * len(faces), 0
    for seed in range(len(faces)):
        if shell[seed] >= 0:
            continue
        shell[seed], todo = n, [seed]
        while todo:
            face = faces[todo.pop()].tolist()
            for k in range(3):
                g = directed[(face[(k + 1) % 3], face[k])]
                if shell[g] < 0:
                    shell[g] = n
                    todo.append(g)
        n += 1
    return shell, n


def test_oriented_shells_match_reference():
    rng = np.random.default_rng(6)
    a = trimesh.creation.icosphere(subdivisions=1)
    b = trimesh.creation.box()
    b.apply_translation([5, 0, 0])
    mesh = trimesh.util.concatenate([a, b])
    faces = np.ascontiguousarray(mesh.faces[rng.permutation(len(mesh.faces))], dtype=np.int32)
    faces[faces[:, 0] >= len(a.vertices)] = faces[faces[:, 0] >= len(a.vertices)][:, ::-1]  # inside-out box: still oriented
    n = 300  # and a fan apex with hundreds of edges
    fan = np.array([[0, 1 + i, 1 + (i + 1) % n] for i in range(n)] + [[n + 1, 1 + (i + 1) % n, 1 + i] for i in range(n)])
    flipped = faces.copy()
    flipped[3] = flipped[3, ::-1]
    v = len(mesh.vertices)
    pair = [[v, v + 1, v + 2], [v, v + 2, v + 1]]
    cases = [faces, fan, flipped, faces[1:], np.vstack([faces, faces[:1]]), np.vstack([faces, pair])]
    results = [oriented_shells(f, len(mesh.vertices) + n + 2) for f in cases]
    for f, got in zip(cases, results):
        ref = shells_reference(f)
        assert (got is None) == (ref is None)
        if ref is not None:
            assert got[1] == ref[1] and got[0].tolist() == ref[0]
    assert results[0][1] == 2 and results[1][1] == 1
    assert results[2] is None and results[3] is None and results[4] is None  # flipped face, open, edge with 3 faces
    assert results[5][1] == 3  # a face and its reverse close a (flat) shell of their own
