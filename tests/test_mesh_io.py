"""mesh_io: every format against trimesh's exporter or hand-written files, and bad files named."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import trimesh

from ismctl.plan import mesh_io
from ismctl.plan.mesh_io import load_mesh
from ismctl.plan.model import PlanError


def triangle_set(vertices: np.ndarray, faces: np.ndarray, decimals: int = 6) -> np.ndarray:
    """Triangles as rows of 9 coordinates, each started at its smallest corner (winding kept), rows sorted."""
    tri = np.round(vertices[faces], decimals)  # (m, 3, 3)
    smallest = np.array([min(range(3), key=lambda k: tuple(t[k])) for t in tri])
    rolled = np.stack([tri[np.arange(len(tri)), (smallest + k) % 3] for k in range(3)], axis=1).reshape(len(tri), 9)
    return rolled[np.lexsort(rolled.T[::-1])]


def sample_mesh() -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=12.5)
    mesh.apply_translation([30.0, 40.0, 12.5])
    return mesh


def test_binary_stl_round_trip():
    mesh = sample_mesh()
    loaded = load_mesh("part.stl", mesh.export(file_type="stl"))
    assert loaded.name == "part.stl"
    assert len(loaded.faces) == len(mesh.faces)
    assert len(loaded.vertices) == len(mesh.vertices)  # welded while read
    expected = mesh.vertices.astype(np.float32).astype(np.float64)
    assert np.array_equal(triangle_set(loaded.vertices, loaded.faces), triangle_set(expected, mesh.faces))


def binary_stl(corners: np.ndarray) -> bytes:
    """A binary STL of float32 triangles (m, 3, 3), normals left zero."""
    records = np.zeros(len(corners), dtype=[("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attr", "<u2")])
    records["corners"] = corners
    return b"\0" * 80 + len(corners).to_bytes(4, "little") + records.tobytes()


def weld_reference(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First-seen distinct corners (float32 bits, -0.0 as 0.0) and each corner's index, with a dict."""
    index: dict[bytes, int] = {}
    for row in corners.reshape(-1, 3) + np.float32(0.0):
        index.setdefault(row.tobytes(), len(index))
    vertices = np.frombuffer(b"".join(index), np.float32).reshape(-1, 3)
    faces = [index[row.tobytes()] for row in corners.reshape(-1, 3) + np.float32(0.0)]
    return vertices.astype(np.float64), np.array(faces).reshape(-1, 3)


def test_big_binary_stl_is_welded_in_chunks_from_file_and_bytes(tmp_path):
    """More triangles than one read chunk; corners repeat across chunks, -0.0 meets 0.0, a NaN corner welds too."""
    rng = np.random.default_rng(5)
    grid = rng.integers(-3, 40, size=(5000, 3)).astype(np.float32) * np.float32(0.25)
    grid[:10] = -0.0
    grid[10] = np.nan
    corners = grid[rng.integers(0, len(grid), size=(3 * mesh_io._STL_CHUNK + 7, 3))]
    ref_vertices, ref_faces = weld_reference(corners)
    path = tmp_path / "big.stl"
    path.write_bytes(binary_stl(corners))
    for loaded in (load_mesh(path), load_mesh("big.stl", path.read_bytes())):
        assert np.array_equal(loaded.vertices, ref_vertices, equal_nan=True)
        assert np.array_equal(loaded.faces, ref_faces)
        assert not ((loaded.vertices == 0) & np.signbit(loaded.vertices)).any()  # no -0.0 left
    assert len(ref_vertices) <= len(grid) < corners.size // 3


def test_binary_stl_that_shrinks_while_read_is_refused():
    data = binary_stl(np.ones((10, 3, 3), np.float32))
    with pytest.raises(PlanError, match=r"'moving.stl': binary STL truncated while reading triangle 4"):
        mesh_io._read_binary_stl("moving.stl", io.BytesIO(data[84:84 + 50 * 4 + 20]), 10)


def test_binary_stl_whose_header_starts_with_solid():
    data = bytearray(sample_mesh().export(file_type="stl"))
    data[:80] = b"solid exported by a CAD tool that writes binary".ljust(80, b" ")
    loaded = load_mesh("x.stl", bytes(data))
    assert len(loaded.faces) == len(sample_mesh().faces)


def test_ascii_stl_round_trip_and_upper_case():
    mesh = sample_mesh()
    text = mesh.export(file_type="stl_ascii")
    loaded = load_mesh("part.stl", text.encode())
    assert np.allclose(triangle_set(loaded.vertices, loaded.faces), triangle_set(mesh.vertices, mesh.faces), atol=1e-6)
    upper = load_mesh("part.stl", text.upper().encode())
    assert np.array_equal(upper.vertices, loaded.vertices)


ASCII_HEAD = b"solid t\n"
ASCII_FACET = b"facet normal 0 0 1\n outer loop\n  vertex 0 0 0\n  vertex 1 0 0\n  vertex 0 1 0\n endloop\nendfacet\n"


