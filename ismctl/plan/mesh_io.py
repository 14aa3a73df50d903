"""Mesh files to a ``Mesh``: STL (binary and ASCII), OBJ and 3MF.

Parsing is vectorised (``np.frombuffer`` and regular expressions over the
bytes, numbers converted by numpy in one go) because a part can have millions
of triangles.  Binary STL, the format of big parts, is read in chunks of
records whose float32 corners are welded as they come (``mesh_topology.Welder``),
so neither the file nor a float64 copy of every corner (100 MB for 1.4M
triangles) is ever held whole.  ASCII STL comes back as a triangle soup (every
corner its own vertex): welding it is ``mesh_repair``'s job.  Coordinates are millimetres; STL and OBJ
carry no unit, 3MF's ``unit`` is converted.  3MF uses the standard library
(zipfile, ElementTree): the format is plain XML in a zip, so no dependency.
"""

from __future__ import annotations

import itertools
import os
import posixpath
import re
import zipfile
import xml.etree.ElementTree as ET
from io import BytesIO
from pathlib import Path

import numpy as np

from .mesh_topology import WELD_CHUNK_ROWS, Welder
from .model import Mesh, PlanError

SUPPORTED = "STL (binary or ASCII), OBJ, 3MF"

_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])
assert _STL_RECORD.itemsize == 50
_STL_CHUNK = WELD_CHUNK_ROWS // 3  # triangles read and welded at a time

_NUM = rb"(\S+)"
_WS = rb"\s+"
_STL_FACET = re.compile(
    rb"facet" + _WS + rb"normal" + (_WS + rb"\S+") * 3 + _WS + rb"outer" + _WS + rb"loop"
    + (_WS + rb"vertex" + (_WS + _NUM) * 3) * 3 + _WS + rb"endloop" + _WS + rb"endfacet\b",
    re.IGNORECASE,
)
_SKELETON_CASE = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
_SKELETON_DELETE = b"0123456789.+-eEnNaAiIfF \t\r\n\v\f"
_SKELETON_FACET = b"facet normal 0 0 0 outer loop vertex 0 0 0 vertex 0 0 0 vertex 0 0 0 endloop endfacet".translate(
    _SKELETON_CASE, _SKELETON_DELETE
)
_STL_FACET_START = re.compile(rb"(?<![A-Za-z])facet\b", re.IGNORECASE)

_OBJ_RECORD = re.compile(rb"^[ \t]*(v|f)[ \t]+([^\r\n#]*)", re.MULTILINE)
_OBJ_XYZ = re.compile(rb"^[ \t]*(\S+)[ \t]+(\S+)[ \t]+(\S+)", re.MULTILINE)

_3MF_UNITS_MM = {"micron": 0.001, "millimeter": 1.0, "centimeter": 10.0, "inch": 25.4, "foot": 304.8, "meter": 1000.0}
_3MF_MODEL_REL = "http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"
_3MF_DEFAULT_MODEL = "3D/3dmodel.model"


def load_mesh(path: str | Path, data: bytes | None = None, name: str | None = None) -> Mesh:
    """Read a mesh file (or ``data``, its bytes; ``path`` then only names it and its format)."""
    path = Path(path)
    label, suffix = str(path), path.suffix.lower()
    if data is None:
        try:
            with path.open("rb") as file:
                count = _binary_stl_count(file.read(84), os.fstat(file.fileno()).st_size)
                if suffix == ".stl" and count is not None:
                    vertices, faces = _read_binary_stl(label, file, count)
                else:
                    file.seek(0)
                    data = file.read()
        except OSError as exc:
            raise PlanError(f"cannot read mesh file {label!r}: {exc.strerror or exc}") from exc
    if data is not None:
        vertices, faces = _parse(label, suffix, data)
    return Mesh(vertices, faces, name if name is not None else path.name)


