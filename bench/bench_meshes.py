"""The meshes the slicer benchmark (bench/slicers.py) slices, made once into bench/.cache/meshes.

    python bench/bench_meshes.py [--meshes NAME,...] [--force]

Builds (or finds in the cache) and lists every benchmark mesh: name, triangles,
size, whether it is closed.  All are binary STL, placed with their XY centre at
the centre of a 220 x 220 mm bed and their bottom at z = 0 (CuraEngine slices
the mesh where it stands and drops whatever is below z = 0).  None is scaled:
every one fits the 220 x 220 x 250 mm volume as it comes.

- ``scad-*``: examples that Debian's openscad ships in /usr/share/openscad/examples,
  rendered with ``openscad -o x.stl file.scad``; each renders in under 15 s
  and is one closed body.  These are the "small parts".
- ``logo-subdiv``: the OpenSCAD logo (8,120 triangles) with every triangle split
  in four, three times (trimesh ``subdivide``: midpoints shared across edges,
  so the mesh stays closed): 519,680 triangles, the same shape.
- ``sphere-1.4m``: a 50 mm UV sphere of 592 x 592 segments: 1,397,120 triangles.

Not committed (the cache folder is git-ignored); rebuilding takes about a minute.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MESH_CACHE = REPO / "bench" / ".cache" / "meshes"
SCAD_EXAMPLES = Path("/usr/share/openscad/examples")
BED_CENTRE = (110.0, 110.0)
BED_SIZE = (220.0, 220.0, 250.0)

# example file (relative to SCAD_EXAMPLES) -> what it is; picked for a render under 15 s, one closed body
SCAD_PICKS = {
    "example001": ("Old/example001.scad", "sphere minus three cylinders, 43 mm"),
    "example002": ("Old/example002.scad", "cube and cylinder CSG, 30 x 30 x 35 mm"),
    "example004": ("Old/example004.scad", "cube minus sphere, 30 mm"),
    "example009": ("Old/example009.scad", "fan wheel from DXF extrusions, 34 mm"),
    "example010": ("Old/example010.scad", "surface from a height map intersected with a sphere, 45 mm"),
    "logo": ("Basics/logo.scad", "the OpenSCAD logo, 43 mm"),
}


@dataclass(frozen=True)
class BenchMesh:
    name: str
    kind: str  # "small" (an OpenSCAD example) or "large"
    description: str
    path: Path

    @property
    def triangles(self) -> int:
        return stl_triangle_count(self.path)


def stl_triangle_count(path: Path) -> int:
    """The triangle count in a binary STL's header (bytes 80..84)."""
    with open(path, "rb") as f:
        f.seek(80)
        return int.from_bytes(f.read(4), "little")


def write_placed_stl(mesh, path: Path) -> None:
    """``mesh`` (a trimesh) as binary STL, moved to the bed centre with its bottom at z = 0."""
    lo, hi = mesh.bounds
    if np.any(hi - lo > np.array(BED_SIZE)):
        raise SystemExit(f"{path.name}: {np.round(hi - lo, 1)} mm does not fit the {BED_SIZE} mm volume")
    shift = np.array([BED_CENTRE[0] - (lo[0] + hi[0]) / 2, BED_CENTRE[1] - (lo[1] + hi[1]) / 2, -lo[2]])
    mesh.apply_translation(shift)
    tmp = path.with_suffix(".tmp")
    mesh.export(tmp, file_type="stl")  # trimesh writes binary STL
    tmp.replace(path)


def render_scad(scad: Path, out: Path) -> None:
    """``openscad -o`` into a temporary ASCII STL, then placed and rewritten as binary."""
    import trimesh

    if shutil.which("openscad") is None:
        raise SystemExit("openscad not found: apt-get install openscad")
    raw = out.with_suffix(".openscad.stl")
    proc = subprocess.run(["openscad", "-o", str(raw), str(scad)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not raw.exists():
        raise SystemExit(f"openscad failed on {scad}: {proc.stderr.strip()[-2000:]}")
    mesh = trimesh.load(raw, file_type="stl", process=True)
    raw.unlink()
    write_placed_stl(mesh, out)


def build_logo_subdiv(out: Path) -> None:
    import trimesh

    base = ensure_mesh("scad-logo").path
    mesh = trimesh.load(base, file_type="stl", process=True)
    for _ in range(3):
        mesh = mesh.subdivide()
    if not mesh.is_watertight:
        raise SystemExit("logo-subdiv: subdivision opened the mesh")
    write_placed_stl(mesh, out)


def build_sphere(out: Path, radius: float = 25.0) -> None:
    import trimesh

    write_placed_stl(trimesh.creation.uv_sphere(radius=radius, count=[592, 592]), out)


def _catalogue() -> dict[str, tuple[str, str, object]]:
    """name -> (kind, description, builder(out_path))."""
    table: dict[str, tuple[str, str, object]] = {}
    for name, (rel, what) in SCAD_PICKS.items():
        table[f"scad-{name}"] = ("small", f"OpenSCAD {rel}: {what}",
                                 lambda out, rel=rel: render_scad(SCAD_EXAMPLES / rel, out))
    table["logo-subdiv"] = ("large", "OpenSCAD logo subdivided 3 times (x64 triangles)", build_logo_subdiv)
    table["sphere-1.4m"] = ("large", "UV sphere, 50 mm, 592 x 592 segments", build_sphere)
    # twice the layers, each twice as long: where CuraEngine takes 5 s or more on a fast machine too (goal 1)
    table["sphere-1.4m-100mm"] = ("large", "UV sphere, 100 mm, 592 x 592 segments",
                                  lambda out: build_sphere(out, radius=50.0))
    return table


CATALOGUE = _catalogue()
MESH_NAMES = tuple(CATALOGUE)


def mesh_path(name: str) -> Path:
    """Where mesh ``name`` is cached."""
    return MESH_CACHE / f"{name}.stl"


def ensure_mesh(name: str, force: bool = False) -> BenchMesh:
    """The benchmark mesh ``name``, built into the cache unless it is there already."""
    if name not in CATALOGUE:
        raise SystemExit(f"unknown mesh {name!r}; known: {', '.join(MESH_NAMES)}")
    kind, description, build = CATALOGUE[name]
    path = mesh_path(name)
    if force or not path.exists():
        MESH_CACHE.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        print(f"building mesh {name} ...", file=sys.stderr, flush=True)
        build(path)
        print(f"  {name}: {stl_triangle_count(path):,} triangles in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr, flush=True)
    return BenchMesh(name, kind, description, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meshes", default=",".join(MESH_NAMES), help="comma-separated names (default: all)")
    ap.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = ap.parse_args()
    import trimesh

    print(f"{'mesh':<18} {'kind':<6} {'triangles':>10}  {'size mm':<22} closed  description")
    for name in args.meshes.split(","):
        m = ensure_mesh(name.strip(), force=args.force)
        tm = trimesh.load(m.path, file_type="stl", process=True)
        size = "x".join(f"{v:.1f}" for v in tm.extents)
        print(f"{m.name:<18} {m.kind:<6} {m.triangles:>10,}  {size:<22} {str(tm.is_watertight):<6}  {m.description}")


if __name__ == "__main__":
    main()
