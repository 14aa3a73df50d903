"""Infill: lattice lines clipped inside the fill area, with the material the density asks for."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import LineString

from ismctl.plan.fdm_settings import SliceSettings
from ismctl.plan.infill import clip_polylines, fill_regions, scanline_segments
from ismctl.plan.regions import build_regions

from test_regions import SHAPES, circle, make_stack, shape, square


def reference_scanline(loops, angle, spacing, min_length):
    """Slow scanline: every lattice line against every edge, same half-open rule as the kernel."""
    u, n = np.array([math.cos(angle), math.sin(angle)]), np.array([-math.sin(angle), math.cos(angle)])
    pts = np.concatenate(loops)
    out = []
    for k in range(math.ceil((pts @ n).min() / spacing), math.floor((pts @ n).max() / spacing) + 1):
        c, hits = k * spacing, []
        for loop in loops:
            for i in range(len(loop)):
                a, b = loop[i], loop[(i + 1) % len(loop)]
                ta, tb = a @ n, b @ n
                if math.ceil(min(ta, tb) / spacing) <= k < math.ceil(max(ta, tb) / spacing):
                    t = min(1.0, max(0.0, (c - ta) / (tb - ta)))
                    hits.append(a @ u + t * (b @ u - a @ u))
        hits.sort()
        for s0, s1 in zip(hits[::2], hits[1::2]):
            if s1 - s0 >= min_length:
                out.append([*(s0 * u + c * n), *(s1 * u + c * n)])
    return np.array(out).reshape(-1, 4)


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("angle", [0.0, 30.0, 45.0, 90.0])
def test_scanline_kernel_matches_reference(name, angle):
    loops = SHAPES[name]
    points = np.concatenate(loops)
    start = np.concatenate(([0], np.cumsum([len(p) for p in loops]))).astype(np.int64)
    got = scanline_segments(points, start, math.radians(angle), 0.7, 0.3)
    assert np.allclose(got, reference_scanline(loops, math.radians(angle), 0.7, 0.3))
    assert len(got) > 0


def solid_layer(loops, **changes):
    s = SliceSettings(infill_density=1.0, **changes)
    regions = build_regions(make_stack([loops] * 3), s)
    fill_regions(regions, s)
    return regions[1], s


@pytest.mark.parametrize("name", SHAPES)
def test_fill_lines_stay_inside_the_fill_area(name):
    for density, pattern in [(1.0, "grid"), (0.2, "grid"), (0.2, "rectilinear"), (0.2, "gyroid")]:
        s = SliceSettings(infill_density=density, infill_pattern=pattern, top_layers=0, bottom_layers=0)
        regions = build_regions(make_stack([SHAPES[name]] * 3), s)
        fill_regions(regions, s)
        r = regions[1]
        for lines, loops in ((r.fill_lines, r.skin), (r.sparse_lines, r.sparse)):
            area = shape(loops).buffer(1e-5)  # Clipper rounds crossings to its 10 nm grid
            for line in lines:
                assert line.shape[0] >= 2 and LineString(line).length >= s.line_width - 1e-9
                assert area.covers(LineString(line)), (name, pattern)


@pytest.mark.parametrize("loops", [[square(0, 0, 20, 20)], [circle(10, 400)]])
def test_solid_layer_material_matches_the_cross_section(loops):
    r, s = solid_layer(loops)
    length = sum(LineString(np.vstack([w, w[:1]])).length for wall in r.walls for w in wall)
    length += sum(LineString(line).length for line in r.fill_lines)
    assert length * s.line_width == pytest.approx(shape(loops).area, rel=0.02)


@pytest.mark.parametrize("pattern", ["rectilinear", "grid"])
def test_sparse_material_matches_density(pattern):
    s = SliceSettings(infill_density=0.2, infill_pattern=pattern)
    regions = build_regions(make_stack([[square(0, 0, 40, 40)]] * 20), s)
    fill_regions(regions, s)
    r = regions[10]
    length = sum(LineString(line).length for line in r.sparse_lines)
    assert length * s.line_width == pytest.approx(0.2 * shape(r.sparse).area, rel=0.04)


def test_gyroid_material_matches_density_over_a_period():
    s = SliceSettings(infill_density=0.2, infill_pattern="gyroid", top_layers=0, bottom_layers=0)
    period = 2 * math.pi * 0.391326 * s.line_width / 0.2
    n_layers = int(round(period / 0.2)) + 1
    regions = build_regions(make_stack([[square(0, 0, 40, 40)]] * n_layers), s)
    fill_regions(regions, s)
    length = sum(LineString(line).length for r in regions[1:] for line in r.sparse_lines)
    area = sum(shape(r.sparse).area for r in regions[1:])
    assert length * s.line_width == pytest.approx(0.2 * area, rel=0.05)


def test_lines_stack_on_a_world_lattice():
    s = SliceSettings(infill_density=0.2, infill_pattern="rectilinear", top_layers=0, bottom_layers=0)
    regions = build_regions(make_stack([[square(0, 0, 20, 20)]] * 4 + [[square(3, 1, 19, 17)]] * 2), s)
    fill_regions(regions, s)
    n = np.array([-math.sin(math.radians(45)), math.cos(math.radians(45))])
    for r in regions[1:]:
        offsets = {round(float(line[0] @ n) / (s.line_width / 0.2) if r.index % 2 == 0 else 0.0, 6)
                   for line in r.sparse_lines}
        assert all(abs(o - round(o)) < 1e-6 for o in offsets)


# ---------------------------------------------------------------- gyroid clipping against shapely

def reference_clip(polylines, loops, min_length):
    """Slow reference: shapely's intersection of each polyline with the area, pieces merged, short ones dropped."""
    from shapely import get_parts
    from shapely.ops import linemerge

    area = shape(loops)
    pieces = []
    for line in polylines:
        lines = [g for g in get_parts(LineString(line).intersection(area)) if g.geom_type == "LineString" and not g.is_empty]
        if not lines:
            continue
        merged = linemerge(lines)
        for piece in getattr(merged, "geoms", [merged]):
            if piece.length >= min_length:
                pieces.append(piece)
    return pieces


def wavy_lines(n, seed):
    rng = np.random.default_rng(seed)
    x = np.linspace(-14, 14, 120)
    return [np.c_[x, y0 + rng.uniform(0.5, 3) * np.sin(x * rng.uniform(0.3, 2) + rng.uniform(0, 6))]
            for y0 in np.linspace(-12, 12, n)]


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_polyline_clip_kernel_matches_shapely(name, seed):
    loops = [p - np.array([10.0, 10.0]) for p in SHAPES[name]]
    polylines = wavy_lines(15, seed) + [np.array([[-15.0, 0.0], [0.0, 0.0], [15.0, 0.0]])]  # one through vertices
    points, start = np.concatenate(polylines), np.cumsum([0] + [len(p) for p in polylines]).astype(np.int64)
    loop_points, loop_start = np.concatenate(loops), np.cumsum([0] + [len(p) for p in loops]).astype(np.int64)
    got, got_start = clip_polylines(points, start, loop_points, loop_start, 0.45)
    pieces = [LineString(got[a:b]) for a, b in zip(got_start[:-1], got_start[1:])]
    expected = reference_clip(polylines, loops, 0.45)
    assert len(pieces) == len(expected) > 0
    assert sum(p.length for p in pieces) == pytest.approx(sum(p.length for p in expected), rel=1e-9)
    area = shape(loops).buffer(1e-9)
    assert all(area.covers(p) for p in pieces)
