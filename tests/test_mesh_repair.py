"""mesh_repair: each check and repair, the Numba kernels against slow references, and a property test."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from ismctl.plan import mesh_repair
from ismctl.plan.mesh_repair import GAP_TOLERANCE, prepare_mesh
from ismctl.plan.mesh_topology import face_edges
from ismctl.plan.model import Mesh, PlanError


def box(size=(20.0, 20.0, 20.0), center=(50.0, 50.0, 10.0)) -> trimesh.Trimesh:
    mesh = trimesh.creation.box(size)
    mesh.apply_translation(center)
    return mesh


def soup(mesh: trimesh.Trimesh, name: str = "part") -> Mesh:
    """The mesh as an STL file gives it: every corner its own vertex."""
    return Mesh(mesh.vertices[mesh.faces].reshape(-1, 3), np.arange(3 * len(mesh.faces)).reshape(-1, 3), name)


def volume(mesh: Mesh) -> float:
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).volume


def test_soup_is_welded_and_reported():
    part = box()
    out, report = prepare_mesh(soup(part))
    assert len(out.vertices) == 8 and len(out.faces) == 12
    assert report.welded_vertices == 36 - 8
    assert report.messages() == ["merged 28 duplicate vertex corners"]
    assert report.shells == 1 and report.open_edges == 0 and report.faces_flipped == 0
    assert np.allclose(report.bounds, [[40, 40, 0], [60, 60, 20]])
    assert volume(out) == pytest.approx(8000.0)


def test_flipped_faces_are_turned_outward():
    part = box()
    faces = part.faces.copy()
    faces[[0, 5, 7]] = faces[[0, 5, 7]][:, ::-1]
    out, report = prepare_mesh(Mesh(part.vertices, faces, "flipped"))
    assert report.faces_flipped == 3
    assert "flipped 3 faces to face outward" in report.messages()
    assert volume(out) == pytest.approx(8000.0)
    # An inside-out part is turned around whole.
    out, report = prepare_mesh(Mesh(part.vertices, part.faces[:, ::-1], "inside-out"))
    assert report.faces_flipped == 12 and volume(out) == pytest.approx(8000.0)


def test_inner_shell_stays_a_void():
    outer, inner = box(), box((5.0, 5.0, 5.0))
    vertices = np.vstack([outer.vertices, inner.vertices])
    faces = np.vstack([outer.faces, inner.faces + 8])  # the inner box faces outward: wrong for a void
    out, report = prepare_mesh(Mesh(vertices, faces, "hollow"))
    assert report.shells == 2 and report.voids == 1 and report.faces_flipped == 12
    assert volume(out) == pytest.approx(8000.0 - 125.0)


def test_empty_nan_and_degenerate_meshes_are_refused():
    with pytest.raises(PlanError, match=r"mesh 'nothing' has no faces"):
        prepare_mesh(Mesh(np.zeros((0, 3)), np.zeros((0, 3)), "nothing"))
    part = box()
    vertices = part.vertices.copy()
    vertices[3, 1] = np.nan
    n_bad = int((part.faces == 3).any(axis=1).sum())
    first = int(np.argmax((part.faces == 3).any(axis=1)))
    with pytest.raises(PlanError, match=rf"mesh 'nan': {n_bad} faces have NaN or infinite coordinates \(first: face {first}\)"):
        prepare_mesh(Mesh(vertices, part.faces, "nan"))
    flat = Mesh([[0, 0, 0], [10, 0, 0], [20, 0, 0], [5, 5, 5]], [[0, 1, 2], [0, 0, 3], [3, 3, 3]], "flat")
    with pytest.raises(PlanError, match=r"mesh 'flat': nothing left after removing 3 degenerate faces"):
        prepare_mesh(flat)
    with pytest.raises(PlanError, match=r"face 0 uses a vertex index outside 0..2"):
        prepare_mesh(Mesh(np.zeros((3, 3)), [[0, 1, 5]], "bad index"))


def test_degenerate_and_duplicate_faces_are_removed_and_counted():
    part = box()
    faces = np.vstack([part.faces, [[0, 0, 1]], [[0, 1, 0]], part.faces[:2], part.faces[4:5, [1, 2, 0]]])
    out, report = prepare_mesh(Mesh(part.vertices, faces, "extra"))
    assert report.degenerate_removed == 2
    assert report.duplicates_removed == 3
    assert len(out.faces) == 12 and report.non_manifold_edges == 0
    assert "removed 3 duplicate faces" in report.messages()
    assert volume(out) == pytest.approx(8000.0)


def test_tiny_gap_is_closed_without_moving_more_than_the_tolerance():
    part = box()
    vertices = np.vstack([part.vertices, part.vertices[0] + [4e-4, -3e-4, 2e-4]])
    faces = part.faces.copy()
    uses0 = np.flatnonzero((faces == 0).any(axis=1))
    faces[uses0[:2]] = np.where(faces[uses0[:2]] == 0, 8, faces[uses0[:2]])  # two faces use the shifted copy
    out, report = prepare_mesh(Mesh(vertices, faces, "gap"))
    assert report.gaps_closed == 1 and report.open_edges == 0
    assert report.unused_vertices_removed == 1
    assert len(out.vertices) == 8 and volume(out) == pytest.approx(8000.0, rel=1e-6)
    # every output vertex is within the tolerance of an input vertex it came from
    moved = np.min(np.linalg.norm(out.vertices[:, None] - vertices[None, :8], axis=2), axis=1)
    assert moved.max() <= GAP_TOLERANCE
    # A wider gap is not closed.
    vertices[8] = part.vertices[0] + [0.01, 0, 0]
    with pytest.raises(PlanError, match=r"not closed"):
        prepare_mesh(Mesh(vertices, faces, "gap"))


def test_open_box_is_refused_naming_an_edge_unless_allowed():
    part = box()
    open_faces = part.faces[2:]  # one side (two triangles) missing
    with pytest.raises(PlanError, match=r"mesh 'lid' is not closed: 4 open edges .* runs from \([\d., ]+\) to"):
        prepare_mesh(Mesh(part.vertices, open_faces, "lid"))
    out, report = prepare_mesh(Mesh(part.vertices, open_faces, "lid"), allow_open=True)
    assert report.open_edges == 4
    assert "warning: 4 open edges left (the mesh is not closed)" in report.messages()
    assert len(out.faces) == 10


def test_parts_touching_along_an_edge_are_a_warning():
    a, b = box(), box(center=(70.0, 70.0, 10.0))  # share the vertical edge at x = y = 60
    merged = trimesh.util.concatenate([a, b])
    out, report = prepare_mesh(soup(merged))
    assert report.non_manifold_edges == 1 and report.shells == 2 and report.voids == 0
    assert any("non-manifold" in m for m in report.messages())
    assert volume(out) == pytest.approx(16000.0)


def test_unit_hints():
    metres = trimesh.creation.icosphere(subdivisions=1, radius=0.02)
    with pytest.raises(PlanError, match=r"mesh 'm' is only 0.04x.* mm .* looks like metres: scale by 1000"):
        prepare_mesh(soup(metres, "m"))
    tenths = box((800.0, 300.0, 100.0), (400.0, 150.0, 50.0))
    with pytest.raises(PlanError, match=r"mesh 't' is 800x300x100 mm, larger than the 220x220x250 mm build volume; "
                                        r"if it is in 0.1 mm units, scale by 0.1"):
        prepare_mesh(soup(tenths, "t"))
    assert prepare_mesh(soup(tenths, "t"), build_volume=(1000.0, 1000.0, 1000.0))[1].shells == 1


# ---- kernels against slow references ------------------------------------------------------------


def degenerate_reference(vertices, faces, zero_area):
    out = []
    for a, b, c in faces:
        if len({a, b, c}) < 3:
            out.append(True)
            continue
        p, q, r = vertices[a], vertices[b], vertices[c]
        longest = max(np.sum((q - p) ** 2), np.sum((r - p) ** 2), np.sum((r - q) ** 2))
        out.append(np.linalg.norm(np.cross(q - p, r - p)) <= zero_area * longest)
    return np.array(out)


def test_degenerate_kernel_matches_reference():
    rng = np.random.default_rng(1)
    vertices = rng.normal(size=(30, 3))
    vertices[10] = (vertices[0] + vertices[1]) / 2  # collinear with 0 and 1
    faces = rng.integers(0, 30, size=(300, 3)).astype(np.int32)
    faces[:3] = [[0, 1, 10], [0, 0, 5], [2, 3, 4]]
    got = mesh_repair._degenerate_faces(vertices, faces, 1e-12)
    assert np.array_equal(got, degenerate_reference(vertices, faces, 1e-12))
    assert got[:3].tolist() == [True, True, False]


def cluster_reference(points, tolerance):
    """Each point joins the nearest earlier kept point within the tolerance (ties: lowest index)."""
    kept, target = [], []
    for i, p in enumerate(points):
        near = [(np.sum((p - points[j]) ** 2), j) for j in kept if np.sum((p - points[j]) ** 2) <= tolerance**2]
        if near:
            target.append(min(near)[1])
        else:
            kept.append(i)
            target.append(i)
    return np.array(target)


def test_cluster_kernel_matches_reference():
    rng = np.random.default_rng(2)
    centres = rng.uniform(-5, 5, size=(40, 3))
    points = np.repeat(centres, 4, axis=0) + rng.normal(scale=0.03, size=(160, 3))
    points = points[rng.permutation(160)]
    target = mesh_repair._cluster_within(points, 0.05)
    assert np.array_equal(target, cluster_reference(points, 0.05))
    assert np.all(np.linalg.norm(points - points[target], axis=1) <= 0.05)
    assert (target != np.arange(160)).sum() > 40  # the test exercises merging


def flood_reference(faces, uses, edge_of_face):
    """Breadth-first over manifold edges with Python dicts: shells, and flips relative to each seed."""
    m = len(faces)
    by_edge = {}
    for f in range(m):
        for k in range(3):
            by_edge.setdefault(int(edge_of_face[f, k]), []).append((f, faces[f, k], faces[f, (k + 1) % 3]))
    shell, flip, n = [-1] * m, [False] * m, 0
    for seed in range(m):
        if shell[seed] >= 0:
            continue
        shell[seed], queue = n, deque([seed])
        while queue:
            f = queue.popleft()
            for k in range(3):
                e = int(edge_of_face[f, k])
                if uses[e] != 2:
                    continue
                (f1, a1, _), (f2, a2, _) = by_edge[e]
                g, same_direction = (f2 if f1 == f else f1), a1 == a2
                if shell[g] < 0:
                    shell[g], flip[g] = n, flip[f] ^ same_direction
                    queue.append(g)
        n += 1
    return np.array(shell), np.array(flip), n


def test_flood_kernel_matches_reference():
    rng = np.random.default_rng(3)
    a = trimesh.creation.icosphere(subdivisions=1)
    b = trimesh.creation.box()
    b.apply_translation([5, 0, 0])
    mesh = trimesh.util.concatenate([a, b])
    faces = mesh.faces[rng.permutation(len(mesh.faces))]
    flips = rng.random(len(faces)) < 0.4
    faces[flips] = faces[flips][:, ::-1]
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    edge_of_face, _, uses, _ = face_edges(faces, len(mesh.vertices))
    shell, flip, n, conflicts = mesh_repair._flood_orientation(faces, edge_of_face, uses)
    ref_shell, ref_flip, ref_n = flood_reference(faces, uses, edge_of_face)
    assert n == ref_n == 2 and conflicts == 0
    assert np.array_equal(shell, ref_shell) and np.array_equal(flip, ref_flip)
    # applying the flips undoes the random ones, up to one flip of a whole shell
    assert all(len(set((flip ^ flips)[shell == s])) == 1 for s in range(n))


def ray_hits_reference(mesh: trimesh.Trimesh, origin, direction) -> int:
    """Triangles crossed by the ray, by solving origin + t d = a + u (b - a) + v (c - a) per triangle."""
    hits = 0
    for a, b, c in mesh.vertices[mesh.faces]:
        t, u, v = np.linalg.solve(np.column_stack([-direction, b - a, c - a]), origin - a)
        hits += t > 0 and u >= 0 and v >= 0 and u + v <= 1
    return hits


def test_volume_and_ray_kernels_match_references():
    rng = np.random.default_rng(4)
    outer = trimesh.creation.icosphere(subdivisions=2, radius=10.0)
    inner = trimesh.creation.icosphere(subdivisions=1, radius=3.0)
    inner.apply_translation([1.0, 2.0, -1.0])
    apart = trimesh.creation.box((2, 2, 2))
    apart.apply_translation([30, 0, 0])
    mesh = trimesh.util.concatenate([outer, inner, apart])
    shell = np.repeat([0, 1, 2], [len(outer.faces), len(inner.faces), len(apart.faces)])
    faces = np.ascontiguousarray(mesh.faces, dtype=np.int32)
    origin = rng.normal(size=3)
    got = mesh_repair._shell_volumes(mesh.vertices, faces, shell, 3, origin)
    expected = [trimesh.Trimesh(m.vertices, m.faces, process=False).volume for m in (outer, inner, apart)]
    assert np.allclose(got, expected)

    points = np.array([[0.5, 0.5, 0.5], [1.0, 2.0, -1.0], [30.0, 0.1, 0.2]])
    start = np.array([0, 3, 6, 9])
    candidates = np.array([0, 1, 2] * 3, dtype=np.int64)
    crossings = mesh_repair._ray_crossings(mesh.vertices, faces, shell, points, start, candidates, mesh_repair._RAY)
    reference = np.array([[ray_hits_reference(m, p, mesh_repair._RAY) for p in points] for m in (outer, inner, apart)])
    assert np.array_equal(crossings, reference)
    assert (crossings % 2).tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]

    first_face, lo, hi = mesh_repair._shell_extents(mesh.vertices, faces, shell, 3)
    for s, part in enumerate((outer, inner, apart)):
        assert first_face[s] == np.flatnonzero(shell == s)[0]
        assert np.array_equal(lo[s], part.vertices.min(axis=0)) and np.array_equal(hi[s], part.vertices.max(axis=0))


# ---- property: any placement, face order and winding of a closed part repairs to its volume ----


SPHERE = trimesh.creation.icosphere(subdivisions=2, radius=20.0)


@settings(max_examples=25, deadline=None)
@given(
    rotation=st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1),
    shift=st.lists(st.floats(-60.0, 60.0), min_size=3, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_rigid_placement_order_and_flips_give_the_volume(rotation, shift, seed):
    rng = np.random.default_rng(seed)
    matrix = trimesh.transformations.quaternion_matrix(np.array(rotation) / np.linalg.norm(rotation))
    matrix[:3, 3] = shift
    mesh = SPHERE.copy()
    mesh.apply_transform(matrix)
    faces = mesh.faces[rng.permutation(len(mesh.faces))]
    flips = rng.random(len(faces)) < 0.5
    faces[flips] = faces[flips][:, ::-1]
    out, report = prepare_mesh(soup(trimesh.Trimesh(mesh.vertices, faces, process=False)), build_volume=(500, 500, 500))
    assert report.open_edges == 0 and report.shells == 1
    assert volume(out) > 0
    assert volume(out) == pytest.approx(mesh.volume, rel=1e-6)