def test_ascii_stl_without_extension_is_recognised():
    loaded = load_mesh("upload", ASCII_HEAD + ASCII_FACET * 2 + b"endsolid t\n")
    assert loaded.faces.shape == (2, 3)
    assert np.array_equal(loaded.vertices[:3], [[0, 0, 0], [1, 0, 0], [0, 1, 0]])


def test_ascii_stl_non_numeric_names_line():
    bad = ASCII_FACET.replace(b"vertex 1 0 0", b"vertex 1 zero 0")
    with pytest.raises(PlanError, match=r"'bad.stl'.*'zero' on line 12 is not a number"):
        load_mesh("bad.stl", ASCII_HEAD + ASCII_FACET + bad + b"endsolid t\n")


def test_ascii_stl_facet_with_wrong_vertex_count_names_line():
    four = ASCII_FACET.replace(b" endloop", b"  vertex 1 1 0\n endloop")
    with pytest.raises(PlanError, match=r"'bad.stl'.*facet 1 at line 9 is malformed"):
        load_mesh("bad.stl", ASCII_HEAD + ASCII_FACET + four + ASCII_FACET + b"endsolid t\n")


def test_truncated_binary_stl_names_size_and_triangle():
    data = sample_mesh().export(file_type="stl")
    with pytest.raises(PlanError, match=r"'cut.stl'.*truncated.*header says 320 triangles.*triangle 319 is incomplete"):
        load_mesh("cut.stl", data[:-20])
    with pytest.raises(PlanError, match=r"'long.stl'.*size mismatch.*7 extra"):
        load_mesh("long.stl", data + b"garbage")
    with pytest.raises(PlanError, match=r"shorter than its 84-byte header"):
        load_mesh("tiny.stl", b"\x00" * 20)


def test_obj_round_trip():
    mesh = sample_mesh()
    loaded = load_mesh("part.obj", mesh.export(file_type="obj").encode())
    assert np.allclose(triangle_set(loaded.vertices, loaded.faces), triangle_set(mesh.vertices, mesh.faces), atol=1e-6)


OBJ_SQUARE_PYRAMID = b"""# pyramid
o pyramid
v 0 0 0
v 10 0 0
v 10 10 0
v 0 10 0
vt 0 0
vn 0 0 1
v 5 5 8
f 4/1/1 3/1/1 2/1/1 1/1/1
s off
f 1//1 2//1 5//1
f 2 3 5
f -3 -2 -1
f -2 -5 -1 # comment
"""


def test_obj_polygons_slash_forms_and_negative_indices():
    loaded = load_mesh("p.obj", OBJ_SQUARE_PYRAMID)
    assert loaded.vertices.shape == (5, 3)
    assert loaded.faces.tolist() == [[3, 2, 1], [3, 1, 0], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]]


def test_obj_negative_index_counts_from_the_face_position():
    data = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf -3 -2 -1\nv 0 0 1\nf -4 -2 -1\n"
    assert load_mesh("n.obj", data).faces.tolist() == [[0, 1, 2], [0, 2, 3]]


def test_obj_out_of_range_index_names_line():
    with pytest.raises(PlanError, match=r"'p.obj'.*line 13 uses vertex 7, but the file has 5 vertices"):
        load_mesh("p.obj", OBJ_SQUARE_PYRAMID.replace(b"f 2 3 5", b"f 2 3 7"))
    with pytest.raises(PlanError, match=r"line 2 uses vertex -2, but 1 vertices precede it"):
        load_mesh("q.obj", b"v 0 0 0\nf -1 -2 -4\nv 1 1 1\nv 2 2 2\n")


def test_obj_bad_numbers_name_line():
    with pytest.raises(PlanError, match=r"'p.obj'.*'x' on line 5 is not a number"):
        load_mesh("p.obj", OBJ_SQUARE_PYRAMID.replace(b"v 10 10 0", b"v 10 x 0"))
    with pytest.raises(PlanError, match=r"'p.obj'.*line 12 has fewer than 3 corners"):
        load_mesh("p.obj", OBJ_SQUARE_PYRAMID.replace(b"f 1//1 2//1 5//1", b"f 1 2"))


def write_3mf(model_xml: str, model_path: str = "3D/3dmodel.model", extra: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr(
            "_rels/.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Target="/{model_path}" Id="rel0" '
            'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/></Relationships>',
        )
        z.writestr(model_path, model_xml)
        for name, text in (extra or {}).items():
            z.writestr(name, text)
    return buffer.getvalue()


def model_xml(objects: str, build: str, unit: str = "millimeter") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><model unit="{unit}" '
        'xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02" '
        'xmlns:p="http://schemas.microsoft.com/3dmanufacturing/production/2015/06">'
        f"<resources>{objects}</resources><build>{build}</build></model>"
    )


