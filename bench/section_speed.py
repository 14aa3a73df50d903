"""Mesh to contours: our slice_mesh against trimesh's section_multiplane, same mesh, same planes.

Warm runs (kernels compiled first), best of ``--repeat``.  trimesh is timed on
every ``--trimesh-stride``-th plane and scaled to all planes (it is linear in
the number of planes), so the big meshes finish in reasonable time.

    python bench/section_speed.py [--repeat 3] [--trimesh-stride 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import trimesh

from ismctl.plan.model import Mesh
from ismctl.plan.slicing import slice_mesh


def best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def cases():
    for sub in (7, 8):
        yield f"icosphere {sub}, 50 mm", trimesh.creation.icosphere(subdivisions=sub, radius=25.0)
    yield "uv sphere, 50 mm", trimesh.creation.uv_sphere(radius=25.0, count=[500, 700])
    yield "torus 40/12 mm", trimesh.creation.torus(20.0, 6.0, major_sections=1024, minor_sections=512)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trimesh-stride", type=int, default=10)
    parser.add_argument("--layer", type=float, default=0.2)
    args = parser.parse_args()

    warm = trimesh.creation.icosphere(subdivisions=2)
    z = np.array([0.1])
    slice_mesh(Mesh(warm.vertices, warm.faces), z, z, z)

    print(f"{'mesh':<22}{'triangles':>11}{'planes':>8}{'ours s':>9}{'trimesh s':>11}{'ratio':>8}{'points':>9}")
    for name, tm in cases():
        mesh = Mesh(tm.vertices, tm.faces, name)
        lo, hi = tm.bounds[:, 2]
        z_top = np.arange(lo + args.layer, hi + args.layer / 2, args.layer)
        height = np.full(len(z_top), args.layer)
        z_cut = z_top - height / 2
        stack = None

        def ours():
            nonlocal stack
            stack = slice_mesh(mesh, z_cut, z_top, height)

        t_ours = best_time(ours, args.repeat)
        few = z_cut[:: args.trimesh_stride]
        t_few = best_time(lambda: tm.section_multiplane(plane_origin=[0, 0, 0], plane_normal=[0, 0, 1],
                                                        heights=list(few)), 1)
        t_theirs = t_few * len(z_cut) / len(few)
        print(f"{name:<22}{len(tm.faces):>11}{len(z_cut):>8}{t_ours:>9.3f}{t_theirs:>11.2f}"
              f"{t_theirs / t_ours:>7.0f}x{len(stack.points):>9}")


if __name__ == "__main__":
    main()