def _parse(label: str, suffix: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    if suffix == ".3mf" or (suffix not in (".stl", ".obj") and data[:4] == b"PK\x03\x04"):
        return _parse_3mf(label, data)
    if suffix == ".obj":
        return _parse_obj(label, data)
    if suffix == ".stl" or _looks_like_stl(data):
        return _parse_stl(label, data)
    if _OBJ_RECORD.search(data[:65536]):
        return _parse_obj(label, data)
    raise PlanError(f"{label!r}: not a mesh file this slicer reads (supported: {SUPPORTED})")


# ---- STL ---------------------------------------------------------------------------------------


def _binary_stl_count(head: bytes, size: int) -> int | None:
    """The triangle count if a file starting with ``head`` has exactly the size a binary STL with that count has."""
    if size < 84 or len(head) < 84:
        return None
    count = int.from_bytes(head[80:84], "little")
    return count if size == 84 + 50 * count else None


def _looks_like_stl(data: bytes) -> bool:
    return _binary_stl_count(data, len(data)) is not None or data.lstrip()[:5].lower() == b"solid"


def _parse_stl(label: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    # A binary STL's 80-byte header may start with "solid" too: the size rule decides.
    count = _binary_stl_count(data, len(data))
    if count is not None:
        records = np.frombuffer(data, dtype=_STL_RECORD, count=count, offset=84)
        return _weld_stl_records(count, (records[s:s + _STL_CHUNK] for s in range(0, count, _STL_CHUNK)))
    if data.lstrip()[:5].lower() == b"solid" and re.search(rb"\bfacet\b|\bendsolid\b", data[:4096], re.IGNORECASE):
        return _parse_ascii_stl(label, data)
    if len(data) < 84:
        raise PlanError(f"{label!r}: binary STL shorter than its 84-byte header ({len(data)} bytes)")
    count = int.from_bytes(data[80:84], "little")
    whole = (len(data) - 84) // 50
    if whole < count:
        raise PlanError(
            f"{label!r}: binary STL truncated: header says {count} triangles ({84 + 50 * count} bytes), "
            f"file has {len(data)} bytes; triangle {whole} is incomplete"
        )
    raise PlanError(
        f"{label!r}: binary STL size mismatch: header says {count} triangles ({84 + 50 * count} bytes), "
        f"file has {len(data)} bytes ({len(data) - 84 - 50 * count} extra)"
    )


def _read_binary_stl(label: str, file, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Weld a binary STL straight from ``file`` (positioned after the header), one chunk of records at a time."""
    buffer = np.empty(min(count, _STL_CHUNK) * _STL_RECORD.itemsize, np.uint8)

    def chunks():
        for start in range(0, count, _STL_CHUNK):
            want = min(_STL_CHUNK, count - start) * _STL_RECORD.itemsize
            got = file.readinto(buffer[:want])
            if got != want:  # the file shrank after its size was read
                raise PlanError(f"{label!r}: binary STL truncated while reading triangle {start + got // 50}")
            yield buffer[:want].view(_STL_RECORD)

    return _weld_stl_records(count, chunks())


def _weld_stl_records(count: int, chunks) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (float64, welded bit-exactly in float32) and int32 faces of ``count`` STL records given in chunks."""
    welder = Welder(np.float32, expected=count // 2 + 1024)  # a closed mesh has about half as many vertices as faces
    faces = np.empty((count, 3), np.int32)
    corner_index = faces.reshape(-1)
    done = 0
    for records in chunks:
        welder.add(records["corners"], corner_index[3 * done:3 * (done + len(records))])
        done += len(records)
    return welder.vertices(), faces


def _parse_ascii_stl(label: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    first = _STL_FACET_START.search(data)
    if first is None:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int32)
    end = max(data.rfind(b"endfacet"), data.rfind(b"ENDFACET"), data.rfind(b"EndFacet")) + len(b"endfacet")
    body = data[first.start():end]
    facets = _STL_FACET.findall(body)
    numbers = np.array(facets, dtype=np.bytes_)
    try:
        vertices = numbers.astype(np.float64).reshape(-1, 3)
    except ValueError:
        index, token = _first_non_number(numbers.ravel())
        match = next(itertools.islice(_STL_FACET.finditer(body), index // 9, None))
        raise PlanError(
            f"{label!r}: ASCII STL vertex coordinate {token!r} on line "
            f"{_line_of(data, first.start() + match.start(1 + index % 9))} is not a number"
        ) from None
    # Layout check in one C pass: with numbers and whitespace deleted, every facet reads the same.
    skeleton = body.translate(_SKELETON_CASE, _SKELETON_DELETE)
    if skeleton != _SKELETON_FACET * len(facets):
        bad = next((i for i in range(0, len(skeleton), len(_SKELETON_FACET))
                    if skeleton[i:i + len(_SKELETON_FACET)] != _SKELETON_FACET), 0) // len(_SKELETON_FACET)
        start = next(itertools.islice(_STL_FACET_START.finditer(body), bad, None), first)
        raise PlanError(
            f"{label!r}: ASCII STL facet {bad} at line {_line_of(data, first.start() + start.start())} is malformed "
            "(expected 'facet normal n n n / outer loop / 3 x vertex x y z / endloop / endfacet')"
        )
    return vertices, np.arange(len(vertices), dtype=np.int32).reshape(-1, 3)


def _first_non_number(tokens: np.ndarray) -> tuple[int, str]:
    for i, token in enumerate(tokens):  # error path only
        try:
            float(token)
        except ValueError:
            return i, token.decode("latin-1")
    return -1, ""


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


# ---- OBJ ---------------------------------------------------------------------------------------


def _parse_obj(label: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    records = _OBJ_RECORD.findall(data)
    is_vertex = np.fromiter((kind == b"v" for kind, _ in records), dtype=bool, count=len(records))
    vertex_rows = [rest for (kind, rest), v in zip(records, is_vertex) if v]
    face_rows = [rest for (kind, rest), v in zip(records, is_vertex) if not v]

    def record_line(record_index: int) -> int:
        match = next(itertools.islice(_OBJ_RECORD.finditer(data), int(record_index), None))
        return _line_of(data, match.start())

    vertex_record = np.flatnonzero(is_vertex)
    face_record = np.flatnonzero(~is_vertex)
    xyz = _OBJ_XYZ.findall(b"\n".join(vertex_rows))
    if len(xyz) != len(vertex_rows):
        bad = next(i for i, row in enumerate(vertex_rows) if not _OBJ_XYZ.match(row))
        raise PlanError(f"{label!r}: OBJ vertex on line {record_line(vertex_record[bad])} needs x y z")
    try:
        vertices = np.array(xyz, dtype=np.bytes_).reshape(-1, 3).astype(np.float64)
    except ValueError:
        index, token = _first_non_number(np.array(xyz, dtype=np.bytes_).ravel())
        raise PlanError(
            f"{label!r}: OBJ vertex coordinate {token!r} on line {record_line(vertex_record[index // 3])} is not a number"
        ) from None
    if not face_rows:
        return vertices, np.zeros((0, 3), np.int32)

    # Corners "i", "i/t", "i//n", "i/t/n": keep the part before the first slash.
    tokens = np.array(re.sub(rb"/[^\s|]*", b"", b" | ".join(face_rows)).split(), dtype=np.bytes_)
    separator = tokens == b"|"
    polygon_of_token = np.cumsum(separator)
    corners = tokens[~separator]
    polygon = polygon_of_token[~separator]
    try:
        index = corners.astype(np.int64)
    except ValueError:
        bad, token = _first_non_number(corners)
        raise PlanError(
            f"{label!r}: OBJ face corner {token!r} on line {record_line(face_record[polygon[bad]])} is not an index"
        ) from None
    counts = np.bincount(polygon, minlength=len(face_rows))
    if (counts < 3).any():
        bad = int(np.argmax(counts < 3))
        raise PlanError(f"{label!r}: OBJ face on line {record_line(face_record[bad])} has fewer than 3 corners")

    # Negative indices count back from the last vertex defined before the face.
    defined_before = np.cumsum(is_vertex)[face_record][polygon]
    index = np.where(index < 0, index + defined_before, index - 1)
    out_of_range = (index < 0) | (index >= len(vertices))
    if out_of_range.any():
        bad = int(np.argmax(out_of_range))
        token = corners[bad].decode("latin-1")
        defined = f"{defined_before[bad]} vertices precede it" if token.startswith("-") else f"the file has {len(vertices)} vertices"
        raise PlanError(
            f"{label!r}: OBJ face on line {record_line(face_record[polygon[bad]])} uses vertex {token}, but {defined}"
        )
    return vertices, _fan_triangulate(index, counts)


def _fan_triangulate(corners: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Triangles (c0, ci, ci+1) of each polygon, polygons given as consecutive runs of ``corners``."""
    first = np.cumsum(counts) - counts
    n_tri = counts - 2
    tri_polygon = np.repeat(np.arange(len(counts)), n_tri)
    local = np.arange(int(n_tri.sum())) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri)
    a = first[tri_polygon]
    return np.stack([corners[a], corners[a + 1 + local], corners[a + 2 + local]], axis=1).astype(np.int32)


# ---- 3MF ---------------------------------------------------------------------------------------


class _ThreeMF:
    """One 3MF package: model parts parsed on demand, objects resolved to (vertices, faces) in mm."""

    def __init__(self, label: str, data: bytes):
        self.label = label
        try:
            self.zip = zipfile.ZipFile(BytesIO(data))
        except zipfile.BadZipFile:
            raise PlanError(f"{label!r}: not a 3MF file (not a zip archive)") from None
        self.parts: dict[str, tuple[float, dict[str, ET.Element], list[ET.Element]]] = {}
        self.resolved: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def root_model(self) -> str:
        names = set(self.zip.namelist())
        if "_rels/.rels" in names:
            rels = self._xml("_rels/.rels")
            for rel in rels.iter():
                if _local(rel.tag) == "Relationship" and rel.get("Type") == _3MF_MODEL_REL:
                    return rel.get("Target", "").lstrip("/")
        if _3MF_DEFAULT_MODEL in names:
            return _3MF_DEFAULT_MODEL
        raise PlanError(f"{self.label!r}: 3MF without a model part (no 3D model relationship, no {_3MF_DEFAULT_MODEL})")

    def _xml(self, part: str) -> ET.Element:
        try:
            return ET.fromstring(self.zip.read(part))
        except KeyError:
            raise PlanError(f"{self.label!r}: 3MF part {part!r} is missing") from None
        except ET.ParseError as exc:
            raise PlanError(f"{self.label!r}: 3MF part {part!r} is not valid XML: {exc}") from None

    def part(self, name: str):
        if name not in self.parts:
            root = self._xml(name)
            unit = root.get("unit", "millimeter")
            if unit not in _3MF_UNITS_MM:
                raise PlanError(f"{self.label!r}: 3MF part {name!r} has unknown unit {unit!r}")
            objects = {obj.get("id", ""): obj for obj in root.iter() if _local(obj.tag) == "object"}
            items = [item for item in root.iter() if _local(item.tag) == "item"]
            self.parts[name] = (_3MF_UNITS_MM[unit], objects, items)
        return self.parts[name]

    def build(self) -> tuple[np.ndarray, np.ndarray]:
        model = self.root_model()
        scale, objects, items = self.part(model)
        if not items:
            raise PlanError(f"{self.label!r}: 3MF build has no items")
        pieces = []
        for item in items:
            vertices, faces = self.object(_path_attr(item, model), item.get("objectid", ""), ())
            pieces.append(_transformed(vertices, faces, _transform(self.label, item.get("transform"))))
        vertices = np.concatenate([v for v, _ in pieces]) * scale
        offsets = np.cumsum([0] + [len(v) for v, _ in pieces[:-1]])
        faces = np.concatenate([f + o for (_, f), o in zip(pieces, offsets)]).astype(np.int32)
        return vertices, faces

    def object(self, part: str, object_id: str, seen: tuple) -> tuple[np.ndarray, np.ndarray]:
        """Vertices (in ``part``'s unit) and faces of one object, components placed and converted."""
        key = (part, object_id)
        if key in seen:
            raise PlanError(f"{self.label!r}: 3MF object {object_id} contains itself")
        if key in self.resolved:
            return self.resolved[key]
        scale, objects, _ = self.part(part)
        obj = objects.get(object_id)
        if obj is None:
            raise PlanError(f"{self.label!r}: 3MF refers to object {object_id!r}, which {part!r} does not define")
        pieces = []
        for child in obj:
            if _local(child.tag) == "mesh":
                pieces.append(self._mesh(object_id, child))
            elif _local(child.tag) == "components":
                for comp in child:
                    if _local(comp.tag) != "component":
                        continue
                    sub_part = _path_attr(comp, part)
                    v, f = self.object(sub_part, comp.get("objectid", ""), seen + (key,))
                    v = v * (self.part(sub_part)[0] / scale)
                    pieces.append(_transformed(v, f, _transform(self.label, comp.get("transform"))))
        if not pieces:
            pieces.append((np.zeros((0, 3)), np.zeros((0, 3), np.int32)))
        offsets = np.cumsum([0] + [len(v) for v, _ in pieces[:-1]])
        result = (np.concatenate([v for v, _ in pieces]), np.concatenate([f + o for (_, f), o in zip(pieces, offsets)]))
        self.resolved[key] = result
        return result

    def _mesh(self, object_id: str, mesh: ET.Element) -> tuple[np.ndarray, np.ndarray]:
        xyz, corners = [], []
        for group in mesh:
            if _local(group.tag) == "vertices":
                xyz = [(v.get("x"), v.get("y"), v.get("z")) for v in group]
            elif _local(group.tag) == "triangles":
                corners = [(t.get("v1"), t.get("v2"), t.get("v3")) for t in group]
        try:
            vertices = np.array(xyz, dtype=np.float64).reshape(-1, 3)
            faces = np.array(corners, dtype=np.int64).reshape(-1, 3)
        except (TypeError, ValueError):
            raise PlanError(
                f"{self.label!r}: 3MF object {object_id}: a vertex or triangle has a missing or non-numeric attribute"
            ) from None
        bad = (faces < 0) | (faces >= len(vertices))
        if bad.any():
            tri = int(np.argmax(bad.any(axis=1)))
            raise PlanError(
                f"{self.label!r}: 3MF object {object_id}: triangle {tri} uses vertex {int(faces[bad][0])}, "
                f"the mesh has {len(vertices)} vertices"
            )
        return vertices, faces.astype(np.int32)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _path_attr(element: ET.Element, default: str) -> str:
    """The production extension's ``p:path`` (another model part), else ``default``."""
    for attr, value in element.attrib.items():
        if _local(attr) == "path":
            return posixpath.normpath(value.lstrip("/"))
    return default


def _transform(label: str, text: str | None) -> np.ndarray | None:
    """A 3MF transform (12 numbers, row vectors: p' = p @ M[:3] + M[3]) as a 4x3 matrix."""
    if text is None:
        return None
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError:
        values = np.zeros(0)
    if values.size != 12 or not np.isfinite(values).all():
        raise PlanError(f"{label!r}: 3MF transform {text!r} is not 12 finite numbers")
    return values.reshape(4, 3)


def _transformed(vertices: np.ndarray, faces: np.ndarray, matrix: np.ndarray | None):
    if matrix is None:
        return vertices, faces
    # A mirroring transform turns counter-clockwise faces clockwise: swap two corners back.
    if np.linalg.det(matrix[:3]) < 0:
        faces = faces[:, [0, 2, 1]]
    return vertices @ matrix[:3] + matrix[3], faces


def _parse_3mf(label: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    return _ThreeMF(label, data).build()