def mesh_object(object_id: int, mesh: trimesh.Trimesh) -> str:
    vertices = "".join(f'<vertex x="{x!r}" y="{y!r}" z="{z!r}"/>' for x, y, z in mesh.vertices.tolist())
    triangles = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in mesh.faces.tolist())
    return f'<object id="{object_id}" type="model"><mesh><vertices>{vertices}</vertices><triangles>{triangles}</triangles></mesh></object>'


def test_3mf_units_components_and_build_transforms():
    box = trimesh.creation.box((1.0, 2.0, 3.0))
    objects = (
        mesh_object(1, box)
        + '<object id="2" type="model"><components>'
        + '<component objectid="1" transform="1 0 0 0 1 0 0 0 1 5 0 0"/>'
        + '<component objectid="1" transform="-1 0 0 0 1 0 0 0 1 0 0 0"/>'  # mirrored
        + "</components></object>"
    )
    build = '<item objectid="2" transform="0 1 0 -1 0 0 0 0 1 0 0 1"/>'  # 90 degrees about z, then up 1
    data = write_3mf(model_xml(objects, build, unit="inch"), model_path="3D/custom.model")
    loaded = load_mesh("parts.3mf", data)

    rotate = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1.0]])
    first = (box.vertices + [5, 0, 0]) @ rotate + [0, 0, 1]
    second = (box.vertices * [-1, 1, 1]) @ rotate + [0, 0, 1]
    expected_vertices = np.vstack([first, second]) * 25.4
    expected_faces = np.vstack([box.faces, box.faces[:, [0, 2, 1]] + len(box.vertices)])
    assert np.allclose(loaded.vertices, expected_vertices)
    assert np.array_equal(loaded.faces, expected_faces)
    # The mirrored copy's winding was swapped back: both copies enclose positive volume.
    volume = trimesh.Trimesh(loaded.vertices, loaded.faces, process=False).volume
    assert volume == pytest.approx(2 * 6 * 25.4**3)


def test_3mf_production_path_to_another_model_part():
    box = trimesh.creation.box((2.0, 2.0, 2.0))
    child = model_xml(mesh_object(7, box), "")
    root = model_xml(
        '<object id="1" type="model"><components><component p:path="/3D/child.model" objectid="7"/></components></object>',
        '<item objectid="1"/>',
        unit="centimeter",
    )
    loaded = load_mesh("a.3mf", write_3mf(root, extra={"3D/child.model": child}))
    assert np.allclose(loaded.vertices, box.vertices)  # the child part is in millimetres


def test_3mf_round_trip_with_trimesh_exporter():
    pytest.importorskip("lxml")  # trimesh writes 3MF through lxml
    mesh = sample_mesh()
    loaded = load_mesh("t.3mf", mesh.export(file_type="3mf"))
    assert np.allclose(triangle_set(loaded.vertices, loaded.faces), triangle_set(mesh.vertices, mesh.faces), atol=1e-6)


def test_3mf_errors_name_the_problem():
    box = trimesh.creation.box((1.0, 1.0, 1.0))
    with pytest.raises(PlanError, match=r"'m.3mf'.*object 3.*triangle 0 uses vertex 99, the mesh has 3 vertices"):
        load_mesh("m.3mf", write_3mf(model_xml(
            '<object id="3"><mesh><vertices><vertex x="0" y="0" z="0"/><vertex x="1" y="0" z="0"/>'
            '<vertex x="0" y="1" z="0"/></vertices><triangles><triangle v1="0" v2="1" v3="99"/></triangles></mesh></object>',
            '<item objectid="3"/>')))
    with pytest.raises(PlanError, match=r"refers to object '9'"):
        load_mesh("m.3mf", write_3mf(model_xml(mesh_object(1, box), '<item objectid="9"/>')))
    with pytest.raises(PlanError, match=r"transform '1 0 0' is not 12 finite numbers"):
        load_mesh("m.3mf", write_3mf(model_xml(mesh_object(1, box), '<item objectid="1" transform="1 0 0"/>')))
    with pytest.raises(PlanError, match=r"unknown unit 'furlong'"):
        load_mesh("m.3mf", write_3mf(model_xml(mesh_object(1, box), '<item objectid="1"/>', unit="furlong")))
    with pytest.raises(PlanError, match=r"not valid XML"):
        load_mesh("m.3mf", write_3mf("<model><resources>"))
    with pytest.raises(PlanError, match=r"not a zip archive"):
        load_mesh("m.3mf", b"PK\x03\x04 but not really")


def test_unknown_format_lists_supported(tmp_path):
    with pytest.raises(PlanError, match=r"'notes.txt'.*supported: STL \(binary or ASCII\), OBJ, 3MF"):
        load_mesh("notes.txt", b"just some text, nothing like a mesh\n")
    with pytest.raises(PlanError, match=r"cannot read mesh file"):
        load_mesh(tmp_path / "missing.stl")


def test_reads_from_disk(tmp_path):
    path = tmp_path / "on_disk.stl"
    path.write_bytes(sample_mesh().export(file_type="stl"))
    assert load_mesh(path, name="bracket").name == "bracket"
